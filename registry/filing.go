package registry

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidFilingNumber is returned (wrapped, with what is wrong) by
// ParseFilingNumber.
var ErrInvalidFilingNumber = errors.New("invalid filing number")

// FilingKind says which of the numbers MIIT issues a FilingNumber is.
type FilingKind uint8

// Filing number kinds. The zero value is not a valid kind.
const (
	// FilingSubject is a subject (主体) filing number: 京ICP备10206937号.
	FilingSubject FilingKind = iota + 1
	// FilingWebsite is a website (网站) filing number, the subject number
	// with a site sequence: 京ICP备10206937号-1.
	FilingWebsite
	// FilingLicence is an ICP operating licence (ICP证): 京ICP证030173号.
	FilingLicence
	// FilingVATLicence is a value-added telecommunications business
	// licence (增值电信业务经营许可证): 浙B2-20040180, 皖B1.B2-20090034.
	FilingVATLicence
)

// String returns "subject", "website", "icp_licence" or "vat_licence".
func (k FilingKind) String() string {
	switch k {
	case FilingSubject:
		return "subject"
	case FilingWebsite:
		return "website"
	case FilingLicence:
		return "icp_licence"
	case FilingVATLicence:
		return "vat_licence"
	}
	return "FilingKind(" + strconv.Itoa(int(k)) + ")"
}

// FilingNumber is a parsed and validated ICP filing number or licence
// number (京ICP备10206937号-1, 京ICP证030173号, 浙B2-20040180). Build one with ParseFilingNumber.
type FilingNumber struct {
	// Kind is which kind of number this is.
	Kind FilingKind
	// Province is the one-character abbreviation of the issuing province
	// as written ("京", "蜀"); both forms of a province with two ("川"/"蜀",
	// "贵"/"黔", "云"/"滇", "甘"/"陇") are accepted and kept as written.
	Province string
	// Subject is the number without the site sequence: for a website
	// number "京ICP备10206937号-1" it is "京ICP备10206937号"; for the other
	// kinds it is the whole number.
	Subject string
	// Serial is the digits of the number: "10206937", "030173",
	// "20040180".
	Serial string
	// Categories is the licence categories of a VAT licence ("B2",
	// "B1.B2"); empty for the other kinds.
	Categories string
	// Site is the website sequence number (1, 2, ...) of a website
	// number; 0 for the other kinds.
	Site int
}

// String returns the number in its canonical written form, which is the
// form ParseFilingNumber accepted: Subject, with "-Site" for a website
// number.
func (f FilingNumber) String() string {
	if f.Kind == FilingWebsite {
		return f.Subject + "-" + strconv.Itoa(f.Site)
	}
	return f.Subject
}

// provinces maps each accepted province abbreviation to the province's
// primary abbreviation: the 31 provincial-level divisions of mainland
// China, with the second form in use for Sichuan (蜀), Guizhou (黔), Yunnan
// (滇) and Gansu (陇). Hong Kong, Macao and Taiwan have no ICP filing.
var provinces = map[string]string{
	"京": "京", "津": "津", "冀": "冀", "晋": "晋", "蒙": "蒙",
	"辽": "辽", "吉": "吉", "黑": "黑", "沪": "沪", "苏": "苏",
	"浙": "浙", "皖": "皖", "闽": "闽", "赣": "赣", "鲁": "鲁",
	"豫": "豫", "鄂": "鄂", "湘": "湘", "粤": "粤", "桂": "桂",
	"琼": "琼", "渝": "渝", "川": "川", "蜀": "川", "贵": "贵",
	"黔": "贵", "云": "云", "滇": "云", "藏": "藏", "陕": "陕",
	"甘": "甘", "陇": "甘", "青": "青", "宁": "宁", "新": "新",
}

// ProvinceCanonical returns the primary abbreviation of the province of f:
// "川" for both "川" and "蜀". Use it to group numbers by province.
func (f FilingNumber) ProvinceCanonical() string { return provinces[f.Province] }

// Limits of the number parts.
const (
	maxSite       = 9999 // a subject with more websites than this is not plausible
	minFilingYear = 2000 // 10-digit filing numbers and licences start with the year
	maxFilingYear = 2099
)

// filingError builds an error wrapping ErrInvalidFilingNumber.
func filingError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidFilingNumber}, args...)...)
}

// ParseFilingNumber parses and validates a filing or licence number in
// the exact written form MIIT issues:
//
//	京ICP备10206937号     subject number: province, "ICP备", 8 or 10 digits, "号"
//	蜀ICP备2026007879号-1 website number: a subject number, "-", the site 1..9999
//	京ICP证030173号       ICP licence: province, "ICP证", 6 digits, "号"
//	浙B2-20040180        VAT licence: province, categories, "-", 8 digits
//	皖B1.B2-20090034     (categories A1, A2, B1, B2, ascending, joined by ".")
//
// The province is one of the 31 mainland abbreviations (with 蜀, 黔, 滇, 陇
// as second forms); 港, 澳, 台 and invented ones such as 萌 are rejected. A
// 10-digit filing number and a licence's 8 digits start with a year from
// 2000 to 2099 (MIIT moved filing numbers to year + sequence in the
// 2010s; older numbers have 8 digits beginning with a two-digit year,
// which is not checked). The site number has no leading zero. Nothing is
// trimmed or case-folded: a registry holds numbers as issued, and an
// accepted number's String() is the input. Errors wrap
// ErrInvalidFilingNumber and say what is wrong.
func ParseFilingNumber(s string) (FilingNumber, error) {
	if s == "" {
		return FilingNumber{}, filingError("empty")
	}
	if !utf8.ValidString(s) {
		return FilingNumber{}, filingError("not valid UTF-8")
	}
	if strings.TrimSpace(s) != s {
		return FilingNumber{}, filingError("leading or trailing white space")
	}
	r, size := utf8.DecodeRuneInString(s)
	prov := s[:size]
	if _, ok := provinces[prov]; !ok {
		if r < utf8.RuneSelf {
			return FilingNumber{}, filingError("missing province abbreviation (e.g. 京) before %q", s)
		}
		return FilingNumber{}, filingError("unknown province %q", prov)
	}
	rest := s[size:]
	switch {
	case strings.HasPrefix(rest, "ICP备"):
		return parseICPFiling(s, prov, rest[len("ICP备"):])
	case strings.HasPrefix(rest, "ICP证"):
		return parseICPLicence(s, prov, rest[len("ICP证"):])
	case rest != "" && (rest[0] == 'A' || rest[0] == 'B'):
		return parseVATLicence(s, prov, rest)
	}
	return FilingNumber{}, filingError("expected ICP备, ICP证 or a licence category (A1, A2, B1, B2) after the province, got %q", rest)
}

// leadingDigits returns the run of ASCII digits at the start of s.
func leadingDigits(s string) string {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// plausibleYear reports whether the 4 leading digits of d are a year from
// minFilingYear to maxFilingYear.
func plausibleYear(d string) bool {
	y, _ := strconv.Atoi(d[:4])
	return minFilingYear <= y && y <= maxFilingYear
}

// parseICPFiling parses what follows "<province>ICP备".
func parseICPFiling(s, prov, rest string) (FilingNumber, error) {
	digits := leadingDigits(rest)
	if len(digits) != 8 && len(digits) != 10 {
		return FilingNumber{}, filingError("digits must be 8 or 10, got %d", len(digits))
	}
	if len(digits) == 10 && !plausibleYear(digits) {
		return FilingNumber{}, filingError("a 10-digit number starts with the year (2000-2099), got %s", digits[:4])
	}
	rest = rest[len(digits):]
	if !strings.HasPrefix(rest, "号") {
		return FilingNumber{}, filingError("expected 号 after the digits, got %q", rest)
	}
	rest = rest[len("号"):]
	subject := s[:len(s)-len(rest)]
	f := FilingNumber{Kind: FilingSubject, Province: prov, Subject: subject, Serial: digits}
	if rest == "" {
		return f, nil
	}
	if rest[0] != '-' {
		return FilingNumber{}, filingError("unexpected %q after 号 (a website number ends in -N)", rest)
	}
	site := rest[1:]
	switch {
	case site == "":
		return FilingNumber{}, filingError("missing site number after -")
	case len(leadingDigits(site)) != len(site):
		return FilingNumber{}, filingError("site number %q is not a number", site)
	case site[0] == '0':
		return FilingNumber{}, filingError("site number %q: must be 1 or more without leading zero", site)
	case len(site) > 4:
		return FilingNumber{}, filingError("site number %s: more than %d", site, maxSite)
	}
	f.Kind = FilingWebsite
	f.Site, _ = strconv.Atoi(site)
	return f, nil
}

// parseICPLicence parses what follows "<province>ICP证".
func parseICPLicence(s, prov, rest string) (FilingNumber, error) {
	digits := leadingDigits(rest)
	if len(digits) != 6 {
		return FilingNumber{}, filingError("ICP licence digits must be 6, got %d", len(digits))
	}
	if after := rest[len(digits):]; after != "号" {
		if !strings.HasPrefix(after, "号") {
			return FilingNumber{}, filingError("expected 号 after the digits, got %q", after)
		}
		return FilingNumber{}, filingError("unexpected %q after 号 (an ICP licence has no site number)", after[len("号"):])
	}
	return FilingNumber{Kind: FilingLicence, Province: prov, Subject: s, Serial: digits}, nil
}

// parseVATLicence parses what follows the province of a VAT licence:
// categories, "-", 8 digits.
func parseVATLicence(s, prov, rest string) (FilingNumber, error) {
	dash := strings.IndexByte(rest, '-')
	if dash < 0 {
		return FilingNumber{}, filingError("expected - between licence categories and number in %q", rest)
	}
	cats, digits := rest[:dash], rest[dash+1:]
	// Categories: A1, A2, B1, B2, strictly ascending, joined by ".".
	prev := ""
	for c := range strings.SplitSeq(cats, ".") {
		if len(c) != 2 || (c[0] != 'A' && c[0] != 'B') || (c[1] != '1' && c[1] != '2') {
			return FilingNumber{}, filingError("unknown licence category %q (A1, A2, B1 or B2)", c)
		}
		if c <= prev {
			return FilingNumber{}, filingError("licence categories %q: must be ascending without repeats", cats)
		}
		prev = c
	}
	if d := leadingDigits(digits); len(d) != len(digits) || len(d) != 8 {
		if len(d) != len(digits) {
			return FilingNumber{}, filingError("licence number %q is not a number", digits)
		}
		return FilingNumber{}, filingError("licence digits must be 8, got %d", len(d))
	}
	if !plausibleYear(digits) {
		return FilingNumber{}, filingError("licence number starts with the year (2000-2099), got %s", digits[:4])
	}
	return FilingNumber{Kind: FilingVATLicence, Province: prov, Subject: s, Serial: digits, Categories: cats}, nil
}
