package registry

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/net/publicsuffix"
)

// TestSuffixFilesIdentical asserts that the operator-facing copy in
// configs/ is byte-identical to the embedded list.
func TestSuffixFilesIdentical(t *testing.T) {
	embedded, err := os.ReadFile("miit_suffixes.txt")
	if err != nil {
		t.Fatal(err)
	}
	operator, err := os.ReadFile("../configs/miit-suffixes.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(embedded, operator) {
		t.Errorf("configs/miit-suffixes.txt differs from registry/miit_suffixes.txt; copy one over the other")
	}
	if !bytes.Equal(embedded, miitSuffixes) {
		t.Errorf("embedded list differs from registry/miit_suffixes.txt on disk")
	}
}

// TestDefaultSuffixesFormat checks each entry of the shipped list: A-label
// form as written, an ICANN top-level domain known to the compiled Public
// Suffix List (catches typos in the Punycode), a Unicode comment on every
// A-label entry.
func TestDefaultSuffixesFormat(t *testing.T) {
	for i, line := range strings.Split(string(miitSuffixes), "\n") {
		entry, comment, _ := strings.Cut(line, "#")
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		n, _, err := Normalize(entry)
		if err != nil || n != entry {
			t.Errorf("line %d: %q is not in normal A-label form (%q, %v)", i+1, entry, n, err)
		}
		if ps, icann := publicsuffix.PublicSuffix(entry); !icann || ps != entry {
			t.Errorf("line %d: %q is not an ICANN public suffix in the compiled list (got %q, icann=%v)", i+1, entry, ps, icann)
		}
		if strings.HasPrefix(entry, "xn--") {
			u := strings.Fields(comment)
			if len(u) == 0 {
				t.Errorf("line %d: %q has no Unicode comment", i+1, entry)
				continue
			}
			if a, _, err := Normalize(u[0]); err != nil || a != entry {
				t.Errorf("line %d: comment %q gives %q, want %q", i+1, u[0], a, entry)
			}
		}
	}
	if got := DefaultSuffixes().Len(); got < 30 {
		t.Errorf("DefaultSuffixes().Len() = %d, want at least 30", got)
	}
}

func TestFileable(t *testing.T) {
	tests := []struct {
		domain string
		want   bool
	}{
		{"example.cn", true},
		{"example.com.cn", true},
		{"example.gov.cn", true},
		{"example.bj.cn", true},
		{"example.xn--55qx5d.cn", true},   // 例子.公司.cn
		{"xn--fsqu00a.xn--fiqs8s", true},  // 例子.中国
		{"xn--fsqu00a.xn--55qx5d", true},  // 例子.公司
		{"xn--fsqu00a.xn--io0a7i", true},  // 例子.网络
		{"xn--fsqu00a.xn--zfr164b", true}, // 例子.政务
		{"example.com", true},
		{"example.net", true},
		{"example.org", true},
		{"example.top", true},
		{"example.xyz", true},
		{"example.vip", true},
		{"cn.com", true},
		{"github.io", false},
		{"example.io", false},
		{"example.me", false},
		{"example.co", false},
		{"example.ai", false},
		{"example.dev", false},
		{"example.app", false},
		{"example.co.uk", false},
		{"example.internal", false},
		{"cn", false},
		{"com", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := Fileable(tt.domain); got != tt.want {
			t.Errorf("Fileable(%q) = %v, want %v", tt.domain, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Fileable("www.example.com.cn") }); n != 0 {
		t.Errorf("Fileable allocates %v times, want 0", n)
	}
}

func TestLoadSuffixes(t *testing.T) {
	s, err := LoadSuffixes(strings.NewReader("\ufeff# operator list\n\ncom.cn   # only com.cn\n中国\nXN--55QX5D\nzzz\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(s.List(), ","), "com.cn,xn--55qx5d,xn--fiqs8s,zzz"; got != want {
		t.Errorf("List() = %q, want %q", got, want)
	}
	tests := []struct {
		domain string
		want   bool
	}{
		{"example.com.cn", true},
		{"example.cn", false}, // only com.cn is listed
		{"xn--fsqu00a.xn--fiqs8s", true},
		{"xn--fsqu00a.xn--55qx5d", true},
		{"example.zzz", true},
		{"example.com", false},
	}
	for _, tt := range tests {
		if got := s.Fileable(tt.domain); got != tt.want {
			t.Errorf("Fileable(%q) = %v, want %v", tt.domain, got, tt.want)
		}
	}
	crlf, err := LoadSuffixes(strings.NewReader("cn\r\ncom\t# tab before comment\r\n"))
	if err != nil {
		t.Fatalf("CRLF list: %v", err)
	}
	if got, want := strings.Join(crlf.List(), ","), "cn,com"; got != want {
		t.Errorf("CRLF list = %q, want %q", got, want)
	}
	var nilList *Suffixes
	if !nilList.Fileable("example.cn") || nilList.Len() != DefaultSuffixes().Len() {
		t.Errorf("a nil *Suffixes does not defer to the default list")
	}
}

func TestLoadSuffixesErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not a suffix", "cn\nexample.com\n", `invalid suffix list: line 2: "example.com": not a public suffix (it is the registrable domain example.com)`},
		{"private suffix", "github.io\n", `invalid suffix list: line 1: "github.io": not a public suffix (it is the registrable domain github.io)`},
		{"duplicate", "cn\n# c\nCN\n", `invalid suffix list: line 3: "CN": duplicate of line 1`},
		{"duplicate unicode", "xn--fiqs8s\n中国\n", `invalid suffix list: line 2: "中国": duplicate of line 1`},
		{"leading dot", "\n.com\n", `invalid suffix list: line 2: ".com": write the suffix without a leading dot`},
		{"two fields", "com net\n", `invalid suffix list: line 1: "com net": more than one field (one suffix per line)`},
		{"invalid name", "cn\nco_m\n", `invalid suffix list: line 2: "co_m": invalid host: character not allowed in a host name (letters, digits, hyphen and dot only)`},
		{"ip", "1.2.3.4\n", `invalid suffix list: line 1: "1.2.3.4": not a domain suffix`},
		{"empty", "# nothing\n\n", `invalid suffix list: no suffixes`},
		{"long line", "cn\n" + strings.Repeat("a", 5000) + "\n", `invalid suffix list: line 2: longer than 4096 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadSuffixes(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("LoadSuffixes succeeded, want %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidSuffixList) {
				t.Errorf("error %v does not wrap ErrInvalidSuffixList", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLoadSuffixesOperatorFile loads the operator-facing copy the way the
// gateway loads a configured registry.suffixes file.
func TestLoadSuffixesOperatorFile(t *testing.T) {
	f, err := os.Open("../configs/miit-suffixes.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := LoadSuffixes(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(s.List(), ","), strings.Join(DefaultSuffixes().List(), ","); got != want {
		t.Errorf("operator file list = %q, want %q", got, want)
	}
}

func BenchmarkFileable(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Fileable("example.com.cn")
	}
}

// FuzzLoadSuffixes checks that LoadSuffixes never panics, that every
// error wraps ErrInvalidSuffixList (or is a read error), and that an
// accepted list written back one suffix a line loads to the same list.
func FuzzLoadSuffixes(f *testing.F) {
	f.Add(string(miitSuffixes))
	f.Add("\ufeffcn # x\n中国\nXN--55QX5D\n")
	f.Add("cn\ncn\n")
	f.Add(".com\n")
	f.Add("github.io\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := LoadSuffixes(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrInvalidSuffixList) {
				t.Fatalf("LoadSuffixes(%q): %v does not wrap ErrInvalidSuffixList", in, err)
			}
			return
		}
		list := s.List()
		again, err := LoadSuffixes(strings.NewReader(strings.Join(list, "\n")))
		if err != nil {
			t.Fatalf("reloading %q: %v", list, err)
		}
		if got, want := strings.Join(again.List(), ","), strings.Join(list, ","); got != want {
			t.Fatalf("reloaded list = %q, want %q", got, want)
		}
		for _, sfx := range list {
			if !s.Fileable("example." + sfx) {
				t.Fatalf("Fileable(%q) = false with %q listed", "example."+sfx, sfx)
			}
		}
	})
}
