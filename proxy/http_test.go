package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

// httpMapDecider is a small registry stand-in: a map from registrable domain to
// decision. A host matches its own entry or a parent domain's; "" and IP
// literals get ip_access (pass); everything else is unfiled.
type httpMapDecider map[string]Decision

func (m httpMapDecider) Decide(host string) Decision {
	h := strings.ToLower(host)
	if hp, err := netip.ParseAddrPort(h); err == nil {
		h = hp.Addr().String()
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || net.ParseIP(strings.Trim(h, "[]")) != nil {
		return Decision{Pass: true, Reason: "ip_access"}
	}
	for d := h; d != ""; {
		if dec, ok := m[d]; ok {
			dec.Host = h
			dec.Domain = d
			return dec
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return Decision{Reason: "unfiled", Host: h, Domain: h}
}

func httpTestDecider() httpMapDecider {
	return httpMapDecider{
		"filed.cn":     {Pass: true, Reason: "filed", FilingNumber: "京ICP备10206937号-1"},
		"cancelled.cn": {Reason: "cancelled", FilingNumber: "京ICP备09051301号"},
		"black.cn":     {Reason: "blacklisted"},
	}
}

// httpUpstreamRecord is one request as the counting upstream received it.
type httpUpstreamRecord struct {
	method, uri, host, proto string
	header, trailer          http.Header
	body                     string
}

// httpCountingUpstream is a real net/http server on loopback that records every
// request and every byte it receives.
type httpCountingUpstream struct {
	addr string
	mu   sync.Mutex
	reqs []httpUpstreamRecord
	// conns counts TCP connections accepted; bytes counts bytes read.
	conns, bytes int
}

func (u *httpCountingUpstream) requests() []httpUpstreamRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]httpUpstreamRecord(nil), u.reqs...)
}

func (u *httpCountingUpstream) counts() (conns, bytes int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns, u.bytes
}

type httpCountingListener struct {
	net.Listener
	u *httpCountingUpstream
}

func (l httpCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.u.mu.Lock()
		l.u.conns++
		l.u.mu.Unlock()
		c = &httpCountingConn{Conn: c, u: l.u}
	}
	return c, err
}

type httpCountingConn struct {
	net.Conn
	u *httpCountingUpstream
}

func (c *httpCountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.u.mu.Lock()
	c.u.bytes += n
	c.u.mu.Unlock()
	return n, err
}

var httpBigBody = bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // 3 MiB

func startHTTPUpstream(t testing.TB) *httpCountingUpstream {
	t.Helper()
	u := &httpCountingUpstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, httpUpstreamRecord{r.Method, r.RequestURI, r.Host, r.Proto, r.Header.Clone(), r.Trailer.Clone(), string(body)})
		u.mu.Unlock()
		switch r.URL.Path {
		case "/slow":
			time.Sleep(200 * time.Millisecond)
			io.WriteString(w, "slow")
		case "/chunked":
			f := w.(http.Flusher)
			for i := 0; i < 5; i++ {
				fmt.Fprintf(w, "part%d;", i)
				f.Flush()
			}
		case "/echo":
			w.Header().Set("X-Echo-Len", strconv.Itoa(len(body)))
			w.Write(body)
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(httpBigBody)))
			w.Write(httpBigBody)
		case "/ws", "/nows":
			if r.URL.Path == "/ws" && r.Header.Get("Upgrade") == "websocket" {
				c, brw, err := w.(http.Hijacker).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				brw.Flush()
				io.Copy(c, brw) // echo until the client half-closes
				return
			}
			io.WriteString(w, "no upgrade")
		case "/close":
			c, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited body")
			brw.Flush()
			c.Close()
		case "/hop":
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("Connection", "X-Secret")
			w.Header().Set("X-Secret", "1")
			w.Header().Set("X-Kept", "1")
			io.WriteString(w, "hop")
		default:
			io.WriteString(w, "hello from upstream")
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(httpCountingListener{ln, u})
	t.Cleanup(func() { srv.Close() })
	u.addr = ln.Addr().String()
	return u
}

// gateway is an httpHandler driven from a test listener, as the Server
// will drive it.
type httpGateway struct {
	addr   string
	h      *httpHandler
	m      *Metrics
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// httpGatewaySock makes startHTTPGateway hand its handler every
// connection as a sockConn, as the engine does (enghttp.go), instead of
// the *net.TCPConn its accept loop got. TestHTTPOverSockConn sets it.
var httpGatewaySock bool

// sockConnOf turns c into the sockConn an engine would hand over: a
// duplicate of its socket in an *os.File; c itself is closed.
func sockConnOf(t testing.TB, c *net.TCPConn) *sockConn {
	nfd, err := dupCloexec(c)
	local, peer := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	c.Close()
	if err != nil {
		t.Error(err)
		return nil
	}
	sc, err := newSockConn(nfd, local, peer)
	if err != nil {
		t.Error(err)
	}
	return sc
}

// TestHTTPOverSockConn runs the handler's tests on connections handed over
// as sockConns (an *os.File, not a *net.TCPConn): reads and writes, their
// deadlines, spliced bodies both ways, an upgraded tunnel, half-closes,
// the drain, the slow-client timeouts.
func TestHTTPOverSockConn(t *testing.T) {
	httpGatewaySock = true
	t.Cleanup(func() { httpGatewaySock = false })
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"PassFiledHeaders", TestHTTPPassFiledHeaders},
		{"GoClientKeepAlive", TestHTTPGoClientKeepAlive},
		{"Blocked", TestHTTPBlocked},
		{"PipelinedSecondBlocked", TestHTTPPipelinedSecondBlocked},
		{"RefusedNoDesync", TestHTTPRefusedNoDesync},
		{"ChunkedRequest", TestHTTPChunkedRequest},
		{"ContentLengthBodies", TestHTTPContentLengthBodies},
		{"Upgrade", TestHTTPUpgrade},
		{"HeaderLimits", TestHTTPHeaderLimits},
		{"SlowHead", TestHTTPSlowHead},
		{"SlowBody", TestHTTPSlowBody},
		{"ExpectContinue", TestHTTPExpectContinue},
		{"Drain", TestHTTPDrain},
		{"DrainInFlight", TestHTTPDrainInFlight},
		{"UpstreamResponses", TestHTTPUpstreamResponses},
		{"NoGoroutineLeak", TestHTTPNoGoroutineLeak},
	} {
		t.Run(tc.name, tc.f)
	}
}

func startHTTPGateway(t testing.TB, cfg Config, d Decider) *httpGateway {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "edge-test"
	}
	l := cfg.Listeners[0]
	m := NewMetrics(prometheus.NewRegistry())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := &httpGateway{h: newHTTPHandler(cfg, l, d, m, log), m: m}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			var sc stream = c
			if httpGatewaySock {
				sc = sockConnOf(t, c)
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.h.serveConn(ctx, sc, ap)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		g.wg.Wait()
	})
	return g
}

func httpBaseConfig(upstream string) Config {
	return Config{
		Node:      "edge-test",
		Listeners: []ListenerConfig{{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: upstream}},
		Timeouts:  Timeouts{Hello: 2 * time.Second, Dial: time.Second, Idle: 5 * time.Second},
	}
}

func httpDialRaw(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func httpReadResp(t testing.TB, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// httpExpectClosed checks the gateway closed the connection.
func httpExpectClosed(t testing.TB, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("connection still open: got byte %q", b)
	}
}

func TestHTTPPassFiledHeaders(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET /path?q=1 HTTP/1.1\r\n"+
		"Host: www.filed.cn\r\n"+
		"User-Agent: raw\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\n"+
		"X-Forwarded-Host: evil\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"Forwarded: for=6.6.6.6\r\n"+
		"X-Real-IP: 6.6.6.6\r\n"+
		"Proxy-Authorization: Basic eA==\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"TE: trailers\r\n"+
		"Trailer: X-T\r\n"+
		"Connection: keep-alive, X-Drop\r\n"+
		"X-Drop: secret\r\n"+
		"Upgrade: h2c\r\n"+
		"HTTP2-Settings: AAMAAABkAAQAAP__\r\n"+
		"X-Request-Id: spoofed\r\n"+
		"X-Kept: yes\r\n\r\n")
	resp, body := httpReadResp(t, br, "GET")
	if resp.StatusCode != 200 || body != "hello from upstream" {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "hello from upstream")
	}
	reqs := u.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.host != "www.filed.cn" || r.uri != "/path?q=1" {
		t.Errorf("got host %q uri %q, want %q %q", r.host, r.uri, "www.filed.cn", "/path?q=1")
	}
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Kept":            "yes",
		"User-Agent":        "raw",
	}
	for k, v := range want {
		if got := r.header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: got %q, want [%q]", k, got, v)
		}
	}
	for _, k := range []string{"X-Forwarded-Host", "Forwarded", "X-Real-Ip", "Proxy-Authorization", "Keep-Alive",
		"Te", "Trailer", "X-Drop", "Upgrade", "Http2-Settings", "Connection"} {
		if got := r.header.Values(k); len(got) != 0 {
			t.Errorf("%s forwarded: got %q, want none", k, got)
		}
	}
	ids := r.header.Values("X-Request-Id")
	if len(ids) != 1 || len(ids[0]) != 16 {
		t.Fatalf("X-Request-Id: got %q, want one of 16 hex digits", ids)
	}
	id := ids[0]
	// Response hop-by-hop fields are stripped too.
	io.WriteString(c, "GET /hop HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	resp, body = httpReadResp(t, br, "GET")
	if body != "hop" || resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Kept") != "1" {
		t.Errorf("response hop-by-hop: got %v %q", resp.Header, body)
	}
	if id2 := u.requests()[1].header.Get("X-Request-Id"); id2 == id {
		t.Errorf("request IDs repeat: %q", id)
	}
}

func TestHTTPGoClientKeepAlive(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	const n = 200
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("GET", "http://"+g.addr+"/", nil)
		req.Host = "filed.cn"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello from upstream" {
			t.Fatalf("request %d: got %q", i, b)
		}
	}
	conns, _ := u.counts()
	if got := len(u.requests()); got != n || conns != 1 {
		t.Fatalf("upstream saw %d requests on %d connections, want %d on 1", got, conns, n)
	}
	if got := testutil.ToFloat64(g.m.Decisions.WithLabelValues("http", "pass", "filed")); got != n {
		t.Fatalf("decisions_total{pass,filed}: got %v, want %d", got, n)
	}
}

func TestHTTPBlocked(t *testing.T) {
	tests := []struct {
		name, host, reason string
		accept             string
	}{
		{"unfiled", "www.unfiled.cn", "unfiled", ""},
		{"unfiled json", "unfiled.cn", "unfiled", "application/json"},
		{"cancelled", "cancelled.cn", "cancelled", ""},
		{"blacklisted subdomain", "a.b.black.cn:8080", "blacklisted", ""},
		{"percent-encoded dot is not the filed name", "filed%2ecn", "unfiled", ""},
	}
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := httpDialRaw(t, g.addr)
			extra := ""
			if tc.accept != "" {
				extra = "Accept: " + tc.accept + "\r\n"
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\n"+extra+"\r\n")
			resp, body := httpReadResp(t, br, "GET")
			if resp.StatusCode != 403 {
				t.Fatalf("got status %d, want 403", resp.StatusCode)
			}
			if got := resp.Header.Get("X-Icpgate-Reason"); got != tc.reason {
				t.Fatalf("got reason %q, want %q", got, tc.reason)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || !resp.Close {
				t.Fatalf("got headers %v, want no-store and close", resp.Header)
			}
			if !strings.Contains(body, reasonTexts[tc.reason].messageEn) {
				t.Fatalf("body lacks the %s explanation: %q", tc.reason, body)
			}
			if tc.accept != "" && !strings.Contains(body, `"reason":"`+tc.reason+`"`) {
				t.Fatalf("got body %q, want JSON", body)
			}
			httpExpectClosed(t, br)
		})
	}
	if n := len(u.requests()); n != 0 {
		t.Fatalf("upstream saw %d requests, want 0", n)
	}
	if conns, bytes := u.counts(); conns != 0 || bytes != 0 {
		t.Fatalf("upstream saw %d connections, %d bytes; want none", conns, bytes)
	}
}

func TestHTTPPipelinedSecondBlocked(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: filed.cn\r\n\r\n"+
		"GET /two HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n"+
		"GET /three HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	resp, _ := httpReadResp(t, br, "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("first: got %d, want 200", resp.StatusCode)
	}
	resp, _ = httpReadResp(t, br, "GET")
	if resp.StatusCode != 403 || resp.Header.Get("X-Icpgate-Reason") != "unfiled" {
		t.Fatalf("second: got %d %q, want 403 unfiled", resp.StatusCode, resp.Header.Get("X-Icpgate-Reason"))
	}
	httpExpectClosed(t, br)
	reqs := u.requests()
	if len(reqs) != 1 || reqs[0].uri != "/one" {
		t.Fatalf("upstream saw %d requests (%v), want exactly /one", len(reqs), reqs)
	}
}

func TestHTTPAbsoluteForm(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	tests := []struct {
		name, raw string
		status    int
		upHost    string
		upURI     string
	}{
		{"absolute unfiled, Host filed", "GET http://unfiled.cn/x HTTP/1.1\r\nHost: filed.cn\r\n\r\n", 403, "", ""},
		{"absolute filed, Host unfiled", "GET http://www.filed.cn/x?y=1 HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n", 200, "www.filed.cn", "/x?y=1"},
		{"absolute without path", "GET http://filed.cn?q HTTP/1.1\r\nHost: filed.cn\r\n\r\n", 200, "filed.cn", "/?q"},
		{"userinfo", "GET http://filed.cn@unfiled.cn/ HTTP/1.1\r\nHost: filed.cn\r\n\r\n", 400, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(u.requests())
			c, br := httpDialRaw(t, g.addr)
			io.WriteString(c, tc.raw)
			resp, _ := httpReadResp(t, br, "GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.status)
			}
			reqs := u.requests()[before:]
			if tc.upHost == "" {
				if len(reqs) != 0 {
					t.Fatalf("upstream saw %v, want nothing", reqs)
				}
				return
			}
			if len(reqs) != 1 || reqs[0].host != tc.upHost || reqs[0].uri != tc.upURI {
				t.Fatalf("upstream saw %v, want host %q uri %q", reqs, tc.upHost, tc.upURI)
			}
		})
	}
}

// TestHTTPRefusedNoDesync sends every malformed request with a valid one
// behind it: the gateway answers the error and closes, and the upstream
// sees neither.
func TestHTTPRefusedNoDesync(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	behind := "GET /smuggled HTTP/1.1\r\nHost: filed.cn\r\n\r\n"
	for _, tc := range httpDiffCases {
		if tc.ok {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c, br := httpDialRaw(t, g.addr)
			raw := strings.ReplaceAll(tc.raw, "a.cn", "filed.cn")
			io.WriteString(c, raw+behind)
			resp, _ := httpReadResp(t, br, "GET")
			want := 400
			switch {
			case strings.HasPrefix(raw, "CONNECT"):
				want = 405
			case strings.Contains(raw, "HTTP/2.0") || strings.Contains(raw, "HTTP/1.2"):
				want = 505
			case strings.Contains(raw, "Expect: something"):
				want = 417
			}
			if resp.StatusCode != want {
				t.Fatalf("got %d, want %d", resp.StatusCode, want)
			}
			httpExpectClosed(t, br)
		})
	}
	if reqs := u.requests(); len(reqs) != 0 {
		t.Fatalf("upstream saw %d requests, want 0: %v", len(reqs), reqs)
	}
	if conns, _ := u.counts(); conns != 0 {
		t.Fatalf("upstream saw %d connections, want 0", conns)
	}
}

func TestHTTPChunkedRequest(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	// Sent in pieces so framing is validated across reads.
	parts := []string{
		"POST /echo HTTP/1.1\r\nHost: filed.cn\r\nTransfer-Encoding: chunked\r\n\r\n",
		"5\r\nhel", "lo\r\n", "6;ext=1\r\n, worl\r\n", "1\r\nd\r\n0\r\nX-Trailer: 1\r\nHost: unfiled.cn\r\n", "\r\n",
	}
	for _, p := range parts {
		io.WriteString(c, p)
		time.Sleep(5 * time.Millisecond)
	}
	resp, body := httpReadResp(t, br, "POST")
	if resp.StatusCode != 200 || body != "hello, world" {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "hello, world")
	}
	if tr := u.requests()[0].trailer; len(tr) != 0 {
		t.Fatalf("request trailers forwarded: %v", tr)
	}
	// Chunked response relayed, then the connection is still usable.
	io.WriteString(c, "GET /chunked HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	resp, body = httpReadResp(t, br, "GET")
	if want := "part0;part1;part2;part3;part4;"; body != want || resp.TransferEncoding == nil {
		t.Fatalf("got %q (TE %v), want chunked %q", body, resp.TransferEncoding, want)
	}
	// A framing error after the head was forwarded: 400, connection closed.
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nTransfer-Encoding: chunked\r\n\r\n")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "2\r\nhi\r\n0x1\r\n")
	resp, _ = httpReadResp(t, br, "POST")
	if resp.StatusCode != 400 {
		t.Fatalf("got %d, want 400", resp.StatusCode)
	}
	httpExpectClosed(t, br)
}

func TestHTTPContentLengthBodies(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	// A 3 MiB request body (spliced) and a 3 MiB response.
	fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: %d\r\n\r\n", len(httpBigBody))
	go c.Write(httpBigBody)
	resp, body := httpReadResp(t, br, "POST")
	if resp.StatusCode != 200 || sha256.Sum256([]byte(body)) != sha256.Sum256(httpBigBody) {
		t.Fatalf("echo of 3 MiB: got %d, %d bytes", resp.StatusCode, len(body))
	}
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: filed.cn\r\n\r\nHEAD /big HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	_, body = httpReadResp(t, br, "GET")
	if sha256.Sum256([]byte(body)) != sha256.Sum256(httpBigBody) {
		t.Fatalf("3 MiB response corrupted: %d bytes", len(body))
	}
	resp, body = httpReadResp(t, br, "HEAD")
	if resp.ContentLength != int64(len(httpBigBody)) || body != "" {
		t.Fatalf("HEAD: got length %d body %d bytes", resp.ContentLength, len(body))
	}
	// A close-delimited response ends the client connection too.
	io.WriteString(c, "GET /close HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	resp, body = httpReadResp(t, br, "GET")
	if body != "close-delimited body" || !resp.Close {
		t.Fatalf("got %q close=%v, want close-delimited body and close", body, resp.Close)
	}
	httpExpectClosed(t, br)
}

func TestHTTPUpgrade(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	ws := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	t.Run("101 tunnels", func(t *testing.T) {
		c, br := httpDialRaw(t, g.addr)
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: filed.cn\r\n"+ws)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("got %v %v, want 101", resp, err)
		}
		io.WriteString(c, "ping through tunnel")
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(br)
		if string(got) != "ping through tunnel" {
			t.Fatalf("got %q, want echo", got)
		}
	})
	t.Run("200 does not tunnel", func(t *testing.T) {
		c, br := httpDialRaw(t, g.addr)
		io.WriteString(c, "GET /nows HTTP/1.1\r\nHost: filed.cn\r\n"+ws)
		resp, body := httpReadResp(t, br, "GET")
		if resp.StatusCode != 200 || body != "no upgrade" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		// The next bytes are parsed as HTTP again, and decided.
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
		resp, _ = httpReadResp(t, br, "GET")
		if resp.StatusCode != 403 {
			t.Fatalf("after a refused upgrade: got %d, want 403", resp.StatusCode)
		}
	})
	reqs := u.requests()
	if len(reqs) != 2 || reqs[0].header.Get("Upgrade") != "websocket" {
		t.Fatalf("upstream saw %v", reqs)
	}
}

func TestHTTPUpstreamFailures(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	g := startHTTPGateway(t, httpBaseConfig(dead), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	resp, _ := httpReadResp(t, br, "GET")
	if resp.StatusCode != 502 || resp.Header.Get("X-Icpgate-Reason") != "upstream_unavailable" {
		t.Fatalf("got %d %q, want 502 upstream_unavailable", resp.StatusCode, resp.Header.Get("X-Icpgate-Reason"))
	}
	httpExpectClosed(t, br)
	if got := testutil.ToFloat64(g.m.UpstreamErrors.WithLabelValues("http", "dial")); got != 1 {
		t.Fatalf("upstream_errors_total{dial}: got %v, want 1", got)
	}

	// An upstream that accepts and never answers: 504 after the idle timeout.
	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := httpBaseConfig(silent.Addr().String())
	cfg.Timeouts.Idle = 200 * time.Millisecond
	g2 := startHTTPGateway(t, cfg, httpTestDecider())
	c, br = httpDialRaw(t, g2.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	resp, _ = httpReadResp(t, br, "GET")
	if resp.StatusCode != 504 {
		t.Fatalf("silent upstream: got %d, want 504", resp.StatusCode)
	}
}

func TestHTTPUpstreamPerDecision(t *testing.T) {
	u1, u2 := startHTTPUpstream(t), startHTTPUpstream(t)
	d := httpTestDecider()
	d["other.cn"] = Decision{Pass: true, Reason: "filed", Upstream: u2.addr}
	g := startHTTPGateway(t, httpBaseConfig(u1.addr), d)
	c, br := httpDialRaw(t, g.addr)
	for _, h := range []string{"filed.cn", "other.cn", "filed.cn"} {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+h+"\r\n\r\n")
		if resp, _ := httpReadResp(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("%s: got %d", h, resp.StatusCode)
		}
	}
	if n1, n2 := len(u1.requests()), len(u2.requests()); n1 != 2 || n2 != 1 {
		t.Fatalf("got %d and %d requests, want 2 and 1", n1, n2)
	}
}

func TestHTTPHeaderLimits(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	tests := []struct {
		name string
		raw  string
	}{
		{"head over 64 KiB", "GET / HTTP/1.1\r\nHost: filed.cn\r\nCookie: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"},
		{"101 fields", "GET / HTTP/1.1\r\nHost: filed.cn\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n"},
		{"1 MiB without end", "GET / HTTP/1.1\r\nHost: filed.cn\r\nX: " + strings.Repeat("a", 1<<20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := httpDialRaw(t, g.addr)
			go io.WriteString(c, tc.raw)
			resp, _ := httpReadResp(t, br, "GET")
			if resp.StatusCode != 431 {
				t.Fatalf("got %d, want 431", resp.StatusCode)
			}
		})
	}
	// A 40 KiB head is under the cap and passes.
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\nCookie: "+strings.Repeat("a", 40<<10)+"\r\n\r\n")
	if resp, _ := httpReadResp(t, br, "GET"); resp.StatusCode != 200 {
		t.Fatalf("40 KiB head: got %d, want 200", resp.StatusCode)
	}
	if len(u.requests()) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(u.requests()))
	}
}

func TestHTTPSlowHead(t *testing.T) {
	u := startHTTPUpstream(t)
	cfg := httpBaseConfig(u.addr)
	cfg.Timeouts.Hello = 300 * time.Millisecond
	g := startHTTPGateway(t, cfg, httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: fil")
	resp, _ := httpReadResp(t, br, "GET")
	if resp.StatusCode != 408 {
		t.Fatalf("got %d, want 408", resp.StatusCode)
	}
	httpExpectClosed(t, br)
	// A silent client is closed without a response.
	c2, br2 := httpDialRaw(t, g.addr)
	_ = c2
	httpExpectClosed(t, br2)
}

func TestHTTPSlowBody(t *testing.T) {
	u := startHTTPUpstream(t)
	cfg := httpBaseConfig(u.addr)
	cfg.Timeouts.Idle = 300 * time.Millisecond
	g := startHTTPGateway(t, cfg, httpTestDecider())
	for _, tc := range []struct{ name, head, part string }{
		{"content-length", "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: 10\r\n\r\n", "ab"},
		{"chunked", "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\nab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := httpDialRaw(t, g.addr)
			io.WriteString(c, tc.head+tc.part)
			resp, _ := httpReadResp(t, br, "POST")
			if resp.StatusCode != 408 {
				t.Fatalf("got %d, want 408", resp.StatusCode)
			}
			httpExpectClosed(t, br)
		})
	}
}

func TestHTTP10WithoutHost(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	resp, body := httpReadResp(t, br, "GET")
	if resp.StatusCode != 200 || body != "hello from upstream" || !resp.Close {
		t.Fatalf("got %d %q close=%v, want 200 and close", resp.StatusCode, body, resp.Close)
	}
	if got := testutil.ToFloat64(g.m.Decisions.WithLabelValues("http", "pass", "ip_access")); got != 1 {
		t.Fatalf("ip_access decisions: got %v, want 1", got)
	}
}

func TestHTTPRedirectMode(t *testing.T) {
	u := startHTTPUpstream(t)
	cfg := httpBaseConfig(u.addr)
	cfg.Policy.RedirectURL = "https://notice.example.com/icp"
	g := startHTTPGateway(t, cfg, httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: <script>.unfiled.cn\r\n\r\n")
	resp, _ := httpReadResp(t, br, "GET")
	if resp.StatusCode != 400 {
		t.Fatalf("invalid Host: got %d, want 400", resp.StatusCode)
	}
	c, br = httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: www.unfiled.cn\r\n\r\n")
	resp, _ = httpReadResp(t, br, "GET")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 302 || !strings.HasPrefix(loc, "https://notice.example.com/icp?d=www.unfiled.cn&r=unfiled&id=") {
		t.Fatalf("got %d %q", resp.StatusCode, loc)
	}
}

func TestHTTPExpectContinue(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("got %v %v, want 100 Continue", resp, err)
	}
	io.WriteString(c, "body")
	resp, body := httpReadResp(t, br, "POST")
	if resp.StatusCode != 200 || body != "body" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if u.requests()[0].header.Get("Expect") != "" {
		t.Fatalf("Expect forwarded")
	}
}

func TestHTTPDrain(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	httpReadResp(t, br, "GET")
	g.cancel() // drain: the idle keep-alive connection is closed at once
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	httpExpectClosed(t, br)
}

// TestHTTPDrainInFlight: a request in progress when draining starts
// completes, marked Connection: close, then the connection closes.
func TestHTTPDrainInFlight(t *testing.T) {
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	g.cancel()
	resp, body := httpReadResp(t, br, "GET")
	if resp.StatusCode != 200 || body != "slow" || !resp.Close {
		t.Fatalf("got %d %q close=%v, want 200 \"slow\" and close", resp.StatusCode, body, resp.Close)
	}
	httpExpectClosed(t, br)
}

func TestHTTPCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	u := startHTTPUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"filed", []string{"-H", "Host: filed.cn"}, []string{"HTTP/1.1 200", "X-Echo-Len: 0"}},
		{"unfiled", []string{"-H", "Host: unfiled.cn"}, []string{"HTTP/1.1 403", "X-Icpgate-Reason: unfiled", "网站未备案"}},
		{"unfiled json", []string{"-H", "Host: unfiled.cn", "-H", "Accept: application/json"}, []string{`"request_id":"`, `"domain":"unfiled.cn"`}},
		{"post filed", []string{"-H", "Host: filed.cn", "--data-binary", "curl-body", "-H", "Expect: 100-continue"}, []string{"HTTP/1.1 200", "curl-body"}},
		{"proxy absolute form", []string{"--proxy", "http://" + g.addr, "http://cancelled.cn/"}, []string{"HTTP/1.1 403", "X-Icpgate-Reason: cancelled"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-s", "-i", "--max-time", "5"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--proxy") {
				args = append(args, "http://"+g.addr+"/echo")
			}
			out, err := exec.Command(curl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("got %q, want it to contain %q", out, w)
				}
			}
		})
	}
}

// httpRawUpstream is a minimal keep-alive HTTP responder for benchmarks: it
// answers every request head with the same small response.
func httpRawUpstream(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						copy(buf, buf[i+4:n])
						n -= i + 4
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// httpBenchKeepAlive sends small keep-alive requests to addr and reads each
// response completely (a response ends with "ok"). With parallel set, each
// of b.RunParallel's goroutines (GOMAXPROCS*8 of them) has its own
// connection: requests/s under concurrency, as a load generator sees it.
func httpBenchKeepAlive(b *testing.B, addr string, parallel bool) {
	req := []byte("GET /index.html HTTP/1.1\r\nHost: www.filed.cn\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	one := func(c net.Conn, buf []byte) {
		if _, err := c.Write(req); err != nil {
			b.Error(err)
			return
		}
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Error(err)
				return
			}
			n += m
			if n >= 2 && string(buf[n-2:n]) == "ok" {
				return
			}
		}
	}
	b.ReportAllocs()
	if parallel {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			buf := make([]byte, 4096)
			for pb.Next() {
				one(c, buf)
			}
		})
		return
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	b.ResetTimer()
	for b.Loop() {
		one(c, buf)
	}
}

// httpFixedDecider passes everything without allocating, as the
// registry's cached decisions do; the map decider's parsing would
// otherwise dominate the allocation count.
type httpFixedDecider struct{}

func (httpFixedDecider) Decide(host string) Decision {
	return Decision{Pass: true, Reason: "filed", Domain: "filed.cn"}
}

// BenchmarkHTTPKeepAlive: one small keep-alive request end to end on
// loopback, client -> handler -> upstream.
func BenchmarkHTTPKeepAlive(b *testing.B) {
	up := httpRawUpstream(b)
	g := startHTTPGateway(b, httpBaseConfig(up), httpFixedDecider{})
	httpBenchKeepAlive(b, g.addr, false)
}

// BenchmarkHTTPKeepAliveParallel: 16 keep-alive connections at once.
func BenchmarkHTTPKeepAliveParallel(b *testing.B) {
	up := httpRawUpstream(b)
	g := startHTTPGateway(b, httpBaseConfig(up), httpFixedDecider{})
	httpBenchKeepAlive(b, g.addr, true)
}

// BenchmarkHTTPKeepAliveReverseProxy does the same hop with net/http's
// server and httputil.ReverseProxy (deciding on r.Host in the Director),
// the alternative architecture.
func BenchmarkHTTPKeepAliveReverseProxy(b *testing.B) {
	up := httpRawUpstream(b)
	d := httpFixedDecider{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			if !d.Decide(pr.In.Host).Pass {
				panic("blocked")
			}
			pr.SetURL(&url.URL{Scheme: "http", Host: up})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	defer srv.Close()
	httpBenchKeepAlive(b, ln.Addr().String(), false)
}

// BenchmarkHTTPKeepAliveDirect is the baseline: client -> upstream.
func BenchmarkHTTPKeepAliveDirect(b *testing.B) {
	httpBenchKeepAlive(b, httpRawUpstream(b), false)
}

// BenchmarkHTTPKeepAliveNginx does the same hop through nginx (one worker,
// upstream keepalive, a map of the registry deciding on $host): the
// baseline the gateway is compared with. Skipped without nginx.
func BenchmarkHTTPKeepAliveNginx(b *testing.B) { httpBenchNginx(b, false) }

// BenchmarkHTTPKeepAliveNginxParallel is BenchmarkHTTPKeepAliveParallel
// through nginx.
func BenchmarkHTTPKeepAliveNginxParallel(b *testing.B) { httpBenchNginx(b, true) }

func httpBenchNginx(b *testing.B, parallel bool) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		b.Skip("nginx not installed")
	}
	up := httpRawUpstream(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := b.TempDir()
	conf := fmt.Sprintf(`user root root;
worker_processes 1;
daemon off;
error_log stderr error;
pid %[1]s/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000000;
  client_body_temp_path %[1]s;
  proxy_temp_path %[1]s;
  fastcgi_temp_path %[1]s;
  uwsgi_temp_path %[1]s;
  scgi_temp_path %[1]s;
  upstream up { server %[2]s; keepalive 16; }
  map $host $icp_block { hostnames; default 1; .filed.cn 0; }
  server {
    listen %[3]s;
    location / {
      if ($icp_block) { return 403; }
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`, dir, up, addr)
	if err := os.WriteFile(dir+"/nginx.conf", []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", dir+"/nginx.conf")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			b.Fatal("nginx did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	httpBenchKeepAlive(b, addr, parallel)
}

// BenchmarkHTTPBlocked: a new connection with one request for an unfiled
// host, answered with the block page, read to EOF.
func BenchmarkHTTPBlocked(b *testing.B) {
	up := httpRawUpstream(b)
	g := startHTTPGateway(b, httpBaseConfig(up), httpTestDecider())
	req := []byte("GET / HTTP/1.1\r\nHost: www.unfiled.cn\r\n\r\n")
	buf := make([]byte, 16<<10)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(req)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
	}
}

// httpScriptedUpstream answers every connection's first request head with
// the given raw bytes, then closes.
func httpScriptedUpstream(t testing.TB, raw string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, raw)
				time.Sleep(50 * time.Millisecond)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHTTPUpstreamResponses(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		status int
		body   string
		check  func(t *testing.T, resp *http.Response)
	}{
		{name: "garbage", raw: "SSH-2.0-OpenSSH\r\n\r\n", status: 502},
		{name: "differing content-length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", status: 502},
		{name: "101 without upgrade", raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", status: 502},
		{name: "bare LF", raw: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", status: 502},
		{name: "te overrides content-length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
			status: 200, body: "ok", check: func(t *testing.T, resp *http.Response) {
				if resp.Header.Get("Content-Length") != "" {
					t.Errorf("Content-Length forwarded with Transfer-Encoding")
				}
			}},
		{name: "connection names content-length", raw: "HTTP/1.1 200 OK\r\nConnection: Content-Length, X-Secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n\r\nok",
			status: 200, body: "ok", check: func(t *testing.T, resp *http.Response) {
				// The client frames the body by the field the gateway
				// framed it by; the other option still drops its field.
				if got := resp.Header.Get("Content-Length"); got != "2" || resp.Header.Get("X-Secret") != "" {
					t.Errorf("got Content-Length %q, X-Secret %q; want \"2\" and none", got, resp.Header.Get("X-Secret"))
				}
			}},
		{name: "interim 103 then 200", raw: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := startHTTPGateway(t, httpBaseConfig(httpScriptedUpstream(t, tc.raw)), httpTestDecider())
			c, br := httpDialRaw(t, g.addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\nAccept: application/json\r\n\r\n")
			resp, body := httpReadResp(t, br, "GET")
			for resp.StatusCode == 103 {
				resp, body = httpReadResp(t, br, "GET")
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.body != "" && body != tc.body {
				t.Fatalf("got body %q, want %q", body, tc.body)
			}
			if tc.status == 502 && !strings.Contains(body, `"reason":"upstream_unavailable"`) {
				t.Fatalf("got %q, want a JSON error page", body)
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
		})
	}
}

func TestHTTPForwardedProto(t *testing.T) {
	u := startHTTPUpstream(t)
	cfg := httpBaseConfig(u.addr)
	cfg.Listeners[0].ForwardedProto = "https"
	g := startHTTPGateway(t, cfg, httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\nX-Forwarded-Proto: http\r\n\r\n")
	httpReadResp(t, br, "GET")
	if got := u.requests()[0].header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "https" {
		t.Fatalf("got %q, want [https]", got)
	}
}

// TestHTTPNoGoroutineLeak: after passes, blocks, a tunnel and an idle
// keep-alive connection, stopping the gateway leaves no goroutine behind.
func TestHTTPNoGoroutineLeak(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("traffic", func(t *testing.T) {
		u := startHTTPUpstream(t)
		g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
		idle, br := httpDialRaw(t, g.addr)
		io.WriteString(idle, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
		httpReadResp(t, br, "GET")
		c, br2 := httpDialRaw(t, g.addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
		httpReadResp(t, br2, "GET")
		ws, br3 := httpDialRaw(t, g.addr)
		io.WriteString(ws, "GET /ws HTTP/1.1\r\nHost: filed.cn\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
		if resp, err := http.ReadResponse(br3, nil); err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		ws.(*net.TCPConn).CloseWrite()
		io.ReadAll(br3)
	})
	goleak.VerifyNone(t, ignore)
}

// TestHTTPUpstreamClosesIdle: an upstream that closes every connection
// after one response without saying so. GETs are retried on a new
// connection; a POST is sent only after the liveness peek, so it is never
// sent twice.
func TestHTTPUpstreamClosesIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns, reqs int
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.ReadAll(req.Body)
				mu.Lock()
				reqs++
				mu.Unlock()
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	g := startHTTPGateway(t, httpBaseConfig(ln.Addr().String()), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	seq := []string{
		"GET /1 HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
		"GET /2 HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
		"POST /3 HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: 2\r\n\r\nhi",
		"HEAD /4 HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
		"POST /5 HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: 0\r\n\r\n",
		"GET /6 HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
	}
	for i, r := range seq {
		time.Sleep(20 * time.Millisecond) // let the upstream's FIN arrive
		io.WriteString(c, r)
		method, _, _ := strings.Cut(r, " ")
		resp, _ := httpReadResp(t, br, method)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: got %d, want 200", i+1, resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if reqs != len(seq) {
		t.Fatalf("upstream handled %d requests, want %d (no duplicates)", reqs, len(seq))
	}
}

// TestHTTPHelperGateway is not a test: BenchmarkHTTPKeepAliveProcess runs
// the test binary with it selected to get a gateway in its own process,
// as nginx is in BenchmarkHTTPKeepAliveNginxParallel. It serves until its
// stdin closes.
func TestHTTPHelperGateway(t *testing.T) {
	up := os.Getenv("ICPGATE_HTTP_HELPER_UPSTREAM")
	if up == "" {
		t.Skip("helper process for BenchmarkHTTPKeepAliveProcess")
	}
	g := startHTTPGateway(t, httpBaseConfig(up), httpFixedDecider{})
	fmt.Println("ADDR", g.addr)
	io.Copy(io.Discard, os.Stdin)
}

// BenchmarkHTTPKeepAliveProcess is BenchmarkHTTPKeepAliveParallel with the
// gateway in a separate process, so its CPU is not taken from the load
// generator's GOMAXPROCS: the fair comparison with nginx.
func BenchmarkHTTPKeepAliveProcess(b *testing.B) {
	up := httpRawUpstream(b)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHTTPHelperGateway$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ICPGATE_HTTP_HELPER_UPSTREAM="+up)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		b.Fatal("helper gateway did not start")
	}
	go io.Copy(io.Discard, stdout)
	httpBenchKeepAlive(b, addr, true)
}
