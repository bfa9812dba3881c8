package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// classifyTests are TestClassify's cases and FuzzClassify's seeds.
var classifyTests = []struct {
	name string
	in   string
	want string // "" = needs more bytes
}{
	{"empty", "", ""},
	{"tls handshake", "\x16", sniffTLS},
	{"tls hello start", "\x16\x03\x01\x02\x00\x01", sniffTLS},
	{"http get", "GET / HTTP/1.1\r\nHost: a.cn\r\n\r\n", sniffHTTP},
	{"http post", "POST /form HTTP/1.0\r\n", sniffHTTP},
	{"http lower-case method", "get / HTTP/1.1\r\n", sniffHTTP},
	{"http lower-case version", "GET / http/1.1\r\n", sniffHTTP},
	{"http odd method", "SSH-2.0-x / HTTP/1.1\r\n", sniffHTTP},
	{"http double spaces", "GET  /  HTTP/1.1\r\n", sniffHTTP},
	{"http leading empty line", "\r\nGET / HTTP/1.1\r\n", sniffHTTP},
	{"http/0.9", "GET /\r\n", sniffHTTP},
	{"http/0.9 bare LF", "GET /\n", sniffHTTP},
	{"http utf-8 target", "GET /\xe4\xbe\x8b HTTP/1.1\r\n", sniffHTTP},
	{"http absolute form", "GET http://a.cn/ HTTP/1.1\r\n", sniffHTTP},
	{"http2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", sniffHTTP},
	{"partial method", "GE", ""},
	{"partial target", "FOO /ab", ""},
	{"partial version", "FOO / HT", ""},
	{"get needs no more", "GET ", sniffHTTP},
	{"ssh banner", "SSH-2.0-OpenSSH_9.6\r\n", sniffOther},
	{"ssh banner with comment", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", sniffOther},
	{"ssh banner with long comment", "SSH-2.0-Foo some comment here\r\n", sniffOther},
	{"irc", "NICK guest\r\n", sniffOther},
	{"irc user", "USER guest 0 * :Guest\r\n", sniffOther},
	{"sip", "INVITE sip:bob@a.cn SIP/2.0\r\n", sniffOther},
	{"rtsp", "OPTIONS rtsp://a.cn/s RTSP/1.0\r\n", sniffOther},
	{"redis resp", "*1\r\n$4\r\nPING\r\n", sniffOther},
	{"postgres startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f", sniffOther},
	{"binary", "\x00\x01\x02\x03", sniffOther},
	{"sslv2 hello", "\x80\x2e\x01\x00\x02", sniffOther},
	{"proxy v1", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n", sniffProxyHeader},
	{"proxy v1 prefix", "PROX", ""},
	{"proxy v2", string(proxyV2Sig) + "\x21\x11\x00\x0c", sniffProxyHeader},
	{"proxy v2 prefix", "\r\n\r\n\x00", ""},
	{"proxy-like method", "PROXYX / HTTP/1.1\r\n", sniffHTTP},
	// Odd whitespace that lenient servers split on (Python's
	// http.server splits a Latin-1 line on str.isspace, others decode
	// UTF-8 or skip leading blanks): HTTP, for the strict handler to
	// refuse.
	{"tabs", "GET\t/\tHTTP/1.1\r\n", sniffHTTP},
	{"leading space", " GET / HTTP/1.1\r\n", sniffHTTP},
	{"leading tab", "\tGET / HTTP/1.1\r\n", sniffHTTP},
	{"vertical tabs", "GET\x0b/\x0bHTTP/1.1\r\n", sniffHTTP},
	{"form feeds", "GET\x0c/\x0cHTTP/1.1\r\n", sniffHTTP},
	{"carriage returns", "GET\r/\rHTTP/1.1\r\n", sniffHTTP},
	{"file separators", "GET\x1c/\x1dHTTP/1.1\r\n", sniffHTTP},
	{"latin-1 nbsp", "GET\xa0/\xa0HTTP/1.1\r\n", sniffHTTP},
	{"latin-1 nel", "GET\x85/\x85HTTP/1.1\r\n", sniffHTTP},
	{"ideographic space", "GET\u3000/\u3000HTTP/1.1\r\n", sniffHTTP},
	{"byte order mark", "\ufeffGET / HTTP/1.1\r\n", sniffHTTP},
	{"get then any separator", "GET\x00", sniffHTTP},
	{"lower-case get then tab", "get\t", sniffHTTP},
	{"unknown method tabs", "FOO\t/\tHTTP/1.1\r\n", sniffHTTP},
	{"unknown method nbsp", "FOO\xa0/\xa0http/1.0\r\n", sniffHTTP},
	{"unknown method odd target", "FOO \x7e\xff\x1f HTTP/1.1\r\n", sniffHTTP},
	{"unknown method, version cut", "FOO / HTT", ""},
	{"unknown method, no line end", "FOO bar baz", ""},
	{"webdav", "PROPFIND\t/\tHTTP/1.1\r\n", sniffHTTP},
	{"options", "OPTIONS\t*\tHTTP/1.1\r\n", sniffHTTP},
	{"non-token method", "{x} / HTTP/1.1\r\n", sniffHTTP},
	{"get prefix", "GE", ""},
	{"longer token than get", "GETS / x\r\n", sniffOther},
	{"leading blanks only", " \t\r\n", ""},
	// Other protocols stay other.
	{"redis inline", "PING\r\n", sniffOther},
	{"redis inline args", "SET k v\r\n", sniffOther},
	{"irc cap", "CAP LS 302\r\nNICK guest\r\n", sniffOther},
	{"sip options", "OPTIONS sip:bob@a.cn SIP/2.0\r\n", sniffOther},
	{"rdp", "\x03\x00\x00\x13\x0e\xe0\x00\x00", sniffOther},
	{"socks5", "\x05\x01\x00", sniffOther},
	{"socks4", "\x04\x01\x00\x50\x7f\x00\x00\x01user\x00", sniffOther},
	{"mqtt connect", "\x10\x12\x00\x04MQTT\x04\x02", sniffOther},
	{"amqp", "AMQP\x00\x00\x09\x01", sniffOther},
	{"bittorrent", "\x13BitTorrent protocol", sniffOther},
	{"leading space then binary", " \x00\x01", sniffOther},
	{"json line", "{\"id\":1}\n", sniffOther},
	{"one word line", "HELLO\n", sniffOther},
}

func TestClassify(t *testing.T) {
	for _, tt := range classifyTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify([]byte(tt.in), false); got != tt.want {
				t.Errorf("classify(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	// A full peek that is still HTTP-shaped is HTTP.
	long := "FOO /" + strings.Repeat("a", sniffPeekMax)
	if got := classify([]byte(long[:sniffPeekMax]), true); got != sniffHTTP {
		t.Errorf("classify(long target, full) = %q, want %q", got, sniffHTTP)
	}
}

// FuzzClassify checks that classify never panics, that a decision made on
// a prefix never changes as bytes are added, and that whatever a server
// would serve as a request is sniffed as HTTP (anything else would be
// relayed undecided: an evasion). The servers are net/http, the strict
// handler's parseRequestHead, and lenientServes' model of Python's
// http.server.
func FuzzClassify(f *testing.F) {
	for _, tt := range classifyTests {
		f.Add([]byte(tt.in))
	}
	for _, s := range []string{"M-SEARCH * HTTP/1.1\r\n\r\n", "GET /\xff HTTP/1.0\r\n\r\n", "\r\nGET /\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > sniffPeekMax {
			b = b[:sniffPeekMax]
		}
		got := classify(b, false)
		switch got {
		case "", sniffTLS, sniffHTTP, sniffOther, sniffProxyHeader:
		default:
			t.Fatalf("classify(%q) = %q", b, got)
		}
		for k := 0; k < len(b); k++ {
			if p := classify(b[:k], false); p != "" && p != got {
				t.Fatalf("classify(%q) = %q but its prefix %q was %q", b, got, b[:k], p)
			}
		}
		if got != sniffOther {
			return
		}
		if req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b))); err == nil {
			req.Body.Close()
			t.Fatalf("net/http reads %q as a %s request, classify says %q", b, req.Method, got)
		}
		if p, err := httpOurParse(b, false); err == nil {
			t.Fatalf("parseRequestHead reads %q as a %s request, classify says %q", b, p.method, got)
		}
		if lenientServes(b) {
			t.Fatalf("a lenient server reads %q as a request, classify says %q", b, got)
		}
	})
}

// lenientServes models BaseHTTPRequestHandler.parse_request of Python's
// http.server (and so Werkzeug's development server, which routes any
// method): the first line, decoded as Latin-1, split on str.isspace, is a
// request when it has three words, the last starting with "HTTP/", or two
// with GET (HTTP/0.9). Empty lines before it are skipped, as RFC 9112
// §2.2 lets servers do. A line holding a control byte that no server reads
// as a blank is left out: classify takes it for binary, and serving it
// would take a method outside httpMethods routed despite the control byte.
func lenientServes(b []byte) bool {
	var line []byte
	for {
		l, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return false // the line is not complete
		}
		if len(bytes.Trim(l, "\r")) != 0 {
			line = l
			break
		}
		b = rest
	}
	for _, c := range line {
		if (c < ' ' || c == 0x7f) && !isSniffBlank(c) {
			return false
		}
	}
	words := strings.FieldsFunc(string(latin1(line)), func(r rune) bool {
		return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
	})
	switch len(words) {
	case 3:
		return strings.HasPrefix(words[2], "HTTP/")
	case 2:
		return words[0] == "GET"
	}
	return false
}

// latin1 decodes b as ISO 8859-1.
func latin1(b []byte) []rune {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return r
}

// recUpstream is a raw TCP upstream that counts the connections it
// accepted and the bytes they sent, for proving what reached a server.
type recUpstream struct {
	ln       *net.TCPListener
	accepted atomic.Int64
	received atomic.Int64
	wg       sync.WaitGroup
}

// newRecUpstream serves each connection with serve, which reads through
// the counting reader r.
func newRecUpstream(t *testing.T, serve func(c *net.TCPConn, r io.Reader)) *recUpstream {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &recUpstream{ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			u.accepted.Add(1)
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				serve(c, countingReader{c, &u.received})
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

func (u *recUpstream) addr() string { return u.ln.Addr().String() }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// serveEcho echoes what it reads.
func serveEcho(c *net.TCPConn, r io.Reader) { io.Copy(c, r) }

// serveBanner speaks first, like SSH, then echoes.
func serveBanner(c *net.TCPConn, r io.Reader) {
	io.WriteString(c, "SSH-2.0-icpgate_test\r\n")
	io.Copy(c, r)
}

// serveHTTPHost answers HTTP requests with the Host they carried.
func serveHTTPHost(c *net.TCPConn, r io.Reader) {
	br := bufio.NewReader(r)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		body := "upstream saw " + req.Host
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

func autoListener(upstream string, f func(l *ListenerConfig)) Config {
	l := ListenerConfig{Name: "auto", Protocol: "auto", Address: "127.0.0.1:0", Upstream: upstream}
	if f != nil {
		f(&l)
	}
	return Config{Listeners: []ListenerConfig{l}}
}

var filedDecider = mapDecider{filed: map[string]string{"filed.cn": ""}, ipAccess: true}

func dialRaw(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// readClosed reads c to its end and returns what it got: a refused
// connection gets nothing.
func readClosed(t *testing.T, c io.Reader) string {
	t.Helper()
	b, _ := io.ReadAll(c) // EOF or reset: both end it
	return string(b)
}

func TestAutoHTTP(t *testing.T) {
	up := newRecUpstream(t, serveHTTPHost)
	g := startGateway(t, autoListener(up.addr(), nil), filedDecider)
	c := dialRaw(t, g.addr("auto"))
	br := bufio.NewReader(c)
	body, err := httpGet(c, br, "www.filed.cn")
	if err != nil || body != "upstream saw www.filed.cn" {
		t.Fatalf("filed: got %q, %v", body, err)
	}
	// The next request on the same connection is decided too.
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-Icpgate-Reason") != "unfiled" {
		t.Errorf("unfiled: got %d %q, want 403 unfiled", resp.StatusCode, resp.Header.Get("X-Icpgate-Reason"))
	}
	if n := testutil.ToFloat64(g.m.Edge.Sniffed.WithLabelValues("auto", sniffHTTP)); n != 1 {
		t.Errorf("sniffed http: got %v, want 1", n)
	}
}

func TestAutoTLS(t *testing.T) {
	up := newTLSUpstream(t, "origin", nil)
	g := startGateway(t, autoListener(up.addr(), nil), filedDecider)
	c, err := dialTLS(g.addr("auto"), "filed.cn")
	if err != nil {
		t.Fatalf("filed: %v", err)
	}
	body, err := httpGet(c, bufio.NewReader(c), "filed.cn")
	c.Close()
	if err != nil || body != "hello filed.cn from origin" {
		t.Fatalf("filed: got %q, %v", body, err)
	}
	before := up.accepted.Load()
	if c, err := dialTLS(g.addr("auto"), "unfiled.cn"); err == nil {
		c.Close()
		t.Fatal("unfiled: handshake succeeded")
	} else if !strings.Contains(err.Error(), "access denied") {
		t.Errorf("unfiled: got %v, want an access_denied alert", err)
	}
	if n := up.accepted.Load(); n != before {
		t.Errorf("unfiled reached the upstream (%d connections)", n-before)
	}
}

func TestAutoServerSpeaksFirst(t *testing.T) {
	up := newRecUpstream(t, serveBanner)
	g := startGateway(t, autoListener(up.addr(), func(l *ListenerConfig) { l.SniffTimeout = 50 * time.Millisecond }), filedDecider)
	c := dialRaw(t, g.addr("auto"))
	br := bufio.NewReader(c)
	banner, err := br.ReadString('\n')
	if err != nil || banner != "SSH-2.0-icpgate_test\r\n" {
		t.Fatalf("banner: got %q, %v", banner, err)
	}
	// An SSH client's own banner (with a comment) then flows through.
	const hello = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
	io.WriteString(c, hello)
	echo := make([]byte, len(hello))
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != hello {
		t.Fatalf("echo: got %q, %v", echo, err)
	}
	c.CloseWrite()
	if rest := readClosed(t, br); rest != "" {
		t.Errorf("after half-close: got %q", rest)
	}
	for _, k := range []struct {
		kind string
		want float64
	}{{sniffSilent, 1}, {sniffHTTP, 0}} {
		if n := testutil.ToFloat64(g.m.Edge.Sniffed.WithLabelValues("auto", k.kind)); n != k.want {
			t.Errorf("sniffed %s: got %v, want %v", k.kind, n, k.want)
		}
	}
	if n := testutil.ToFloat64(g.m.Edge.OtherProtocols.WithLabelValues("auto", "pass")); n != 1 {
		t.Errorf("other pass: got %v, want 1", n)
	}
}

func TestAutoOtherClientFirst(t *testing.T) {
	up := newRecUpstream(t, serveEcho)
	g := startGateway(t, autoListener(up.addr(), nil), filedDecider)
	c := dialRaw(t, g.addr("auto"))
	msg := "\x00\x00\x00\x08\x04\xd2\x16\x2f binary protocol"
	io.WriteString(c, msg)
	c.CloseWrite()
	if got := readClosed(t, c); got != msg {
		t.Errorf("echo: got %q, want %q", got, msg)
	}
}

func TestAutoOtherBlocked(t *testing.T) {
	up := newRecUpstream(t, serveBanner)
	g := startGateway(t, autoListener(up.addr(), func(l *ListenerConfig) {
		l.OtherProtocols = "block"
		l.SniffTimeout = 20 * time.Millisecond
	}), filedDecider)
	for _, tt := range []struct{ name, send string }{{"client first", "\x00binary"}, {"server first", ""}} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, g.addr("auto"))
			io.WriteString(c, tt.send)
			if got := readClosed(t, c); got != "" {
				t.Errorf("got %q, want the connection closed with nothing", got)
			}
		})
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("blocked other protocols reached the upstream: %d connections", n)
	}
	if n := testutil.ToFloat64(g.m.Edge.OtherProtocols.WithLabelValues("auto", "block")); n != 2 {
		t.Errorf("other block: got %v, want 2", n)
	}
}

// TestAutoSlowClient: a client that says nothing for longer than the sniff
// timeout is first taken for a server-speaks-first protocol (the upstream
// is dialled), but when it then speaks HTTP or TLS its request is decided
// as usual and a blocked one never sends a byte upstream.
func TestAutoSlowClient(t *testing.T) {
	up := newRecUpstream(t, serveHTTPHost)
	g := startGateway(t, autoListener(up.addr(), func(l *ListenerConfig) { l.SniffTimeout = 20 * time.Millisecond }), filedDecider)
	for _, tt := range []struct {
		host   string
		status int
		body   string
	}{{"unfiled.cn", 403, ""}, {"filed.cn", 200, "upstream saw filed.cn"}} {
		t.Run(tt.host, func(t *testing.T) {
			received, accepted := up.received.Load(), up.accepted.Load()
			c := dialRaw(t, g.addr("auto"))
			// Speak only once the gateway has dialled the upstream: the
			// sniff timeout has certainly passed.
			waitFor(t, "the early upstream dial", func() bool { return up.accepted.Load() > accepted })
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", tt.host)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || (tt.body != "" && string(b) != tt.body) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, b, tt.status, tt.body)
			}
			if tt.status == 403 && up.received.Load() != received {
				t.Errorf("a blocked request sent %d bytes upstream", up.received.Load()-received)
			}
		})
	}
}

// TestAutoSlowFirstBytes: an HTTP request whose first bytes arrive apart is
// still sniffed as HTTP and decided (not relayed as "other").
func TestAutoSlowFirstBytes(t *testing.T) {
	up := newRecUpstream(t, serveHTTPHost)
	g := startGateway(t, autoListener(up.addr(), nil), filedDecider)
	c := dialRaw(t, g.addr("auto"))
	c.SetNoDelay(true)
	io.WriteString(c, "G")
	time.Sleep(50 * time.Millisecond) // separate segments
	io.WriteString(c, "ET /")
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, " HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("got %d, want 403", resp.StatusCode)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("blocked request dialled the upstream %d times", n)
	}
}

// TestAutoStalledStart: a start that looks like HTTP but never completes is
// refused at the hello timeout, not relayed undecided.
func TestAutoStalledStart(t *testing.T) {
	up := newRecUpstream(t, serveEcho)
	cfg := autoListener(up.addr(), nil)
	cfg.Timeouts.Hello = 200 * time.Millisecond
	g := startGateway(t, cfg, filedDecider)
	c := dialRaw(t, g.addr("auto"))
	io.WriteString(c, "GE")
	if got := readClosed(t, c); got != "" {
		t.Errorf("got %q, want nothing", got)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("stalled start reached the upstream: %d connections", n)
	}
	if n := testutil.ToFloat64(g.m.Edge.Sniffed.WithLabelValues("auto", sniffIncomplete)); n != 1 {
		t.Errorf("sniffed incomplete: got %v, want 1", n)
	}
}

func BenchmarkClassify(b *testing.B) {
	req := []byte("GET /index.html HTTP/1.1\r\nHost: www.filed.cn\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		classify(req, false)
	}
}

// TestAutoOddWhitespace: request lines that lenient servers (Python's
// http.server splits on any whitespace; others skip leading blanks or
// decode UTF-8 first) read as HTTP but that are not the strict grammar
// must reach the strict HTTP handler and be refused there, never be
// relayed undecided as "other".
func TestAutoOddWhitespace(t *testing.T) {
	up := newRecUpstream(t, serveHTTPHost)
	g := startGateway(t, autoListener(up.addr(), nil), filedDecider)
	for _, tt := range []struct {
		name, line string
		status     int
	}{
		{"tabs", "GET\t/\tHTTP/1.1", 400},
		{"leading space", " GET / HTTP/1.1", 400},
		{"leading tab", "\tGET / HTTP/1.1", 400},
		{"vertical tabs", "GET\x0b/\x0bHTTP/1.1", 400},
		{"form feeds", "GET\x0c/\x0cHTTP/1.1", 400},
		{"carriage returns", "GET\r/\rHTTP/1.1", 400},
		{"file separators", "GET\x1c/\x1cHTTP/1.1", 400},
		{"latin-1 nbsp", "GET\xa0/\xa0HTTP/1.1", 400},
		{"latin-1 nel", "GET\x85/\x85HTTP/1.1", 400},
		{"ideographic space", "GET\u3000/\u3000HTTP/1.1", 400},
		{"byte order mark", "\ufeffGET / HTTP/1.1", 400},
		{"tab before version", "GET /\tHTTP/1.1", 400},
		{"unknown method tabs", "FOO\t/\tHTTP/1.1", 400},
		{"lower case tabs", "get\t/\thttp/1.1", 400},
		{"leading empty line", "\r\nGET / HTTP/1.1", 400},
		// Well formed but for the case of the method: decided on its Host.
		{"lower case method", "get / HTTP/1.1", 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, g.addr("auto"))
			fmt.Fprintf(c, "%s\r\nHost: unfiled-demo.cn\r\n\r\n", tt.line)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%q: %v", tt.line, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("%q: got %d, want %d", tt.line, resp.StatusCode, tt.status)
			}
		})
	}
	// The HTTP/2 prior-knowledge preface is HTTP too, refused as a version
	// the gateway does not speak.
	c := dialRaw(t, g.addr("auto"))
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("h2 preface: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 505 {
		t.Errorf("h2 preface: got %d, want 505", resp.StatusCode)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("refused requests reached the origin: %d connections, %d bytes", n, up.received.Load())
	}
	if n := testutil.ToFloat64(g.m.Edge.OtherProtocols.WithLabelValues("auto", "pass")); n != 0 {
		t.Errorf("other pass: got %v, want 0", n)
	}
}
