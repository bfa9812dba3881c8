package compliance

import (
	"regexp"
	"strings"

	"golang.org/x/text/width"

	"github.com/icpgate/icpgate/registry"
)

// numberRE matches the filing and licence numbers as sites write them,
// once the text is normalised (see normaliseText): white space between
// the parts, 号 left out, any case of "ICP". Each match is rebuilt in
// the issued form and given to registry.ParseFilingNumber, which has the
// last word, so the expression can be loose.
//
// Groups: 1 province; 2 filing digits, 3 site; 4 licence digits; 5 VAT
// categories, 6 VAT digits.
var numberRE = regexp.MustCompile(`(\p{Han})\s*(?:` +
	`(?i:icp)\s*备\s*(\d+)\s*号?(?:\s*-\s*(\d+))?` +
	`|(?i:icp)\s*证\s*(\d+)\s*号?` +
	`|([AB][12](?:\s*\.\s*[AB][12])*)\s*-\s*(\d+))`)

// dashes maps the dashes and hyphens sites put before a site number to
// "-" (width.Narrow already maps the full-width hyphen-minus).
var dashes = strings.NewReplacer("‐", "-", "‑", "-", "‒", "-", "–", "-", "—", "-", "―", "-", "−", "-", "﹣", "-", "－", "-",
	"\u00a0", " ") // &nbsp; too

// normaliseText maps full-width letters, digits and punctuation to their
// ASCII forms (ＩＣＰ备０９０５１３０１号 -> ICP备09051301号), dashes to "-" and
// no-break spaces to spaces.
// Han characters are left alone.
func normaliseText(s string) string {
	return dashes.Replace(width.Narrow.String(s))
}

// FindFilingNumbers returns the filing and licence numbers in text, in
// the order they appear, each in its issued form (京ICP备09051301号-1,
// 京ICP证090513号, 京B2-20040180) and each accepted by
// registry.ParseFilingNumber. It accepts the forms seen on real pages:
// full-width characters and digits, spaces between the parts, 号 left
// out, any dash before the site number. A number whose site part is not
// valid is returned without it (the subject number). Text that only
// looks like a number (京公网安备..., the public-security filing) is not
// returned. A blank line ends a number: visibleText puts one between
// blocks.
func FindFilingNumbers(text string) []string {
	var out []string
	for _, m := range findNumbers(text) {
		out = append(out, m.number)
	}
	return out
}

// numberMatch is a number found and where: the normalised block of text
// it is in and its offset there.
type numberMatch struct {
	number string
	block  string
	at     int
}

// findNumbers is FindFilingNumbers with where each number was found. It
// normalises and searches only the blocks that can hold a number (those
// with 备, 证 or a licence category), which keeps a large page cheap.
func findNumbers(text string) []numberMatch {
	var out []numberMatch
	for block := range strings.SplitSeq(text, "\n\n") {
		if !mayHoldNumber(block) {
			continue
		}
		block = normaliseText(block)
		for _, ix := range numberRE.FindAllStringSubmatchIndex(block, -1) {
			g := func(n int) string {
				if ix[2*n] < 0 {
					return ""
				}
				return block[ix[2*n]:ix[2*n+1]]
			}
			prov := g(1)
			var cands []string
			switch {
			case g(2) != "":
				subject := prov + "ICP备" + g(2) + "号"
				if g(3) != "" {
					cands = append(cands, subject+"-"+g(3))
				}
				cands = append(cands, subject)
			case g(4) != "":
				cands = append(cands, prov+"ICP证"+g(4)+"号")
			case g(6) != "":
				cands = append(cands, prov+strings.Join(strings.Fields(g(5)), "")+"-"+g(6))
			}
			for _, c := range cands {
				if f, err := registry.ParseFilingNumber(c); err == nil {
					out = append(out, numberMatch{number: f.String(), block: block, at: ix[0]})
					break
				}
			}
		}
	}
	return out
}

// mayHoldNumber reports whether text has what every number has before
// normalisation: 备 or 证, or a licence category letter (A or B, in
// either width) followed by 1 or 2.
func mayHoldNumber(text string) bool {
	if strings.Contains(text, "备") || strings.Contains(text, "证") ||
		strings.Contains(text, "Ａ") || strings.Contains(text, "Ｂ") {
		return true
	}
	for i := 0; i+1 < len(text); i++ {
		if (text[i] == 'A' || text[i] == 'B') && (text[i+1] == '1' || text[i+1] == '2' || strings.HasPrefix(text[i+1:], "１") || strings.HasPrefix(text[i+1:], "２")) {
			return true
		}
	}
	return false
}
