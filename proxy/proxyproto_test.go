package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// lockedBuffer is an io.Writer safe for the gateway's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the JSON log lines with the given msg.
func (l *lockedBuffer) lines(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// startEdgeGateway is startGateway with its JSON log in a buffer.
func startEdgeGateway(t *testing.T, cfg Config, d Decider) (*gateway, *lockedBuffer) {
	t.Helper()
	buf := &lockedBuffer{}
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := NewServer(cfg, d, m, slog.New(slog.NewJSONHandler(buf, nil)))
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gateway{srv: srv, m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { g.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { g.stop(t) })
	return g, buf
}

// proxyHeader formats a PROXY header with go-proxyproto (what HAProxy or a
// cloud balancer would send).
func proxyHeader(t *testing.T, version byte, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version,
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	loopbackNet = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	otherNet    = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
)

// TestProxyProtocolAccept: a trusted balancer's header names the client
// for X-Forwarded-For, the block log and the observer's destination, on
// http, tls and auto listeners, v1 and v2.
func TestProxyProtocolAccept(t *testing.T) {
	httpUp := newRecUpstream(t, func(c *net.TCPConn, r io.Reader) {
		br := bufio.NewReader(r)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body := "xff=" + req.Header.Get("X-Forwarded-For")
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
	tlsUp := newTLSUpstream(t, "origin", nil)
	cfg := Config{Listeners: []ListenerConfig{
		{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: httpUp.addr(), ProxyProtocol: ProxyProtocol{AcceptFrom: loopbackNet}},
		{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: tlsUp.addr(), ProxyProtocol: ProxyProtocol{AcceptFrom: loopbackNet}},
		{Name: "auto", Protocol: "auto", Address: "127.0.0.1:0", Upstream: httpUp.addr(), ProxyProtocol: ProxyProtocol{AcceptFrom: loopbackNet}},
	}}
	g, logs := startEdgeGateway(t, cfg, observeDecider{})
	obs := &recordingObserver{}
	g.srv.SetBlockObserver(obs)
	var seen []Destination

	for _, v := range []byte{1, 2} {
		for _, ln := range []string{"http", "auto"} {
			t.Run(fmt.Sprintf("%s v%d", ln, v), func(t *testing.T) {
				client := fmt.Sprintf("203.0.113.%d:4242", 10*v)
				c := dialRaw(t, g.addr(ln))
				c.Write(proxyHeader(t, v, client, "198.51.100.1:80"))
				br := bufio.NewReader(c)
				body, err := httpGet(c, br, "filed.cn")
				if want := "xff=" + strings.Split(client, ":")[0]; err != nil || body != want {
					t.Errorf("filed: got %q, %v; want %q", body, err, want)
				}
				resp, err := func() (*http.Response, error) {
					fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
					return http.ReadResponse(br, nil)
				}()
				if err != nil || resp.StatusCode != 403 {
					t.Fatalf("unfiled: got %v, %v; want 403", resp, err)
				}
				resp.Body.Close()
				found := false
				for _, l := range logs.lines("blocked") {
					if l["client"] == client && l["listener"] == ln {
						found = true
					}
				}
				if !found {
					t.Errorf("no block log line for client %s on %s: %v", client, ln, logs.lines("blocked"))
				}
			})
		}
	}
	t.Run("tls v2", func(t *testing.T) {
		servedByEngines(t, g) // PROXY headers on a tls listener are the engine's
		raw := dialRaw(t, g.addr("tls"))
		raw.Write(proxyHeader(t, 2, "[2001:db8::7]:5555", "[2001:db8::1]:443"))
		_, pool := testCert(t)
		c := tls.Client(raw, &tls.Config{ServerName: "unfiled.cn", RootCAs: pool})
		if err := c.Handshake(); err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("unfiled: got %v, want access denied", err)
		}
		waitFor(t, "the tls block line", func() bool {
			for _, l := range logs.lines("blocked") {
				if l["client"] == "[2001:db8::7]:5555" && l["listener"] == "tls" {
					return true
				}
			}
			return false
		})
	})
	// The destination is the upstream, not the one the PROXY header
	// carried: that is where the client connected (a load balancer), the
	// upstream is where the customer's server is.
	wantDst := map[Destination]bool{{Upstream: httpUp.addr()}: true, {Upstream: tlsUp.addr()}: true}
	for _, c := range obs.take() {
		seen = append(seen, c.dst)
		if !wantDst[c.dst] {
			t.Errorf("observer got destination %+v, want the listener's upstream", c.dst)
		}
	}
	if len(seen) != 5 {
		t.Errorf("observer saw %d blocks, want 5", len(seen))
	}
	if n := testutil.ToFloat64(g.m.Edge.ProxyHeaders.WithLabelValues("http", "accepted")); n != 2 {
		t.Errorf("accepted on http: got %v, want 2", n)
	}
}

// TestProxyProtocolRefused: a header from outside accept_from, a trusted
// peer without a header or with a broken one: closed, nothing answered,
// nothing dialled.
func TestProxyProtocolRefused(t *testing.T) {
	up := newRecUpstream(t, serveHTTPHost)
	var lns []ListenerConfig
	for _, p := range []string{"http", "tls", "auto"} {
		lns = append(lns,
			ListenerConfig{Name: p + "-untrusted", Protocol: p, Address: "127.0.0.1:0", Upstream: up.addr(), ProxyProtocol: ProxyProtocol{AcceptFrom: otherNet}},
			ListenerConfig{Name: p + "-trusted", Protocol: p, Address: "127.0.0.1:0", Upstream: up.addr(), ProxyProtocol: ProxyProtocol{AcceptFrom: loopbackNet}})
	}
	cfg := Config{Listeners: lns}
	cfg.Timeouts.Hello = time.Second
	g := startGateway(t, cfg, filedDecider)
	req := "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n"
	tests := []struct {
		name, suffix, send, result string
	}{
		{"untrusted v1", "-untrusted", string(proxyHeader(t, 1, "203.0.113.1:1", "198.51.100.1:80")) + req, "untrusted"},
		{"untrusted v2", "-untrusted", string(proxyHeader(t, 2, "203.0.113.1:1", "198.51.100.1:80")) + req, "untrusted"},
		{"trusted without header", "-trusted", req, "missing"},
		{"trusted broken v1", "-trusted", "PROXY TCP4 1.2.3.4\r\n" + req, "invalid"},
		{"trusted v1 too long", "-trusted", "PROXY " + strings.Repeat("1", 200) + "\r\n", "invalid"},
		{"trusted silent", "-trusted", "", "timeout"},
	}
	for _, p := range []string{"http", "tls", "auto"} {
		for _, tt := range tests {
			if p != "http" && tt.name == "trusted without header" {
				// tls and auto would also refuse it; one listener is enough
				// to prove the header is required.
				continue
			}
			t.Run(p+" "+tt.name, func(t *testing.T) {
				ln := p + tt.suffix
				before := testutil.ToFloat64(g.m.Edge.ProxyHeaders.WithLabelValues(ln, tt.result))
				c := dialRaw(t, g.addr(ln))
				io.WriteString(c, tt.send)
				if got := readClosed(t, c); got != "" {
					t.Errorf("got %q, want the connection closed without an answer", got)
				}
				if n := testutil.ToFloat64(g.m.Edge.ProxyHeaders.WithLabelValues(ln, tt.result)); n != before+1 {
					t.Errorf("%s: got %v, want %v", tt.result, n, before+1)
				}
			})
		}
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("refused connections reached the upstream: %d", n)
	}
	// A LOCAL header (a balancer's health check) is served with the
	// balancer's own address.
	c := dialRaw(t, g.addr("http-trusted"))
	c.Write([]byte(string(proxyV2Sig) + "\x20\x00\x00\x00"))
	if body, err := httpGet(c, bufio.NewReader(c), "filed.cn"); err != nil || body != "upstream saw filed.cn" {
		t.Errorf("LOCAL: got %q, %v", body, err)
	}
}

// TestProxyProtocolSend: the upstream gets a PROXY header naming the
// client (here itself carried by a PROXY header), parsed on the backend by
// go-proxyproto's listener, on tls and http listeners.
func TestProxyProtocolSend(t *testing.T) {
	backend := func(t *testing.T, useTLS bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var l net.Listener = &proxyproto.Listener{Listener: ln, ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
		if useTLS {
			cert, _ := testCert(t)
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "backend saw "+r.RemoteAddr)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			tlsBack, httpBack := backend(t, true), backend(t, false)
			pp := ProxyProtocol{AcceptFrom: loopbackNet, Send: v}
			cfg := Config{Listeners: []ListenerConfig{
				{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: tlsBack, ProxyProtocol: pp},
				{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: httpBack, ProxyProtocol: pp},
			}}
			g := startGateway(t, cfg, filedDecider)
			servedByEngines(t, g) // the engine writes the header ahead of the hello

			raw := dialRaw(t, g.addr("tls"))
			raw.Write(proxyHeader(t, 2, "203.0.113.5:6000", "198.51.100.1:443"))
			_, pool := testCert(t)
			c := tls.Client(raw, &tls.Config{ServerName: "filed.cn", RootCAs: pool})
			if body, err := httpGet(c, bufio.NewReader(c), "filed.cn"); err != nil || body != "backend saw 203.0.113.5:6000" {
				t.Errorf("tls: got %q, %v", body, err)
			}
			hc := dialRaw(t, g.addr("http"))
			hc.Write(proxyHeader(t, 1, "[2001:db8::5]:7000", "[2001:db8::1]:80"))
			if body, err := httpGet(hc, bufio.NewReader(hc), "filed.cn"); err != nil || body != "backend saw [2001:db8::5]:7000" {
				t.Errorf("http: got %q, %v", body, err)
			}
		})
	}
}

// TestProxyProtocolLimits: per-IP limits count the clients the headers
// carry, not the balancer.
func TestProxyProtocolLimits(t *testing.T) {
	up := newRecUpstream(t, serveHTTPHost)
	cfg := Config{Listeners: []ListenerConfig{{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: up.addr(),
		ProxyProtocol: ProxyProtocol{AcceptFrom: loopbackNet}}}}
	cfg.Limits.MaxConnsPerIP = 1
	g := startGateway(t, cfg, filedDecider)
	open := func(client string) *net.TCPConn {
		c := dialRaw(t, g.addr("http"))
		c.Write(proxyHeader(t, 2, client, "198.51.100.1:80"))
		return c
	}
	a := netip.MustParseAddr("203.0.113.1")
	open("203.0.113.1:1000") // held open, waiting for its request
	waitFor(t, "the first client's slot", func() bool { return g.srv.lim.perIPCount(a) == 1 })
	second := open("203.0.113.1:1001")
	if got := readClosed(t, second); got != "" {
		t.Errorf("second connection of 203.0.113.1: got %q, want it refused", got)
	}
	if n := testutil.ToFloat64(g.m.LimitRejects.WithLabelValues(limitPerIP)); n != 1 {
		t.Errorf("per_ip rejects: got %v, want 1", n)
	}
	// Another client through the same balancer is not limited by the first.
	other := open("203.0.113.2:1000")
	if body, err := httpGet(other, bufio.NewReader(other), "filed.cn"); err != nil || body != "upstream saw filed.cn" {
		t.Errorf("other client: got %q, %v", body, err)
	}
	if n := g.srv.lim.perIPCount(netip.MustParseAddr("127.0.0.1")); n != 0 {
		t.Errorf("the balancer holds %d per-IP slots, want 0", n)
	}
}

func BenchmarkReadProxyHeader(b *testing.B) {
	hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 1}, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 80})
	raw, _ := hdr.Format()
	client, server := tcpPair(b)
	defer client.Close()
	defer server.Close()
	b.ReportAllocs()
	for b.Loop() {
		client.Write(raw)
		if _, err := readProxyHeader(server, time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzProxyHeaderFraming checks the framing that decides how many bytes of
// a connection are the PROXY header against go-proxyproto's own reader:
// whenever the library parses a header from b, the framing must need no
// more bytes and name exactly the length the library consumed.
func FuzzProxyHeaderFraming(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 203.0.113.1 198.51.100.1 4242 80\r\nGET / HTTP/1.1\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
		"PROXY UNKNOWN\r\n",
		string(proxyV2Sig) + "\x21\x11\x00\x0c\xcb\x00\x71\x01\xc6\x33\x64\x01\x10\x92\x00\x50rest",
		string(proxyV2Sig) + "\x20\x00\x00\x00",
		"GET / HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		peeked := b[:min(len(b), proxyV1MaxLen)]
		more := proxyHeaderMore(peeked)
		n, ferr := proxyHeaderLen(peeked)
		r := bytes.NewReader(b)
		br := bufio.NewReaderSize(r, 70000)
		if _, err := proxyproto.Read(br); err == nil {
			consumed := len(b) - r.Len() - br.Buffered()
			if more && len(peeked) < proxyV1MaxLen {
				t.Fatalf("library parsed a header from %q, framing still wants more", b)
			}
			if ferr != nil || n != consumed {
				t.Fatalf("library consumed %d bytes of %q, framing says %d, %v", consumed, b, n, ferr)
			}
		}
	})
}
