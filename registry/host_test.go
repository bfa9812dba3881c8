package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"
)

// normalizeTests is the table for Normalize; it also seeds FuzzNormalize.
var normalizeTests = []struct {
	name string
	in   string
	want string // "" with kind HostName means: must fail with ErrInvalidHost
	kind HostKind
}{
	// Empty.
	{"empty", "", "", HostEmpty},

	// Plain names and the ASCII fast path.
	{"lower", "example.com", "example.com", HostName},
	{"single label", "localhost", "localhost", HostName},
	{"upper", "EXAMPLE.COM", "example.com", HostName},
	{"mixed", "WwW.Example.Com.Cn", "www.example.com.cn", HostName},
	{"digits and hyphens", "a-1.b2-c.example", "a-1.b2-c.example", HostName},
	{"trailing dot", "example.com.", "example.com", HostName},
	{"port", "example.com:8443", "example.com", HostName},
	{"trailing dot and port", "Example.com.:80", "example.com", HostName},
	{"empty port", "example.com:", "example.com", HostName},
	{"port 65535", "example.com:65535", "example.com", HostName},
	{"hyphens in positions 3 and 4", "r3---sn-abcde.googlevideo.com", "r3---sn-abcde.googlevideo.com", HostName},
	{"label of 63", strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com", HostName},
	{"name of 253", name253, name253, HostName},
	{"name of 253 with root dot", name253 + ".", name253, HostName},
	{"numeric label not last", "123.example.com", "123.example.com", HostName},
	{"hex-like last label", "a.0x7g", "a.0x7g", HostName},
	{"digit then letters", "a.1com", "a.1com", HostName},

	// IDNA (UTS-46 lookup, nontransitional).
	{"unicode", "例子.中国", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"ideographic full stop", "例子。中国", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"full-width full stop", "例子．中国", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"halfwidth ideographic full stop", "例子｡中国", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"ideographic full stop as root", "例子.中国。", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"root dot then ignored rune", "例子.中国.\u00ad", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"two root dots unicode", "例子.中国.。", "", HostName},
	{"two ideographic root dots", "例子.中国。。", "", HostName},
	{"root dot after ideographic", "例子.中国。.", "", HostName},
	{"only ignored rune", "\u00ad", "", HostName},
	{"leading ideographic full stop", "。例子.中国", "", HostName},
	{"unicode with port", "例子.中国:443", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"a-labels as given", "xn--fsqu00a.xn--fiqs8s", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"a-labels upper", "XN--FSQU00A.XN--FIQS8S", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"mixed a-label and u-label", "xn--fsqu00a.中国", "xn--fsqu00a.xn--fiqs8s", HostName},
	{"full-width letters", "ＥＸＡＭＰＬＥ．ｃｏｍ", "example.com", HostName},
	{"upper unicode", "BÜCHER.de", "xn--bcher-kva.de", HostName},
	{"sharp s nontransitional", "faß.de", "xn--fa-hia.de", HostName},
	{"soft hyphen ignored", "ex\u00adample.com", "example.com", HostName},
	{"unicode company suffix", "例子.公司", "xn--fsqu00a.xn--55qx5d", HostName},

	// IP literals.
	{"ipv4", "1.2.3.4", "1.2.3.4", HostIP},
	{"ipv4 port", "1.2.3.4:80", "1.2.3.4", HostIP},
	{"ipv4 root dot", "10.0.0.1.", "10.0.0.1", HostIP},
	{"ipv4 full-width", "１２７.０.０.１", "127.0.0.1", HostIP},
	{"ipv6 bracketed", "[2001:db8::1]", "2001:db8::1", HostIP},
	{"ipv6 bracketed port", "[2001:DB8:0:0::1]:443", "2001:db8::1", HostIP},
	{"ipv6 bare", "::1", "::1", HostIP},
	{"ipv6 bare upper", "2001:DB8::A", "2001:db8::a", HostIP},
	{"ipv6 mapped v4", "[::ffff:1.2.3.4]", "::ffff:1.2.3.4", HostIP},

	// Invalid.
	{"dot only", ".", "", HostName},
	{"two dots", "..", "", HostName},
	{"leading dot", ".example.com", "", HostName},
	{"empty label", "a..com", "", HostName},
	{"two root dots", "example.com..", "", HostName},
	{"port only", ":443", "", HostName},
	{"label of 64", strings.Repeat("a", 64) + ".com", "", HostName},
	{"name of 254", "a" + name253, "", HostName},
	{"leading hyphen", "-a.com", "", HostName},
	{"trailing hyphen", "a-.com", "", HostName},
	{"underscore", "a_b.example.com", "", HostName},
	{"star", "*.example.com", "", HostName},
	{"space", "exa mple.com", "", HostName},
	{"trailing space", "example.com ", "", HostName},
	{"tab", "example.com\t", "", HostName},
	{"nul", "example.com\x00.evil", "", HostName},
	{"cr", "example.com\r", "", HostName},
	{"del", "example\x7f.com", "", HostName},
	{"percent", "example%2ecom", "", HostName},
	{"percent dot", "example.com%2e", "", HostName},
	{"userinfo", "filed@unfiled.com", "", HostName},
	{"slash", "example.com/path", "", HostName},
	{"backslash", "example.com\\x", "", HostName},
	{"bad port", "example.com:http", "", HostName},
	{"port too big", "example.com:65536", "", HostName},
	{"port too long", "example.com:000080", "", HostName},
	{"port with path", "example.com:80/x", "", HostName},
	{"numeric short", "1.2.3", "", HostName},
	{"numeric two parts", "127.1", "", HostName},
	{"numeric hex", "0x7f.1", "", HostName},
	{"numeric hex last", "a.0x7f", "", HostName},
	{"numeric single", "2130706433", "", HostName},
	{"leading zero octet", "01.2.3.4", "", HostName},
	{"octet too big", "1.2.3.256", "", HostName},
	{"five octets", "1.2.3.4.5", "", HostName},
	{"numeric tld", "example.123", "", HostName},
	{"bracketed ipv4", "[1.2.3.4]", "", HostName},
	{"unclosed bracket", "[::1", "", HostName},
	{"bracket junk after", "[::1]x", "", HostName},
	{"ipv6 zone", "[fe80::1%25eth0]", "", HostName},
	{"ipv6 bare zone", "fe80::1%eth0", "", HostName},
	{"colons not ipv6", "a:b:c", "", HostName},
	{"invalid punycode", "xn--abc.com", "", HostName},
	{"empty punycode", "xn--.com", "", HostName},
	{"ascii-only punycode", "xn--ab-.com", "", HostName},
	{"punycode of upper case", "xn--Bcher-kva.de", "xn--bcher-kva.de", HostName},
	{"punycode u-label leading hyphen", "xn---abc-tj3b.com", "", HostName},
	{"full-width colon", "example.com：80", "", HostName},
	{"invalid utf-8", "ex\xffample.com", "", HostName},
	{"disallowed rune", "ex\u2028ample.com", "", HostName},
	{"bidi violation", "a\u05d0.com", "", HostName},
	{"too long input", strings.Repeat("a", 1025), "", HostName},
	{"unicode label too long", strings.Repeat("例子中国公司网络", 5) + ".cn", "", HostName},
}

// name253 is a valid name of exactly 253 bytes.
var name253 = strings.Repeat(strings.Repeat("a", 62)+".", 4) + "a" // 4*63 + 1

func TestNormalize(t *testing.T) {
	if len(name253) != 253 {
		t.Fatalf("name253 has %d bytes", len(name253))
	}
	for _, tt := range normalizeTests {
		t.Run(tt.name, func(t *testing.T) {
			got, kind, err := Normalize(tt.in)
			if tt.want == "" && tt.kind == HostName {
				if err == nil {
					t.Fatalf("Normalize(%q) = %q, %v; want an error", tt.in, got, kind)
				}
				if !errors.Is(err, ErrInvalidHost) {
					t.Fatalf("Normalize(%q) error %v does not wrap ErrInvalidHost", tt.in, err)
				}
				if got != "" {
					t.Errorf("Normalize(%q) returned %q with an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if kind != tt.kind {
				t.Errorf("Normalize(%q) kind = %v, want %v", tt.in, kind, tt.kind)
			}
			again, kind2, err := Normalize(got)
			if err != nil || again != got || kind2 != kind {
				t.Errorf("Normalize(%q) = %q, %v, %v; want it unchanged (idempotent)", got, again, kind2, err)
			}
		})
	}
}

// TestNormalizeErrorMessages checks the reasons an operator reads in
// `icpgate check` output.
func TestNormalizeErrorMessages(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"example.com\x00", "invalid host: control byte"},
		{"a b", "invalid host: space"},
		{"a%2e", `invalid host: "%" (percent-encoding is not allowed in a host)`},
		{"u@h", `invalid host: "@" (user information is not allowed in a host)`},
		{"h/p", `invalid host: "/" or "\" (a path is not allowed in a host)`},
		{"127.1", "invalid host: last label is numeric but the name is not a dotted-quad IPv4 address"},
		{strings.Repeat("a", 64), "invalid host: label longer than 63 bytes"},
		{"a..b", "invalid host: empty label"},
		{"h:99999", "invalid host: port is not a number from 0 to 65535"},
	}
	for _, tt := range tests {
		_, _, err := Normalize(tt.in)
		if err == nil {
			t.Errorf("Normalize(%q) succeeded, want %q", tt.in, tt.want)
			continue
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("Normalize(%q) error = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestNormalizeReturnsInput checks that already-normal names come back as
// the caller's own string (or a substring), not a copy.
func TestNormalizeReturnsInput(t *testing.T) {
	for _, in := range []string{"example.com", "example.com:443", "example.com.", "1.2.3.4", "::1", "xn--fsqu00a.xn--fiqs8s"} {
		got, _, err := Normalize(in)
		if err != nil {
			t.Fatalf("Normalize(%q): %v", in, err)
		}
		if len(got) == 0 || !sameMemory(got, in) {
			t.Errorf("Normalize(%q) = %q, want a substring of the input, not a copy", in, got)
		}
	}
}

// sameMemory reports whether sub starts where s starts.
func sameMemory(sub, s string) bool {
	return len(sub) > 0 && len(s) > 0 && unsafe.StringData(sub) == unsafe.StringData(s)
}

func TestNormalizeAllocs(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"www.example.com.cn", 0},
		{"www.example.com.cn:443", 0},
		{"www.example.com.cn.", 0},
		{"203.0.113.7", 0},
		{"[2001:db8::1]:443", 0}, // canonical: the substring is returned
		{"WWW.EXAMPLE.COM.CN", 1},
		{"bad host", 0},
		{"127.1", 0},
	}
	for _, tt := range tests {
		got := testing.AllocsPerRun(100, func() { _, _, _ = Normalize(tt.in) })
		if got != tt.want {
			t.Errorf("Normalize(%q) allocates %v times, want %v", tt.in, got, tt.want)
		}
	}
}

// validNormal reports why s is not a valid normalised name, or "".
func validNormal(s string) string {
	if s == "" || len(s) > 253 {
		return "length"
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return "label length"
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "hyphen"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "byte"
			}
		}
	}
	return ""
}

func FuzzNormalize(f *testing.F) {
	for _, tt := range normalizeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, kind, err := Normalize(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("Normalize(%q) error %v does not wrap ErrInvalidHost", in, err)
			}
			if got != "" {
				t.Fatalf("Normalize(%q) = %q with error %v", in, got, err)
			}
			return
		}
		switch kind {
		case HostEmpty:
			if in != "" || got != "" {
				t.Fatalf("Normalize(%q) = %q, HostEmpty", in, got)
			}
			return
		case HostName:
			if why := validNormal(got); why != "" {
				t.Fatalf("Normalize(%q) = %q: not a valid name (%s)", in, got, why)
			}
		case HostIP:
			if !utf8.ValidString(got) || strings.ContainsAny(got, "[]%") {
				t.Fatalf("Normalize(%q) = %q: not a canonical IP", in, got)
			}
		default:
			t.Fatalf("Normalize(%q) kind %v", in, kind)
		}
		again, kind2, err := Normalize(got)
		if err != nil || again != got || kind2 != kind {
			t.Fatalf("Normalize(%q) = %q; Normalize of that = %q, %v, %v: not idempotent", in, got, again, kind2, err)
		}
		// The A-label cache must agree with full UTS-46 processing.
		if kind == HostName && strings.Contains(got, "xn--") {
			full, _, err := normalizeIDNA(got, false)
			if err != nil || full != got {
				t.Fatalf("Normalize(%q) = %q, but full IDNA processing gives %q, %v", in, got, full, err)
			}
		}
	})
}

// TestNormalizeALabelCache checks that names accepted through the A-label
// cache are exactly those full UTS-46 processing accepts, on first sight
// and when the labels are already remembered, including the Bidi rule,
// which looks across labels.
func TestNormalizeALabelCache(t *testing.T) {
	tests := []struct {
		in, want string // want "" means invalid
	}{
		{"xn--fsqu00a.xn--fiqs8s", "xn--fsqu00a.xn--fiqs8s"},
		{"www.xn--fsqu00a.xn--fiqs8s", "www.xn--fsqu00a.xn--fiqs8s"},
		{"WWW.XN--FSQU00A.XN--FIQS8S", "www.xn--fsqu00a.xn--fiqs8s"},
		{"xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"xn--4db.xn--4db", "xn--4db.xn--4db"}, // Hebrew alef: right-to-left, full path
		{"1a.xn--4db", ""},                     // Bidi rule: a digit-first label in a right-to-left name
		{"xn--fsqu00a.1a", "xn--fsqu00a.1a"},   // no right-to-left label: no Bidi rule
		{"xn--abc.xn--fiqs8s", ""},             // invalid Punycode
		{"xn--a.xn--fiqs8s", ""},               // decodes to a disallowed rune
		{"xn--fiqs8s.xn--ab-", ""},             // decodes to ASCII
		{"xn---abc-tj3b.xn--fiqs8s", ""},       // U-label with hyphens at the ends
		{"xn--zca.com", "xn--zca.com"},         // ß, nontransitional
		{"xn--1ug.com", ""},                    // a lone ZERO WIDTH JOINER (ContextJ)
	}
	for round := 1; round <= 2; round++ {
		for _, tt := range tests {
			got, _, err := Normalize(tt.in)
			full, _, ferr := normalizeIDNA(strings.ToLower(tt.in), false)
			if tt.want == "" {
				if err == nil || ferr == nil {
					t.Errorf("round %d: Normalize(%q) = %q, %v; full path %q, %v; want both invalid", round, tt.in, got, err, full, ferr)
				}
				continue
			}
			if got != tt.want || full != tt.want {
				t.Errorf("round %d: Normalize(%q) = %q, %v; full path %q, %v; want %q", round, tt.in, got, err, full, ferr, tt.want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = Normalize("www.xn--fsqu00a.xn--fiqs8s") }); n != 0 {
		t.Errorf("Normalize of a remembered A-label name allocates %v times, want 0", n)
	}
}

func BenchmarkNormalize(b *testing.B) {
	benches := []struct{ name, in string }{
		{"ASCIILower", "www.example.com.cn"},
		{"ASCIIUpper", "WWW.Example.COM.cn"},
		{"WithPort", "www.example.com.cn:8443"},
		{"IPv4", "203.0.113.7"},
		{"IPv6", "[2001:db8::1]:443"},
		{"ALabels", "www.xn--fsqu00a.xn--fiqs8s"},
		{"Unicode", "www.例子.中国"},
		{"Invalid", "www.example.com\x00"},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = Normalize(bb.in)
			}
		})
	}
}

// TestNormalizeRealClients drives real clients (Go crypto/tls and
// net/http, curl with libidn2, openssl s_client) at a loopback HTTPS
// server and normalises the SNI and Host each one actually sent. For
// Unicode names curl converts with libidn2 (UTS-46, nontransitional), so
// it is also a reference: Normalize of the Unicode form must give the
// A-labels curl put on the wire.
func TestNormalizeRealClients(t *testing.T) {
	type seen struct{ sni, host string }
	var (
		mu   sync.Mutex
		last seen
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last.host = r.Host
		mu.Unlock()
	}))
	srv.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		last = seen{sni: hello.ServerName}
		mu.Unlock()
		return nil, nil
	}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	get := func() seen {
		mu.Lock()
		defer mu.Unlock()
		s := last
		last = seen{}
		return s
	}

	// Names, not certificates, are under test: the clients skip
	// verification and dial the test server whatever the name.
	tr := srv.Client().Transport.(*http.Transport)
	tr.TLSClientConfig.InsecureSkipVerify = true
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	goClient := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	goTests := []struct{ url, want string }{
		{"https://Example.COM/", "example.com"},
		{"https://example.com.:8443/", "example.com"},
		{"https://WWW.XN--FSQU00A.XN--FIQS8S/", "www.xn--fsqu00a.xn--fiqs8s"},
	}
	for _, tt := range goTests {
		resp, err := goClient.Get(tt.url)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.url, err)
		}
		resp.Body.Close()
		s := get()
		for _, v := range []string{s.sni, s.host} {
			if got, _, err := Normalize(v); err != nil || got != tt.want {
				t.Errorf("Go client %s sent %q: Normalize = %q, %v; want %q", tt.url, v, got, err, tt.want)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Log("curl not installed: skipping the curl cases")
	} else {
		for _, name := range []string{"例子.中国", "www.例子.公司", "Bücher.de", "faß.de", "EXAMPLE.CN"} {
			cmd := exec.CommandContext(ctx, "curl", "-sk", "-o", "/dev/null", "--max-time", "10",
				"--connect-to", "::"+addr, "https://"+name+"/")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("curl https://%s/: %v: %s", name, err, out)
				continue
			}
			s := get()
			want, _, err := Normalize(name)
			if err != nil {
				t.Fatalf("Normalize(%q): %v", name, err)
			}
			for _, v := range []string{s.sni, s.host} {
				if got, _, err := Normalize(v); err != nil || got != want {
					t.Errorf("curl https://%s/ sent %q: Normalize = %q, %v; want %q (Normalize of the Unicode name)", name, v, got, err, want)
				}
			}
		}
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed: skipping the s_client cases")
	} else {
		for _, tt := range []struct{ sni, want string }{
			{"EXAMPLE.COM", "example.com"},
			// No "example.com." here: crypto/tls servers reject an SNI
			// with a trailing dot (decode_error) before any callback.
			{"Www.Example.Com", "www.example.com"},
			{"Xn--Fsqu00a.Xn--Fiqs8s", "xn--fsqu00a.xn--fiqs8s"},
		} {
			cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-servername", tt.sni)
			cmd.Stdin = strings.NewReader("")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("openssl s_client -servername %s: %v: %s", tt.sni, err, out)
				continue
			}
			s := get()
			if got, _, err := Normalize(s.sni); err != nil || got != tt.want {
				t.Errorf("openssl -servername %s sent %q: Normalize = %q, %v; want %q", tt.sni, s.sni, got, err, tt.want)
			}
		}
	}
}

// TestALabelCacheBoundedConcurrent fills the A-label cache past its bound
// from several goroutines (run with -race): every name must still be
// normalised correctly, and the cache must stop at aLabelCacheMax.
func TestALabelCacheBoundedConcurrent(t *testing.T) {
	const n = aLabelCacheMax + 300
	names := make([]string, n)
	for i := range names {
		a, _, err := Normalize("例" + strconv.Itoa(i) + "子.中国")
		if err != nil {
			t.Fatal(err)
		}
		names[i] = a
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 2 { // overlapping halves: the same labels race
				got, _, err := Normalize(strings.ToUpper(names[i]))
				if err != nil || got != names[i] {
					select {
					case errs <- fmt.Sprintf("Normalize(%q) = %q, %v; want %q", strings.ToUpper(names[i]), got, err, names[i]):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := len(*aLabelCache.Load()); got > aLabelCacheMax {
		t.Errorf("A-label cache holds %d labels, want at most %d", got, aLabelCacheMax)
	}
	// A name whose labels did not fit is still accepted (full path).
	last := names[n-1]
	if got, _, err := Normalize(last); err != nil || got != last {
		t.Errorf("Normalize(%q) = %q, %v after the cache filled", last, got, err)
	}
}
