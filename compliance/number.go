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
// returned.
func FindFilingNumbers(text string) []string {
	text = normaliseText(text)
	var out []string
	for _, m := range numberRE.FindAllStringSubmatch(text, -1) {
		prov := m[1]
		var cands []string
		switch {
		case m[2] != "":
			subject := prov + "ICP备" + m[2] + "号"
			if m[3] != "" {
				cands = append(cands, subject+"-"+m[3])
			}
			cands = append(cands, subject)
		case m[4] != "":
			cands = append(cands, prov+"ICP证"+m[4]+"号")
		case m[6] != "":
			cats := strings.Join(strings.Fields(m[5]), "")
			cands = append(cands, prov+cats+"-"+m[6])
		}
		for _, c := range cands {
			if f, err := registry.ParseFilingNumber(c); err == nil {
				out = append(out, f.String())
				break
			}
		}
	}
	return out
}
