package registry

import (
	"errors"
	"strings"
	"testing"
)

// filingValid is the table of accepted numbers; it also seeds
// FuzzParseFilingNumber.
var filingValid = []struct {
	in   string
	want FilingNumber
}{
	{"京ICP备10206937号", FilingNumber{Kind: FilingSubject, Province: "京", Subject: "京ICP备10206937号", Serial: "10206937"}},
	{"京ICP备09051301号", FilingNumber{Kind: FilingSubject, Province: "京", Subject: "京ICP备09051301号", Serial: "09051301"}},
	{"京ICP备10206937号-1", FilingNumber{Kind: FilingWebsite, Province: "京", Subject: "京ICP备10206937号", Serial: "10206937", Site: 1}},
	{"沪ICP备12345678号-12", FilingNumber{Kind: FilingWebsite, Province: "沪", Subject: "沪ICP备12345678号", Serial: "12345678", Site: 12}},
	{"粤ICP备12345678号-9999", FilingNumber{Kind: FilingWebsite, Province: "粤", Subject: "粤ICP备12345678号", Serial: "12345678", Site: 9999}},
	{"蜀ICP备2026007879号-1", FilingNumber{Kind: FilingWebsite, Province: "蜀", Subject: "蜀ICP备2026007879号", Serial: "2026007879", Site: 1}},
	{"川ICP备2021000001号", FilingNumber{Kind: FilingSubject, Province: "川", Subject: "川ICP备2021000001号", Serial: "2021000001"}},
	{"黔ICP备2000000001号", FilingNumber{Kind: FilingSubject, Province: "黔", Subject: "黔ICP备2000000001号", Serial: "2000000001"}},
	{"滇ICP备2099999999号-3", FilingNumber{Kind: FilingWebsite, Province: "滇", Subject: "滇ICP备2099999999号", Serial: "2099999999", Site: 3}},
	{"陇ICP备13000001号", FilingNumber{Kind: FilingSubject, Province: "陇", Subject: "陇ICP备13000001号", Serial: "13000001"}},
	{"新ICP备00000000号", FilingNumber{Kind: FilingSubject, Province: "新", Subject: "新ICP备00000000号", Serial: "00000000"}},
	{"京ICP证030173号", FilingNumber{Kind: FilingLicence, Province: "京", Subject: "京ICP证030173号", Serial: "030173"}},
	{"浙B2-20040180", FilingNumber{Kind: FilingVATLicence, Province: "浙", Subject: "浙B2-20040180", Serial: "20040180", Categories: "B2"}},
	{"皖B1.B2-20090034", FilingNumber{Kind: FilingVATLicence, Province: "皖", Subject: "皖B1.B2-20090034", Serial: "20090034", Categories: "B1.B2"}},
	{"粤A2-20044005", FilingNumber{Kind: FilingVATLicence, Province: "粤", Subject: "粤A2-20044005", Serial: "20044005", Categories: "A2"}},
	{"京A1.A2.B1.B2-20200001", FilingNumber{Kind: FilingVATLicence, Province: "京", Subject: "京A1.A2.B1.B2-20200001", Serial: "20200001", Categories: "A1.A2.B1.B2"}},
}

func TestParseFilingNumber(t *testing.T) {
	for _, tt := range filingValid {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFilingNumber(tt.in)
			if err != nil {
				t.Fatalf("ParseFilingNumber(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseFilingNumber(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}

// TestParseFilingNumberProvinces accepts all 35 abbreviations (31
// provinces, 4 of them with a second form) and nothing else.
func TestParseFilingNumberProvinces(t *testing.T) {
	const all = "京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝蜀川黔贵滇云藏陕陇甘青宁新"
	seen := map[string]bool{}
	for _, r := range all {
		p := string(r)
		f, err := ParseFilingNumber(p + "ICP备12345678号")
		if err != nil {
			t.Errorf("province %q rejected: %v", p, err)
			continue
		}
		if f.Province != p {
			t.Errorf("Province = %q, want %q", f.Province, p)
		}
		seen[f.ProvinceCanonical()] = true
	}
	if len(seen) != 31 {
		t.Errorf("%d distinct provinces, want 31", len(seen))
	}
	canon := []struct{ in, want string }{{"蜀", "川"}, {"川", "川"}, {"黔", "贵"}, {"滇", "云"}, {"陇", "甘"}, {"京", "京"}}
	for _, c := range canon {
		f, err := ParseFilingNumber(c.in + "ICP备12345678号")
		if err != nil {
			t.Fatal(err)
		}
		if got := f.ProvinceCanonical(); got != c.want {
			t.Errorf("ProvinceCanonical of %q = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseFilingNumberErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"萌ICP备20240001号", `unknown province "萌"`},
		{"港ICP备12345678号", `unknown province "港"`},
		{"澳ICP备12345678号", `unknown province "澳"`},
		{"台ICP备12345678号", `unknown province "台"`},
		{"秦ICP备12345678号", `unknown province "秦"`},
		{"ICP备12345678号", `missing province abbreviation (e.g. 京) before "ICP备12345678号"`},
		{"B2-20040180", `missing province abbreviation (e.g. 京) before "B2-20040180"`},
		{"京ICP备1020693号", "digits must be 8 or 10, got 7"},
		{"京ICP备102069371号", "digits must be 8 or 10, got 9"},
		{"京ICP备10206937123号", "digits must be 8 or 10, got 11"},
		{"京ICP备号", "digits must be 8 or 10, got 0"},
		{"京ICP备1999000001号", "a 10-digit number starts with the year (2000-2099), got 1999"},
		{"京ICP备3026007879号", "a 10-digit number starts with the year (2000-2099), got 3026"},
		{"京ICP备10206937", `expected 号 after the digits, got ""`},
		{"京ICP备10206937號", `expected 号 after the digits, got "號"`},
		{"京ICP备10206937号-0", `site number "0": must be 1 or more without leading zero`},
		{"京ICP备10206937号-01", `site number "01": must be 1 or more without leading zero`},
		{"京ICP备10206937号-", "missing site number after -"},
		{"京ICP备10206937号-1a", `site number "1a" is not a number`},
		{"京ICP备10206937号--1", `site number "-1" is not a number`},
		{"京ICP备10206937号-10000", "site number 10000: more than 9999"},
		{"京ICP备10206937号－1", `unexpected "－1" after 号 (a website number ends in -N)`},
		{"京ICP备10206937号 ", "leading or trailing white space"},
		{" 京ICP备10206937号", "leading or trailing white space"},
		{"京icp备10206937号", `expected ICP备, ICP证 or a licence category (A1, A2, B1, B2) after the province, got "icp备10206937号"`},
		{"京ICP備10206937号", `expected ICP备, ICP证 or a licence category (A1, A2, B1, B2) after the province, got "ICP備10206937号"`},
		{"京", `expected ICP备, ICP证 or a licence category (A1, A2, B1, B2) after the province, got ""`},
		{"京ICP证03017号", "ICP licence digits must be 6, got 5"},
		{"京ICP证0301733号", "ICP licence digits must be 6, got 7"},
		{"京ICP证030173", `expected 号 after the digits, got ""`},
		{"京ICP证030173号-1", `unexpected "-1" after 号 (an ICP licence has no site number)`},
		{"浙B220040180", `expected - between licence categories and number in "B220040180"`},
		{"浙B3-20040180", `unknown licence category "B3" (A1, A2, B1 or B2)`},
		{"浙C2-20040180", `expected ICP备, ICP证 or a licence category (A1, A2, B1, B2) after the province, got "C2-20040180"`},
		{"浙B2.B1-20040180", `licence categories "B2.B1": must be ascending without repeats`},
		{"浙B2.B2-20040180", `licence categories "B2.B2": must be ascending without repeats`},
		{"浙B1..B2-20040180", `unknown licence category "" (A1, A2, B1 or B2)`},
		{"浙B2-2004018", "licence digits must be 8, got 7"},
		{"浙B2-200401800", "licence digits must be 8, got 9"},
		{"浙B2-2004018x", `licence number "2004018x" is not a number`},
		{"浙B2-19990180", "licence number starts with the year (2000-2099), got 1999"},
		{"京ICP备10206937\xe5\x8f", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFilingNumber(tt.in)
			if err == nil {
				t.Fatalf("ParseFilingNumber(%q) = %+v, want error %q", tt.in, got, tt.want)
			}
			if !errors.Is(err, ErrInvalidFilingNumber) {
				t.Errorf("error %v does not wrap ErrInvalidFilingNumber", err)
			}
			if msg := strings.TrimPrefix(err.Error(), "invalid filing number: "); msg != tt.want {
				t.Errorf("error = %q, want %q", msg, tt.want)
			}
		})
	}
}

func TestFilingKindString(t *testing.T) {
	tests := []struct {
		k    FilingKind
		want string
	}{
		{FilingSubject, "subject"}, {FilingWebsite, "website"},
		{FilingLicence, "icp_licence"}, {FilingVATLicence, "vat_licence"},
		{0, "FilingKind(0)"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("FilingKind(%d).String() = %q, want %q", tt.k, got, tt.want)
		}
	}
}

func FuzzParseFilingNumber(f *testing.F) {
	for _, tt := range filingValid {
		f.Add(tt.in)
	}
	for _, s := range []string{"萌ICP备20240001号", "京ICP备10206937号-01", "浙B2.B1-20040180", "京ICP证030173号-1", "京"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFilingNumber(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidFilingNumber) {
				t.Fatalf("ParseFilingNumber(%q) error %v does not wrap ErrInvalidFilingNumber", s, err)
			}
			return
		}
		if str := got.String(); str != s {
			t.Fatalf("ParseFilingNumber(%q).String() = %q, want the input", s, str)
		}
		again, err := ParseFilingNumber(got.String())
		if err != nil || again != got {
			t.Fatalf("ParseFilingNumber(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
		if got.ProvinceCanonical() == "" {
			t.Fatalf("ParseFilingNumber(%q): province %q has no canonical form", s, got.Province)
		}
	})
}

func BenchmarkParseFilingNumber(b *testing.B) {
	for _, in := range []string{"京ICP备10206937号-1", "皖B1.B2-20090034"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = ParseFilingNumber(in)
			}
		})
	}
}
