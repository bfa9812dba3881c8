package registry

import (
	"errors"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/net/publicsuffix"
)

func TestRegistrableDomain(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        error // nil: want success
	}{
		{"plain", "example.com", "example.com", nil},
		{"subdomain", "www.example.com", "example.com", nil},
		{"com.cn", "a.b.example.com.cn", "example.com.cn", nil},
		{"gov.cn", "www.beijing.gov.cn", "beijing.gov.cn", nil},
		{"province sld", "shop.example.bj.cn", "example.bj.cn", nil},
		{"cn", "www.example.cn", "example.cn", nil},
		{"idn tld", "www.xn--fsqu00a.xn--fiqs8s", "xn--fsqu00a.xn--fiqs8s", nil},
		{"idn company tld", "xn--fsqu00a.xn--55qx5d", "xn--fsqu00a.xn--55qx5d", nil},
		{"company.cn idn sld", "a.example.xn--55qx5d.cn", "example.xn--55qx5d.cn", nil},
		{"co.uk", "www.filed.co.uk", "filed.co.uk", nil},
		{"private github.io ignored", "x.github.io", "github.io", nil},
		{"private github.io deep", "a.b.x.github.io", "github.io", nil},
		{"private amazonaws.com.cn ignored", "foo.amazonaws.com.cn", "amazonaws.com.cn", nil},
		{"private amazonaws.com.cn deep", "bucket.s3.cn-north-1.amazonaws.com.cn", "amazonaws.com.cn", nil},
		{"private cn.com ignored", "a.cn.com", "cn.com", nil},
		{"private cn.com itself", "cn.com", "cn.com", nil},
		{"private appspot ignored", "x.appspot.com", "appspot.com", nil},
		{"icann wildcard", "a.b.foo.ck", "b.foo.ck", nil},
		{"icann exception", "a.b.city.kawasaki.jp", "city.kawasaki.jp", nil},
		{"unlisted tld default rule", "www.example.internal", "example.internal", nil},
		{"unlisted tld two labels", "example.zzz", "example.zzz", nil},
		{"hyphenated", "r3---sn-abc.googlevideo.com", "googlevideo.com", nil},

		{"bare tld", "cn", "", ErrPublicSuffix},
		{"bare sld", "com.cn", "", ErrPublicSuffix},
		{"bare province sld", "bj.cn", "", ErrPublicSuffix},
		{"bare idn tld", "xn--fiqs8s", "", ErrPublicSuffix},
		{"bare co.uk", "co.uk", "", ErrPublicSuffix},
		{"bare wildcard", "foo.ck", "", ErrPublicSuffix},
		{"bare unlisted tld", "zzz", "", ErrPublicSuffix},

		{"empty", "", "", ErrInvalidHost},
		{"upper case", "WWW.EXAMPLE.COM", "", ErrInvalidHost},
		{"trailing dot", "example.com.", "", ErrInvalidHost},
		{"leading dot", ".example.com", "", ErrInvalidHost},
		{"empty label", "a..com", "", ErrInvalidHost},
		{"nul", "example.com\x00", "", ErrInvalidHost},
		{"unicode", "例子.中国", "", ErrInvalidHost},
		{"ipv4", "1.2.3.4", "", ErrInvalidHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RegistrableDomain(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("RegistrableDomain(%q) = %q, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RegistrableDomain(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("RegistrableDomain(%q) = %q, want %q", tt.in, got, tt.want)
			}
			// A registrable domain is its own registrable domain.
			if again, err := RegistrableDomain(got); err != nil || again != got {
				t.Errorf("RegistrableDomain(%q) = %q, %v; want it unchanged", got, again, err)
			}
		})
	}
}

// TestRegistrableDomainUnicodeEqualsPunycode checks that a Unicode name
// and its A-label form reach the same registrable domain through Normalize.
func TestRegistrableDomainUnicodeEqualsPunycode(t *testing.T) {
	pairs := []struct{ unicode, alabel string }{
		{"www.例子.中国", "www.xn--fsqu00a.xn--fiqs8s"},
		{"例子.公司", "xn--fsqu00a.xn--55qx5d"},
		{"店.例子.网络", "xn--1qq.xn--fsqu00a.xn--io0a7i"},
		{"WWW.例子。中国。", "www.xn--fsqu00a.xn--fiqs8s"},
	}
	for _, p := range pairs {
		nu, _, err := Normalize(p.unicode)
		if err != nil {
			t.Fatalf("Normalize(%q): %v", p.unicode, err)
		}
		na, _, err := Normalize(p.alabel)
		if err != nil {
			t.Fatalf("Normalize(%q): %v", p.alabel, err)
		}
		du, err1 := RegistrableDomain(nu)
		da, err2 := RegistrableDomain(na)
		if err1 != nil || err2 != nil || du != da {
			t.Errorf("RegistrableDomain of %q = %q, %v; of %q = %q, %v; want equal", p.unicode, du, err1, p.alabel, da, err2)
		}
	}
}

func TestRegistrableDomainSubstring(t *testing.T) {
	in := "a.b.example.com.cn"
	got, err := RegistrableDomain(in)
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(got) != unsafe.StringData(in[len(in)-len(got):]) {
		t.Errorf("RegistrableDomain(%q) = %q is a copy, want a substring", in, got)
	}
	// x/net/publicsuffix allocates once per lookup (the error of its
	// netip.ParseAddr probe); anything more would be ours.
	allocs := []struct {
		in   string
		want float64
	}{
		{in, 1},
		{"com.cn", 1},
		{"foo.amazonaws.com.cn", 2}, // one more lookup under the private rule
		{"WWW.EXAMPLE.COM", 0},      // rejected before the lookup
	}
	for _, tt := range allocs {
		if n := testing.AllocsPerRun(100, func() { _, _ = RegistrableDomain(tt.in) }); n > tt.want {
			t.Errorf("RegistrableDomain(%q) allocates %v times, want at most %v", tt.in, n, tt.want)
		}
	}
}

func BenchmarkRegistrableDomain(b *testing.B) {
	benches := []struct{ name, in string }{
		{"Short", "example.cn"},
		{"Deep", "a.b.c.www.example.com.cn"},
		{"Private", "bucket.s3.cn-north-1.amazonaws.com.cn"},
		{"IDN", "www.xn--fsqu00a.xn--fiqs8s"},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = RegistrableDomain(bb.in)
			}
		})
	}
}

// BenchmarkNormalizeRegistrable is the name part of an uncached decision.
func BenchmarkNormalizeRegistrable(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		n, _, _ := Normalize("WWW.Example.com.cn:443")
		d, _ := RegistrableDomain(n)
		_ = Fileable(d)
	}
}

// FuzzRegistrableDomain checks RegistrableDomain on normalised names
// against the library's own eTLD+1 where the matching rule is in the ICANN
// section (there the two must agree exactly), and its invariants
// everywhere: the result is a label-aligned suffix of the name with exactly
// one label more than an ICANN public suffix, and is its own registrable
// domain.
func FuzzRegistrableDomain(f *testing.F) {
	for _, s := range []string{
		"a.b.example.com.cn", "x.github.io", "foo.amazonaws.com.cn", "a.cn.com", "com.cn",
		"www.xn--fsqu00a.xn--fiqs8s", "a.b.city.kawasaki.jp", "a.b.foo.ck", "example.zzz",
		"s3.cn-north-1.amazonaws.com.cn", "WWW.例子.中国", "1.2.3.4",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		name, kind, err := Normalize(in)
		if err != nil || kind != HostName {
			return
		}
		got, err := RegistrableDomain(name)
		if err != nil {
			if !errors.Is(err, ErrPublicSuffix) {
				t.Fatalf("RegistrableDomain(%q): %v", name, err)
			}
			if ps := icannSuffix(name); ps != name {
				t.Fatalf("RegistrableDomain(%q): public suffix error, but its ICANN suffix is %q", name, ps)
			}
			return
		}
		if !strings.HasSuffix(name, got) || (len(got) < len(name) && name[len(name)-len(got)-1] != '.') {
			t.Fatalf("RegistrableDomain(%q) = %q: not a label-aligned suffix", name, got)
		}
		label, rest, ok := strings.Cut(got, ".")
		if !ok || label == "" || icannSuffix(got) != rest {
			t.Fatalf("RegistrableDomain(%q) = %q: not one label plus its ICANN suffix %q", name, got, icannSuffix(got))
		}
		if again, err := RegistrableDomain(got); err != nil || again != got {
			t.Fatalf("RegistrableDomain(%q) = %q, %v; want it unchanged", got, again, err)
		}
		if _, icann := publicsuffix.PublicSuffix(name); icann {
			want, err := publicsuffix.EffectiveTLDPlusOne(name)
			if err != nil || want != got {
				t.Fatalf("RegistrableDomain(%q) = %q; publicsuffix.EffectiveTLDPlusOne = %q, %v", name, got, want, err)
			}
		}
	})
}
