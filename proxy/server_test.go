package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// mapDecider is the tests' Decider: a map of filed registrable domains to
// their upstream ("" = the listener's default). Subdomains of a filed
// domain pass; a name that is empty or an IP literal is ip_access.
type mapDecider struct {
	filed    map[string]string
	ipAccess bool
}

func (d mapDecider) Decide(host string) Decision {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "" {
		return Decision{Pass: d.ipAccess, Reason: "ip_access"}
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return Decision{Pass: d.ipAccess, Reason: "ip_access", Host: h}
	}
	for dom, up := range d.filed {
		if h == dom || strings.HasSuffix(h, "."+dom) {
			return Decision{Pass: true, Reason: "filed", Host: h, Domain: dom, FilingNumber: "京ICP备10206937号-1", Upstream: up}
		}
	}
	return Decision{Pass: false, Reason: "unfiled", Host: h}
}

var (
	certOnce sync.Once
	certTLS  tls.Certificate
	certPool *x509.CertPool
)

// testCert returns a self-signed certificate for filed.cn, *.filed.cn,
// unfiled.cn and 127.0.0.1, made once per test binary, and a pool that
// trusts it.
func testCert(testing.TB) (tls.Certificate, *x509.CertPool) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "icpgate test upstream"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			DNSNames:              []string{"filed.cn", "*.filed.cn", "*.b.filed.cn", "unfiled.cn", "other.cn"},
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		certTLS = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		certPool = x509.NewCertPool()
		certPool.AddCert(leaf)
	})
	return certTLS, certPool
}

// tlsUpstream is a real crypto/tls server standing in for a hosted site. It
// counts TCP connections accepted, so a test can prove a blocked client
// never reached it.
type tlsUpstream struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

// newTLSUpstream serves handler on each TLS connection. A nil handler
// answers HTTP/1.1 keep-alive requests with "hello <name> from <tag>".
func newTLSUpstream(t testing.TB, tag string, handler func(c *tls.Conn, raw *net.TCPConn)) *tlsUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newTLSUpstreamOn(t, ln, tag, handler)
}

// newTLSUpstreamOn is newTLSUpstream on a listener of the caller's.
func newTLSUpstreamOn(t testing.TB, ln net.Listener, tag string, handler func(c *tls.Conn, raw *net.TCPConn)) *tlsUpstream {
	t.Helper()
	cert, _ := testCert(t)
	u := &tlsUpstream{ln: ln}
	if handler == nil {
		handler = func(c *tls.Conn, _ *net.TCPConn) { serveHTTPEcho(c, tag) }
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepted.Add(1)
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				handler(tls.Server(c, cfg), c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *tlsUpstream) addr() string { return u.ln.Addr().String() }

// serveHTTPEcho answers HTTP/1.1 requests on c until the client closes.
func serveHTTPEcho(c *tls.Conn, tag string) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		body := fmt.Sprintf("hello %s from %s", c.ConnectionState().ServerName, tag)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if req.Close {
			return
		}
	}
}

// gateway is a Server under test, serving until the test ends.
type gateway struct {
	srv    *Server
	m      *Metrics
	cancel context.CancelFunc
	done   chan error
}

func startGateway(t testing.TB, cfg Config, d Decider) *gateway {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := NewServer(cfg, d, m, nil)
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
	return g
}

// stop cancels Serve and waits for it (idempotent).
func (g *gateway) stop(t testing.TB) error {
	g.cancel()
	select {
	case err, ok := <-g.done:
		if ok {
			close(g.done)
		}
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func (g *gateway) addr(name string) string { return g.srv.Addr(name).String() }

// tlsListener is a one-listener config for a tls listener on :0.
func tlsListener(upstream string) Config {
	return Config{Listeners: []ListenerConfig{{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: upstream}}}
}

// httpGet sends one request on c and reads the response body.
func httpGet(c net.Conn, br *bufio.Reader, host string) (string, error) {
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// dialTLS connects through the gateway as a Go crypto/tls client.
func dialTLS(addr, serverName string) (*tls.Conn, error) {
	_, pool := testCert(nil)
	cfg := &tls.Config{ServerName: serverName, RootCAs: pool}
	if serverName == "" {
		cfg.InsecureSkipVerify = true // no SNI, nothing to verify against
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func TestNewServerValidation(t *testing.T) {
	ok := ListenerConfig{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1"}
	with := func(f func(c *Config)) Config {
		c := Config{Listeners: []ListenerConfig{ok}}
		f(&c)
		return c
	}
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"valid", with(func(c *Config) {}), ""},
		{"no listeners", Config{}, "listeners"},
		{"empty name", with(func(c *Config) { c.Listeners[0].Name = "" }), "listeners[0].name"},
		{"name not a label", with(func(c *Config) { c.Listeners[0].Name = "a b" }), "listeners[0].name"},
		{"duplicate name", with(func(c *Config) {
			c.Listeners = append(c.Listeners, ok)
			c.Listeners[1].Address = "127.0.0.1:0"
		}), "listeners[1].name"},
		{"duplicate address", with(func(c *Config) {
			c.Listeners[0].Address = "127.0.0.1:8443"
			c.Listeners = append(c.Listeners, c.Listeners[0])
			c.Listeners[1].Name = "tls2"
		}), "listeners[1].address"},
		{"wildcard overlaps", with(func(c *Config) {
			c.Listeners[0].Address = "127.0.0.1:8443"
			c.Listeners = append(c.Listeners, c.Listeners[0])
			c.Listeners[1].Name, c.Listeners[1].Address = "tls2", ":8443"
		}), "listeners[1].address"},
		{"same port, other IPs", with(func(c *Config) {
			c.Listeners[0].Address = "127.0.0.1:8443"
			c.Listeners = append(c.Listeners, c.Listeners[0])
			c.Listeners[1].Name, c.Listeners[1].Address = "tls2", "127.0.0.2:8443"
		}), ""},
		{"bad protocol", with(func(c *Config) { c.Listeners[0].Protocol = "tcp" }), "listeners[0].protocol"},
		{"auto", with(func(c *Config) { c.Listeners[0].Protocol = "auto" }), ""},
		{"address without port", with(func(c *Config) { c.Listeners[0].Address = "127.0.0.1" }), "listeners[0].address"},
		{"address port out of range", with(func(c *Config) { c.Listeners[0].Address = ":70000" }), "listeners[0].address"},
		{"address host name", with(func(c *Config) { c.Listeners[0].Address = "example.com:443" }), "listeners[0].address"},
		{"upstream without port", with(func(c *Config) { c.Listeners[0].Upstream = "10.0.0.5" }), "listeners[0].upstream"},
		{"upstream port zero", with(func(c *Config) { c.Listeners[0].Upstream = "10.0.0.5:0" }), "listeners[0].upstream"},
		{"upstream original without transparent", with(func(c *Config) { c.Listeners[0].Upstream = "original" }), "listeners[0].transparent"},
		{"forwarded proto", with(func(c *Config) { c.Listeners[0].ForwardedProto = "ftp" }), "listeners[0].forwarded_proto"},
		{"tls block", with(func(c *Config) { c.Policy.TLSBlock = "drop" }), "policy.tls_block"},
		{"http status", with(func(c *Config) { c.Policy.HTTPBlockStatus = 99 }), "policy.http_block_status"},
		{"http status 2xx", with(func(c *Config) { c.Policy.HTTPBlockStatus = 200 }), "policy.http_block_status: 200"},
		{"redirect relative", with(func(c *Config) { c.Policy.RedirectURL = "/notice" }), "policy.redirect_url"},
		{"block page missing", with(func(c *Config) { c.Policy.BlockPage = "testdata/no-such-page.html" }), "policy.block_page"},
		{"negative hello", with(func(c *Config) { c.Timeouts.Hello = -1 }), "timeouts.hello"},
		{"negative drain", with(func(c *Config) { c.Timeouts.Drain = -time.Second }), "timeouts.drain"},
		{"negative max conns", with(func(c *Config) { c.Limits.MaxConns = -1 }), "limits.max_conns"},
		{"negative per ip", with(func(c *Config) { c.Limits.MaxConnsPerIP = -1 }), "limits.max_conns_per_ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.cfg, mapDecider{}, nil, nil)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("got %q, want it to name %q", err, tt.field)
			}
		})
	}
	if _, err := NewServer(Config{Listeners: []ListenerConfig{ok}}, nil, nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil decider: got %v, want ErrInvalidConfig", err)
	}
}

func TestStartBindError(t *testing.T) {
	// A socket without SO_REUSEPORT holds the port: binding must fail and
	// name the listener and the address.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := Config{Listeners: []ListenerConfig{
		{Name: "first", Protocol: "tls", Address: "127.0.0.1:0"},
		{Name: "taken", Protocol: "tls", Address: busy.Addr().String()},
	}}
	srv, err := NewServer(cfg, mapDecider{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start()
	if err == nil {
		t.Fatal("Start: got nil error, want a bind failure")
	}
	for _, want := range []string{`"taken"`, busy.Addr().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
	if a := srv.Addr("first"); a != nil {
		t.Errorf("Addr(first) after failed Start: got %v, want nil (nothing stays bound)", a)
	}
}

func TestReusePort(t *testing.T) {
	// Two gateways bind the same address, as the old and the new process
	// do during a zero-downtime upgrade.
	a := startGateway(t, tlsListener("127.0.0.1:1"), mapDecider{})
	cfg := tlsListener("127.0.0.1:1")
	cfg.Listeners[0].Address = a.addr("tls")
	srv, err := NewServer(cfg, mapDecider{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("second Start on %s: got %v, want success with SO_REUSEPORT", cfg.Listeners[0].Address, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Serve(ctx); err != nil {
		t.Errorf("Serve: got %v, want nil", err)
	}
	if err := srv.Reload(cfg, nil); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Reload after Serve: got %v, want ErrServerClosed", err)
	}
}

// waitFor polls cond (a metric reaching a value) for up to 10 s: handlers
// run asynchronously to the client.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestReloadKeepsOpenConnection(t *testing.T) {
	upA := newTLSUpstream(t, "A", nil)
	upB := newTLSUpstream(t, "B", nil)
	filed := mapDecider{filed: map[string]string{"filed.cn": ""}}
	g := startGateway(t, tlsListener(upA.addr()), filed)
	oldAddr := g.addr("tls")

	c, err := dialTLS(oldAddr, "www.filed.cn")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if got, err := httpGet(c, br, "www.filed.cn"); err != nil || got != "hello www.filed.cn from A" {
		t.Fatalf("before reload: got %q, %v, want %q", got, err, "hello www.filed.cn from A")
	}

	// Reload: another upstream, nothing filed any more, the listener moved
	// to another address and a second listener added.
	cfg := tlsListener(upB.addr())
	cfg.Listeners[0].Address = "127.0.0.2:0"
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Name: "tls2", Protocol: "tls", Address: "127.0.0.1:0", Upstream: upB.addr()})
	if err := g.srv.Reload(cfg, mapDecider{}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	newAddr := g.addr("tls")
	if newAddr == oldAddr {
		t.Fatalf("listener address after reload: got %s, want a new one", newAddr)
	}

	// The open connection keeps relaying to the old upstream.
	for i := range 3 {
		if got, err := httpGet(c, br, "www.filed.cn"); err != nil || got != "hello www.filed.cn from A" {
			t.Fatalf("after reload, request %d: got %q, %v, want %q", i, got, err, "hello www.filed.cn from A")
		}
	}
	// New connections get the new policy, on the new addresses only.
	for _, addr := range []string{newAddr, g.addr("tls2")} {
		if _, err := dialTLS(addr, "filed.cn"); err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("new connection to %s: got %v, want access denied", addr, err)
		}
	}
	if _, err := net.DialTimeout("tcp", oldAddr, 5*time.Second); err == nil {
		t.Errorf("dial old address %s after rebind: got a connection, want refused", oldAddr)
	}
	if n := upB.accepted.Load(); n != 0 {
		t.Errorf("upstream B connections: got %d, want 0 (blocked)", n)
	}

	// SetDecider: filed again, now to the new upstream.
	g.srv.SetDecider(filed)
	c2, err := dialTLS(newAddr, "filed.cn")
	if err != nil {
		t.Fatalf("dial after SetDecider: %v", err)
	}
	defer c2.Close()
	if got, err := httpGet(c2, bufio.NewReader(c2), "filed.cn"); err != nil || got != "hello filed.cn from B" {
		t.Errorf("after SetDecider: got %q, %v, want %q", got, err, "hello filed.cn from B")
	}

	// A reload that cannot bind changes nothing.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := cfg
	bad.Listeners = append(append([]ListenerConfig(nil), cfg.Listeners...), ListenerConfig{Name: "taken", Protocol: "tls", Address: busy.Addr().String()})
	if err := g.srv.Reload(bad, mapDecider{}); err == nil || !strings.Contains(err.Error(), `"taken"`) {
		t.Errorf("Reload with a taken address: got %v, want an error naming the listener", err)
	}
	if g.srv.Addr("taken") != nil || g.addr("tls") != newAddr {
		t.Errorf("failed Reload changed the listeners")
	}
	if got, err := httpGet(c, br, "www.filed.cn"); err != nil || got != "hello www.filed.cn from A" {
		t.Errorf("first connection at the end: got %q, %v", got, err)
	}
}

func TestServeDrain(t *testing.T) {
	up := newTLSUpstream(t, "A", nil)
	cfg := tlsListener(up.addr())
	cfg.Timeouts.Drain = 2 * time.Second
	g := startGateway(t, cfg, mapDecider{filed: map[string]string{"filed.cn": ""}})
	addr := g.addr("tls")
	c, err := dialTLS(addr, "filed.cn")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := httpGet(c, br, "filed.cn"); err != nil {
		t.Fatal(err)
	}

	g.cancel()
	// New connections are refused once draining starts...
	waitFor(t, "listener to close", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	// ...while the open connection keeps working until the deadline...
	if got, err := httpGet(c, br, "filed.cn"); err != nil || got != "hello filed.cn from A" {
		t.Fatalf("request while draining: got %q, %v", got, err)
	}
	// ...and is closed by it; then Serve returns.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection past the drain deadline: got %v, want EOF or reset", err)
	}
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("Serve: got %v, want nil", err)
		}
		close(g.done)
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the drain deadline")
	}
	if n := g.srv.openConns(); n != 0 {
		t.Errorf("tracked connections after Serve: got %d, want 0", n)
	}
	if got := testutil.ToFloat64(g.m.ActiveConnections.WithLabelValues("tls")); got != 0 {
		t.Errorf("active connections after Serve: got %v, want 0", got)
	}
}

func TestServeDrainReturnsEarly(t *testing.T) {
	// With no open connection Serve returns at once, not after Drain.
	cfg := tlsListener("127.0.0.1:1")
	cfg.Timeouts.Drain = time.Hour
	g := startGateway(t, cfg, mapDecider{})
	if err := g.stop(t); err != nil {
		t.Errorf("Serve: got %v, want nil", err)
	}
}

func TestConnectionLimits(t *testing.T) {
	cfg := tlsListener("127.0.0.1:1")
	cfg.Limits = Limits{MaxConns: 3, MaxConnsPerIP: 2}
	cfg.Timeouts.Hello = time.Minute // admitted clients wait silently in the hello phase
	g := startGateway(t, cfg, mapDecider{})
	addr := g.addr("tls")
	active := func() float64 { return testutil.ToFloat64(g.m.ActiveConnections.WithLabelValues("tls")) }
	rejects := func(limit string) float64 { return testutil.ToFloat64(g.m.LimitRejects.WithLabelValues(limit)) }
	dialFrom := func(src string) *net.TCPConn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.TCPConn)
	}
	closedAtOnce := func(c *net.TCPConn) bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF || errors.Is(err, syscall.ECONNRESET)
	}

	steps := []struct {
		src       string
		wantLimit string // "" = admitted
	}{
		{"127.0.0.1", ""},
		{"127.0.0.1", ""},
		{"127.0.0.1", limitPerIP},
		{"127.0.0.2", ""},
		{"127.0.0.3", limitGlobal},
	}
	var admitted []*net.TCPConn
	for i, s := range steps {
		before := rejects(limitPerIP) + rejects(limitGlobal)
		c := dialFrom(s.src)
		if s.wantLimit == "" {
			admitted = append(admitted, c)
			waitFor(t, fmt.Sprintf("step %d admitted", i), func() bool { return active() == float64(len(admitted)) })
			continue
		}
		if !closedAtOnce(c) {
			t.Fatalf("step %d from %s: connection not closed, want refused by %s", i, s.src, s.wantLimit)
		}
		waitFor(t, "reject counted", func() bool { return rejects(limitPerIP)+rejects(limitGlobal) == before+1 })
		if got := rejects(s.wantLimit); got < 1 {
			t.Fatalf("step %d: LimitRejects{%s} = %v, want >= 1", i, s.wantLimit, got)
		}
	}
	if got, want := rejects(limitPerIP), 1.0; got != want {
		t.Errorf("per_ip rejects: got %v, want %v", got, want)
	}
	if got, want := rejects(limitGlobal), 1.0; got != want {
		t.Errorf("global rejects: got %v, want %v", got, want)
	}
	if got, want := testutil.ToFloat64(g.m.Connections.WithLabelValues("tls")), 5.0; got != want {
		t.Errorf("connections_total: got %v, want %v", got, want)
	}
	// Closing one frees its slot.
	admitted[0].Close()
	waitFor(t, "slot freed", func() bool { return active() == 2 })
	dialFrom("127.0.0.1")
	waitFor(t, "admitted after a close", func() bool { return active() == 3 })

	// Reload lowers the cap: open connections stay, new ones are refused.
	cfg.Limits.MaxConnsPerIP = 1
	if err := g.srv.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if c := dialFrom("127.0.0.2"); !closedAtOnce(c) {
		t.Errorf("after lowering the cap: connection from 127.0.0.2 admitted, want refused")
	}
	if got := active(); got != 3 {
		t.Errorf("active after Reload: got %v, want 3 (open connections untouched)", got)
	}
}

func TestServerIdleTimeout(t *testing.T) {
	up := newTLSUpstream(t, "A", nil)
	cfg := tlsListener(up.addr())
	cfg.Timeouts.Idle = 300 * time.Millisecond
	g := startGateway(t, cfg, filedOnly)
	c, err := dialTLS(g.addr("tls"), "filed.cn")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := httpGet(c, br, "filed.cn"); err != nil {
		t.Fatal(err)
	}
	// Silence: the watchdog closes the relay.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on an idle relay: got %v, want EOF or reset", err)
	}
	waitFor(t, "idle timeout counted", func() bool {
		return testutil.ToFloat64(g.m.IdleTimeouts.WithLabelValues("tls")) == 1
	})
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	// Touch every vector once so that each has a series to lint.
	m.Decisions.WithLabelValues("tls", "pass", "filed").Inc()
	m.Connections.WithLabelValues("tls").Inc()
	m.ActiveConnections.WithLabelValues("tls").Inc()
	m.HelloErrors.WithLabelValues(helloTimeout).Inc()
	m.HTTPErrors.WithLabelValues("bad_request").Inc()
	m.Bytes.WithLabelValues("tls", "upstream").Add(1)
	m.UpstreamErrors.WithLabelValues("tls", "dial").Inc()
	m.RequestDuration.WithLabelValues("http", "pass").Observe(0.001)
	m.LimitRejects.WithLabelValues(limitPerIP).Inc()
	m.IdleTimeouts.WithLabelValues("tls").Inc()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Errorf("series: got %d, want 10", n)
	}
}

// TestServerHTTPListener checks the Server's wiring of http listeners:
// requests reach the HTTP handler with the Server's Decider (swappable),
// and draining closes an idle keep-alive connection at once instead of
// waiting for the drain deadline.
func TestServerHTTPListener(t *testing.T) {
	upstream := newHTTPTestUpstream(t)
	cfg := Config{
		Listeners: []ListenerConfig{
			{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: upstream},
			{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
		},
		Timeouts: Timeouts{Drain: time.Hour},
	}
	g := startGateway(t, cfg, filedOnly)
	c, err := net.Dial("tcp", g.addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	get := func(host string) (*http.Response, string) {
		t.Helper()
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("www.filed.cn"); resp.StatusCode != 200 || body != "upstream saw www.filed.cn" {
		t.Fatalf("filed: got %d %q, want 200 %q", resp.StatusCode, body, "upstream saw www.filed.cn")
	}
	// SetDecider reaches the HTTP handler on the next request of the same
	// keep-alive connection.
	g.srv.SetDecider(mapDecider{})
	if resp, _ := get("www.filed.cn"); resp.StatusCode != 403 || resp.Header.Get("X-Icpgate-Reason") != "unfiled" {
		t.Fatalf("after SetDecider: got %d reason %q, want 403 unfiled", resp.StatusCode, resp.Header.Get("X-Icpgate-Reason"))
	}
	c2, err := net.Dial("tcp", g.addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	g.srv.SetDecider(filedOnly)
	fmt.Fprintf(c2, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	br2 := bufio.NewReader(c2)
	resp, err := http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)

	// c2 is now an idle keep-alive connection; drain must close it and
	// return long before the one-hour deadline.
	errc := make(chan error, 1)
	go func() { errc <- g.stop(t) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve: got %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve still draining an idle HTTP keep-alive connection")
	}
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br2.ReadByte(); err == nil {
		t.Errorf("idle keep-alive connection still open after drain")
	}
}

// newHTTPTestUpstream is a plain net/http upstream answering
// "upstream saw <host>".
func newHTTPTestUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream saw "+r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestListenerSocketOptions(t *testing.T) {
	ln, err := bind(ListenerConfig{Name: "t", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ac, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	// Set on the listener, inherited by the accepted socket (Go itself
	// sets nothing: KeepAlive is -1).
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdleSeconds},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveIntervalSeconds},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
	} {
		rc, err := ac.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), o.level, o.opt) })
		if gerr != nil || got != o.want {
			t.Errorf("accepted socket %s: got %d (%v), want %d", o.name, got, gerr, o.want)
		}
	}
}

func TestServeNoGoroutineLeak(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	up := newTLSUpstream(t, "A", nil)
	cfg := tlsListener(up.addr())
	cfg.Timeouts.Drain = 200 * time.Millisecond
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := NewServer(cfg, filedOnly, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	addr := srv.Addr("tls").String()
	open, err := dialTLS(addr, "filed.cn") // left open across the drain
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := dialTLS(addr, "unfiled.cn"); err == nil {
		t.Fatal("unfiled passed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	open.Close()
	up.ln.Close()
	up.wg.Wait()
	goleak.VerifyNone(t, ignore)
}
