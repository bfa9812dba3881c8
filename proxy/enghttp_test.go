//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// engineHTTPCounts sums the engines' counts of blocked first requests they
// answered themselves and of those a goroutine finished.
func engineHTTPCounts(g *gateway) (blocked, finished int64) {
	g.srv.mu.Lock()
	defer g.srv.mu.Unlock()
	for _, e := range g.srv.engines {
		blocked += e.httpBlocked.Load()
		finished += e.httpFinished.Load()
	}
	return blocked, finished
}

func engineHTTPGateway(t *testing.T, blockPage string) (*gateway, *httpCountingUpstream) {
	t.Helper()
	u := startHTTPUpstream(t)
	cfg := httpBaseConfig(u.addr)
	cfg.Policy.BlockPage = blockPage
	g := startGateway(t, cfg, httpTestDecider())
	skipWithoutEngines(t, g.srv)
	if got := g.srv.ServedBy("http"); got != "engine" {
		t.Fatalf("ServedBy: got %q, want engine", got)
	}
	return g, u
}

// TestEngineHTTP: the engine answers a blocked first request itself, with
// the handler's response, and hands everything else to a handler with the
// bytes it read; the upstream sees only passing requests.
func TestEngineHTTP(t *testing.T) {
	g, u := engineHTTPGateway(t, "")
	addr := g.addr("http")
	blockDecisions := func() float64 {
		return testutil.ToFloat64(g.m.Decisions.WithLabelValues("http", "block", "unfiled"))
	}
	passDecisions := func() float64 {
		return testutil.ToFloat64(g.m.Decisions.WithLabelValues("http", "pass", "filed"))
	}

	t.Run("blocked GET, HEAD and JSON answered by the engine", func(t *testing.T) {
		for _, tc := range []struct{ method, accept string }{{"GET", ""}, {"HEAD", ""}, {"GET", "application/json"}} {
			before, _ := engineHTTPCounts(g)
			decided := blockDecisions()
			c, br := httpDialRaw(t, addr)
			req := tc.method + " / HTTP/1.1\r\nHost: www.unfiled.cn\r\n"
			if tc.accept != "" {
				req += "Accept: " + tc.accept + "\r\n"
			}
			io.WriteString(c, req+"\r\n")
			resp, body := httpReadResp(t, br, tc.method)
			if resp.StatusCode != 403 || resp.Header.Get("X-Icpgate-Reason") != "unfiled" || !resp.Close {
				t.Fatalf("%s: got %d %v, want 403 unfiled, close", tc.method, resp.StatusCode, resp.Header)
			}
			if len(resp.Header.Get("X-Request-Id")) != blockIDLen {
				t.Fatalf("%s: request ID %q", tc.method, resp.Header.Get("X-Request-Id"))
			}
			switch {
			case tc.method == "HEAD":
				if body != "" || resp.ContentLength <= 0 {
					t.Fatalf("HEAD: got body %q, length %d", body, resp.ContentLength)
				}
			case tc.accept != "":
				if !strings.Contains(body, `"reason":"unfiled"`) {
					t.Fatalf("JSON: got %q", body)
				}
			default:
				if !strings.Contains(body, reasonTexts["unfiled"].messageEn) {
					t.Fatalf("GET: body lacks the explanation: %q", body)
				}
			}
			// A FIN after the response, not a reset.
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("%s: after the response got %v, want EOF", tc.method, err)
			}
			if after, _ := engineHTTPCounts(g); after != before+1 {
				t.Fatalf("%s: engine answered %d blocked requests, want 1", tc.method, after-before)
			}
			if got := blockDecisions(); got != decided+1 {
				t.Fatalf("%s: %v block decisions counted, want 1", tc.method, got-decided)
			}
		}
	})

	// Each of these goes to a handler, which answers as it always does.
	for _, tc := range []struct {
		name   string
		parts  []string // written with a pause between them
		status int
		silent bool // connect and say nothing past the kernel's deferral first
	}{
		{name: "passing GET", parts: []string{"GET / HTTP/1.1\r\nHost: filed.cn\r\nConnection: close\r\n\r\n"}, status: 200},
		{name: "blocked POST with a body", parts: []string{"POST / HTTP/1.1\r\nHost: unfiled.cn\r\nContent-Length: 5\r\n\r\nhello"}, status: 403},
		{name: "blocked head split across writes", parts: []string{"GET / HTTP/1.1\r\nHo", "st: unfiled.cn\r\n\r\n"}, status: 403},
		{name: "passing head split across writes", parts: []string{"GET / HTTP/1.1\r\nHost: fil", "ed.cn\r\nConnection: close\r\n\r\n"}, status: 200},
		{name: "malformed head", parts: []string{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"}, status: 400},
		{name: "silent client, then a passing GET", parts: []string{"GET / HTTP/1.1\r\nHost: filed.cn\r\nConnection: close\r\n\r\n"}, status: 200, silent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := engineHTTPCounts(g)
			c, br := httpDialRaw(t, addr)
			if tc.silent {
				time.Sleep(time.Duration(deferAcceptSeconds)*time.Second + 500*time.Millisecond)
			}
			for i, p := range tc.parts {
				if i > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				io.WriteString(c, p)
			}
			method, _, _ := strings.Cut(tc.parts[0], " ")
			resp, _ := httpReadResp(t, br, method)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.status)
			}
			httpExpectClosed(t, br)
			if after, _ := engineHTTPCounts(g); after != before {
				t.Fatalf("the engine answered it; want a handler to")
			}
		})
	}

	t.Run("keep-alive after the hand-over, decided once per request", func(t *testing.T) {
		passed, blocked := passDecisions(), blockDecisions()
		c, br := httpDialRaw(t, addr)
		for range 3 {
			io.WriteString(c, "GET /ka HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
			if resp, _ := httpReadResp(t, br, "GET"); resp.StatusCode != 200 {
				t.Fatalf("got %d, want 200", resp.StatusCode)
			}
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
		if resp, _ := httpReadResp(t, br, "GET"); resp.StatusCode != 403 {
			t.Fatalf("got %d, want 403", resp.StatusCode)
		}
		httpExpectClosed(t, br)
		if p, b := passDecisions()-passed, blockDecisions()-blocked; p != 3 || b != 1 {
			t.Fatalf("counted %v pass and %v block decisions, want 3 and 1", p, b)
		}
	})

	for _, r := range u.requests() {
		if r.host != "filed.cn" {
			t.Fatalf("the upstream saw a request for %q", r.host)
		}
	}
	waitFor(t, "every connection to end", func() bool { return g.srv.openConns() == 0 })
	if n := testutil.ToFloat64(g.m.ActiveConnections.WithLabelValues("http")); n != 0 {
		t.Fatalf("%v connections still counted active", n)
	}
}

// TestEngineHTTPReloadProxyHeaders: a reload that makes an engine-accepted
// http listener take PROXY headers keeps its socket (same address), so the
// engines go on accepting it and hand every connection to the handler,
// which reads the header; the engine answers nothing itself any more.
func TestEngineHTTPReloadProxyHeaders(t *testing.T) {
	g, u := engineHTTPGateway(t, "")
	cfg := httpBaseConfig(u.addr)
	cfg.Listeners[0].Address = g.addr("http")
	cfg.Listeners[0].ProxyProtocol = ProxyProtocol{AcceptFrom: loopbackNet}
	if err := g.srv.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := engineHTTPCounts(g)
	for _, tc := range []struct {
		name, send string
		status     int
	}{
		{"blocked behind a header", "PROXY TCP4 198.51.100.7 192.0.2.1 40000 80\r\nGET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n", 403},
		{"passing behind a header", "PROXY TCP4 198.51.100.7 192.0.2.1 40001 80\r\nGET / HTTP/1.1\r\nHost: filed.cn\r\nConnection: close\r\n\r\n", 200},
	} {
		c, br := httpDialRaw(t, g.addr("http"))
		io.WriteString(c, tc.send)
		if resp, _ := httpReadResp(t, br, "GET"); resp.StatusCode != tc.status {
			t.Fatalf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	// A trusted peer's connection without a header is refused unanswered.
	c := dialRaw(t, g.addr("http"))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
	if got := readClosed(t, c); got != "" {
		t.Fatalf("no PROXY header from a trusted peer: got %q, want the connection closed", got)
	}
	if after, _ := engineHTTPCounts(g); after != before {
		t.Fatalf("the engine answered %d requests itself after the reload", after-before)
	}
	if got := u.requests(); len(got) != 1 || got[0].header.Get("X-Forwarded-For") != "198.51.100.7" {
		t.Fatalf("the upstream saw %+v, want one request from 198.51.100.7", got)
	}
}

// TestEngineHTTPLargePage: a replacement block page larger than the
// socket's buffer is finished by a goroutine; the client gets all of it.
func TestEngineHTTPLargePage(t *testing.T) {
	// Larger than the most a socket's send buffer grows to (tcp_wmem's
	// 4 MiB by default; loopback sockets start near 2.5 MiB).
	filler := strings.Repeat("<p>访问受限 access restricted</p>\n", 256<<10) // about 10 MB
	path := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(path, []byte("<html><body>{{.Reason}}\n"+filler+"</body></html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, _ := engineHTTPGateway(t, path)
	// A small receive buffer, and no reading until the gateway's write
	// has found the socket full.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	c, err := d.Dial("tcp", g.addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
	waitFor(t, "a goroutine to finish the response", func() bool { _, f := engineHTTPCounts(g); return f == 1 })
	resp, body := httpReadResp(t, bufio.NewReader(c), "GET")
	if resp.StatusCode != 403 || int64(len(body)) != resp.ContentLength || !strings.HasSuffix(body, filler+"</body></html>\n") {
		t.Fatalf("got %d, %d of %d bytes", resp.StatusCode, len(body), resp.ContentLength)
	}
	waitFor(t, "the connection to end", func() bool { return g.srv.openConns() == 0 })
}

// FuzzBlockFast checks the engine's fast block path against the handler:
// whenever blockFast answers a first request, the handler given the same
// bytes answers with the same response (request ID and time aside), so the
// engine never blocks what the handler would refuse, pass or answer
// otherwise. Both run on socket pairs, with the handler's connection a
// sockConn as the engine hands over.
func FuzzBlockFast(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n",
		"HEAD /x HTTP/1.1\r\nHost: www.unfiled.cn:8080\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: black.cn\r\nAccept: application/json\r\n\r\n",
		"GET http://cancelled.cn/a?b HTTP/1.1\r\nHost: cancelled.cn\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: unfiled.cn\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: unfiled.cn\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: unfiled.cn\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\nGET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: unfiled.cn\r\nHost: filed.cn\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	cfg := httpBaseConfig("127.0.0.1:1") // a pass would fail to dial: a mismatch either way
	cfg.Timeouts.Hello = 500 * time.Millisecond
	h := newHTTPHandler(cfg, cfg.Listeners[0], httpTestDecider(), NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	peer := netip.MustParseAddrPort("192.0.2.7:40000")
	local := netip.MustParseAddrPort("192.0.2.1:80")
	pair := func(t *testing.T) (int, *os.File) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		far := os.NewFile(uintptr(fds[1]), "far")
		far.SetDeadline(time.Now().Add(5 * time.Second))
		return fds[0], far
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || len(b) >= engineScratch {
			return
		}
		// The engine's path.
		fd, far := pair(t)
		var req msgHead
		rest, ok := h.blockFast(fd, b, peer, local, &req)
		rawClose(fd)
		if !ok {
			far.Close()
			return
		}
		if len(rest) != 0 {
			t.Fatalf("%d bytes left over on a fresh socket", len(rest))
		}
		fast, err := io.ReadAll(far)
		far.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The handler's.
		fd, far = pair(t)
		defer far.Close()
		sc, err := newSockConn(fd, local, peer)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.serveConn(context.Background(), sc, peer)
		}()
		if _, err := far.Write(b); err != nil {
			t.Fatal(err)
		}
		slow, err := io.ReadAll(far)
		if err != nil {
			t.Fatalf("handler: %v after %q", err, slow)
		}
		<-done
		if e, g := normalizeBlock(t, fast), normalizeBlock(t, slow); e != g {
			t.Fatalf("engine and handler differ for %q:\nengine:  %q\nhandler: %q", b, e, g)
		}
	})
}

// blockTime matches the times a block response shows: RFC 3339 in the
// JSON body (UTC or with an offset) and the page's local time with its
// offset ("2026-12-08 14:18:16 +08:00", the + escaped in HTML). The two
// paths render a second apart now and then.
var blockTime = regexp.MustCompile(`\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(Z| ?(&#43;|\+|-)\d\d:\d\d)`)

// normalizeBlock masks a block response's request ID and time.
func normalizeBlock(t *testing.T, resp []byte) string {
	head, _, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no complete head in %q", resp)
	}
	s := string(resp)
	for _, line := range strings.Split(string(head), "\r\n") {
		if id, ok := strings.CutPrefix(line, "X-Request-Id: "); ok {
			s = strings.ReplaceAll(s, id, "<id>")
		}
	}
	return blockTime.ReplaceAllString(s, "<time>")
}

// BenchmarkBlockFast is the engine's answer to a blocked first request:
// parse, decide, count, render and write (to a socket pair whose far end
// the loop drains).
func BenchmarkBlockFast(b *testing.B) {
	cfg := httpBaseConfig("127.0.0.1:1")
	h := newHTTPHandler(cfg, cfg.Listeners[0], httpTestDecider(), NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	req := []byte("GET / HTTP/1.1\r\nHost: www.unfiled.cn\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	peer := netip.MustParseAddrPort("192.0.2.7:40000")
	local := netip.MustParseAddrPort("192.0.2.1:80")
	var head msgHead
	buf := make([]byte, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		if rest, ok := h.blockFast(fds[0], req, peer, local, &head); !ok || len(rest) != 0 {
			b.Fatal("not answered")
		}
		if _, err := unix.Read(fds[1], buf); err != nil {
			b.Fatal(err)
		}
	}
}
