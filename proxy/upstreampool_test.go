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
)

// poolPair returns the two ends of a loopback TCP connection; the test
// closes them.
func poolPair(t testing.TB) (local, remote *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); r.Close() })
	return c, r
}

// isClosed reports whether c was closed locally (a write fails with
// net.ErrClosed).
func isClosed(c *net.TCPConn) bool {
	_, err := c.Write(nil)
	return err != nil && strings.Contains(err.Error(), "use of closed network connection")
}

func TestUpstreamPoolLIFOAndLimits(t *testing.T) {
	p := newUpstreamPool()
	p.maxPer, p.maxTotal = 2, 3
	a1, _ := poolPair(t)
	a2, _ := poolPair(t)
	a3, _ := poolPair(t)
	b1, _ := poolPair(t)
	b2, _ := poolPair(t)

	p.put("a", a1)
	p.put("a", a2)
	p.put("a", a3) // a's stack is full: its oldest (a1) goes
	if !isClosed(a1) {
		t.Errorf("a1: got open, want closed (evicted as the oldest of a full stack)")
	}
	p.put("b", b1) // total 3
	p.put("b", b2) // total full: b's own oldest (b1) goes
	if !isClosed(b1) {
		t.Errorf("b1: got open, want closed (evicted at the total cap)")
	}
	if n := p.len(); n != 3 {
		t.Errorf("len: got %d, want 3", n)
	}
	c, _ := poolPair(t)
	p.put("c", c) // total full and c has nothing to evict: c itself is closed
	if !isClosed(c) {
		t.Errorf("c: got open, want closed (pool full)")
	}
	if got := p.get("a"); got != a3 {
		t.Errorf("get a: got %p, want the newest %p", got, a3)
	}
	if got := p.get("a"); got != a2 {
		t.Errorf("get a: got %p, want %p", got, a2)
	}
	if got := p.get("a"); got != nil {
		t.Errorf("get a: got %p, want nil (empty)", got)
	}
	if got := p.get("nothing"); got != nil {
		t.Errorf("get of an unknown address: got %p, want nil", got)
	}
}

func TestUpstreamPoolExpiry(t *testing.T) {
	p := newUpstreamPool()
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	old1, _ := poolPair(t)
	old2, _ := poolPair(t)
	p.put("a", old1)
	p.put("a", old2)
	now = now.Add(p.timeout)
	fresh, _ := poolPair(t)
	p.put("b", fresh)
	if n := p.evictExpired(); n != 2 {
		t.Errorf("evictExpired: got %d, want 2", n)
	}
	if !isClosed(old1) || !isClosed(old2) {
		t.Errorf("expired connections left open")
	}
	if got := p.get("b"); got != fresh {
		t.Errorf("get b: got %p, want the fresh one", got)
	}
	// get also drops expired ones (the whole stack: all older).
	x, _ := poolPair(t)
	y, _ := poolPair(t)
	p.put("a", x)
	p.put("a", y)
	now = now.Add(p.timeout)
	if got := p.get("a"); got != nil {
		t.Errorf("get after the idle timeout: got %p, want nil", got)
	}
	if !isClosed(x) || !isClosed(y) || p.len() != 0 {
		t.Errorf("expired connections kept: len %d", p.len())
	}
}

// TestUpstreamPoolLiveness: get never hands out a connection the upstream
// closed or one with unread bytes pending.
func TestUpstreamPoolLiveness(t *testing.T) {
	p := newUpstreamPool()
	closedByPeer, r1 := poolPair(t)
	stray, r2 := poolPair(t)
	good, _ := poolPair(t)
	p.put("a", good)
	p.put("a", closedByPeer)
	p.put("a", stray)
	r1.Close()
	r2.Write([]byte("x"))
	// Let the FIN and the byte arrive (bounded).
	for i := 0; i < 200 && upstreamAlive(stray); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 200 && upstreamAlive(closedByPeer); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if got := p.get("a"); got != good {
		t.Fatalf("get: got %p, want the live connection %p", got, good)
	}
	if !isClosed(stray) || !isClosed(closedByPeer) {
		t.Errorf("dead or dirty connections not closed")
	}
}

func TestUpstreamPoolClose(t *testing.T) {
	p := newUpstreamPool()
	a, _ := poolPair(t)
	p.put("a", a)
	p.close()
	if !isClosed(a) || p.len() != 0 {
		t.Errorf("close left idle connections")
	}
	b, _ := poolPair(t)
	p.put("a", b)
	if !isClosed(b) {
		t.Errorf("put after close: got open, want closed")
	}
}

// rawHTTPUpstream is a loopback HTTP/1.1 upstream answering each request
// head with respond(n, head), n counting requests over all connections;
// conns counts accepted connections.
type rawHTTPUpstream struct {
	addr  string
	conns atomic.Int32
	reqs  atomic.Int32
}

func startRawHTTPUpstream(t testing.TB, respond func(n int32, head string) string) *rawHTTPUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawHTTPUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					resp := respond(u.reqs.Add(1), head.String())
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
					if strings.Contains(resp, "Connection: close") {
						return
					}
				}
			}()
		}
	}()
	return u
}

// poolGet sends one GET with Connection: close on a new client connection
// and returns the status and body.
func poolGet(t *testing.T, addr, method, path string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: www.filed.cn\r\nConnection: close\r\n\r\n", method, path)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The gateway closes after a Connection: close response, and only
	// after it has let go of the upstream connection.
	c.Read(make([]byte, 1))
	return resp.StatusCode, string(b)
}

func poolGateway(t *testing.T, upstream string) *gateway {
	cfg := Config{
		Listeners: []ListenerConfig{{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: upstream}},
		Timeouts:  Timeouts{Hello: 5 * time.Second, Dial: 2 * time.Second, Idle: 5 * time.Second},
	}
	return startGateway(t, cfg, filedOnly)
}

// TestHTTPUpstreamPoolShared: new client connections, one after the
// other, share one upstream connection, and drain closes it.
func TestHTTPUpstreamPoolShared(t *testing.T) {
	u := startRawHTTPUpstream(t, func(n int32, head string) string {
		body := fmt.Sprintf("response %d", n)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	g := poolGateway(t, u.addr)
	for i := 1; i <= 5; i++ {
		st, body := poolGet(t, g.addr("http"), "GET", "/")
		if want := fmt.Sprintf("response %d", i); st != 200 || body != want {
			t.Fatalf("request %d: got %d %q, want 200 %q", i, st, body, want)
		}
	}
	if n := u.conns.Load(); n != 1 {
		t.Errorf("upstream connections for 5 sequential client connections: got %d, want 1", n)
	}
	if n := g.srv.upPool.len(); n != 1 {
		t.Errorf("idle pooled connections: got %d, want 1", n)
	}
	if err := g.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := g.srv.upPool.len(); n != 0 {
		t.Errorf("idle pooled connections after the drain: got %d, want 0", n)
	}
}

// TestHTTPUpstreamPoolNoDesync: an upstream connection that misbehaved
// (bytes beyond the framed response, a body after a HEAD, close-delimited
// or Connection: close responses) is never handed to the next client: each
// next client gets its own, correct response.
func TestHTTPUpstreamPoolNoDesync(t *testing.T) {
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"
	cases := []struct {
		name, method, path string
		first              string // the first response, the misbehaving one
		wantConns          int32
	}{
		{"bytes after the body", "GET", "/", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + smuggled, 2},
		{"body after HEAD", "HEAD", "/", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED", 2},
		{"connection close", "GET", "/", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfirst", 2},
		{"close-delimited", "GET", "/", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst", 2},
		{"HTTP/1.0", "GET", "/", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nfirst", 2},
		{"clean", "GET", "/", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := startRawHTTPUpstream(t, func(n int32, head string) string {
				if n == 1 {
					return tc.first
				}
				return "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"
			})
			g := poolGateway(t, u.addr)
			poolGet(t, g.addr("http"), tc.method, tc.path)
			// Stray bytes were written together with the first response,
			// so they are in the gateway's buffer or socket by now.
			st, body := poolGet(t, g.addr("http"), "GET", "/")
			if st != 200 || body != "second" {
				t.Fatalf("next client: got %d %q, want 200 %q", st, body, "second")
			}
			if n := u.conns.Load(); n != tc.wantConns {
				t.Errorf("upstream connections: got %d, want %d", n, tc.wantConns)
			}
		})
	}
}

// TestHTTPUpstreamPoolNotShared: a listener that sends a PROXY header or
// spoofs the client's source makes connections that belong to one client;
// they are never pooled.
func TestHTTPUpstreamPoolNotShared(t *testing.T) {
	for _, lc := range []ListenerConfig{
		{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1", ProxyProtocol: ProxyProtocol{Send: "v2"}},
		{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: UpstreamOriginal, Transparent: transparentTPROXY, SpoofSource: true},
		{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
	} {
		s, err := NewServer(Config{Listeners: []ListenerConfig{lc}}, filedOnly, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		rt := s.lns["http"].rt.Load()
		shared := lc.ProxyProtocol.Send == "" && !lc.SpoofSource
		if got := rt.http.pool != nil; got != shared {
			t.Errorf("send %q spoof %v: pooled %v, want %v", lc.ProxyProtocol.Send, lc.SpoofSource, got, shared)
		}
	}
}

// BenchmarkHTTPNewConn: one small request per new client connection
// (Connection: close) through the Server, as bench/run's "HTTP new conn";
// dials/op shows the upstream connections it cost.
func BenchmarkHTTPNewConn(b *testing.B) {
	var dials atomic.Int64
	up := httpRawUpstream(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() { // a counting front for the raw upstream
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", up)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	cfg := Config{Listeners: []ListenerConfig{{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: ln.Addr().String()}}}
	g := startGateway(b, cfg, httpFixedDecider{})
	addr := g.addr("http")
	req := []byte("GET / HTTP/1.1\r\nHost: www.filed.cn\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil {
				break
			}
		}
		if !bytes.HasSuffix(buf[:n], []byte("ok")) {
			b.Fatalf("response: %q", buf[:n])
		}
		c.Close()
	}
	b.ReportMetric(float64(dials.Load())/float64(b.N), "dials/op")
}

// TestHTTPBlockedClose: a blocked request is answered completely and then
// closed with a FIN (io.EOF, never a reset), whether the client sent only a
// head (closed at once) or a body the gateway never reads (lingering close,
// so the unread body does not turn the close into a reset).
func TestHTTPBlockedClose(t *testing.T) {
	g := poolGateway(t, "127.0.0.1:1") // never dialled: every request is blocked
	body := strings.Repeat("b", 256<<10)
	// A head that fills the first read exactly (httpBufSize), more bytes
	// behind it: nothing is left in the buffer, but the full read says more
	// may be pending, so the close lingers rather than reset.
	const padded = "GET / HTTP/1.1\r\nHost: unfiled.cn\r\nX-Pad: "
	exact := padded + strings.Repeat("p", httpBufSize-len(padded)-4) + "\r\n\r\n"
	for _, tc := range []struct{ name, req string }{
		{"GET", "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n"},
		{"pipelined", "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\nGET / HTTP/1.1\r\nHost: www.filed.cn\r\n\r\n"},
		// More than the head buffer holds right behind the head: the
		// read fills the buffer, so the close lingers.
		{"head then 256 KiB", "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n" + body},
		{"buffer-sized head then more", exact + body},
		{"POST body", "POST / HTTP/1.1\r\nHost: unfiled.cn\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.addr("http"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			errc := make(chan error, 1)
			go func() { _, err := io.WriteString(c, tc.req); errc <- err }()
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the block response: %v", err)
			}
			if _, err := io.ReadAll(resp.Body); err != nil {
				t.Fatalf("reading the block page: %v", err)
			}
			if resp.StatusCode != 403 {
				t.Fatalf("status: got %d, want 403", resp.StatusCode)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("after the response: got %q, %v; want nothing, then EOF", rest, err)
			}
			<-errc
		})
	}
}

// TestHTTPIdleClientReleasesUpstream: keep-alive clients that go quiet
// give their upstream connection back to the pool (after idleRelease), so
// a crowd of idle clients holds one upstream connection, not one each; a
// quiet client's next request still works.
func TestHTTPIdleClientReleasesUpstream(t *testing.T) {
	u := startRawHTTPUpstream(t, func(n int32, head string) string {
		body := fmt.Sprintf("response %d", n)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	g := poolGateway(t, u.addr)
	get := func(c net.Conn, br *bufio.Reader) string {
		t.Helper()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	const clients = 5
	var conns []net.Conn
	var readers []*bufio.Reader
	for i := range clients {
		c, err := net.Dial("tcp", g.addr("http"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if body := get(c, br); body != fmt.Sprintf("response %d", i+1) {
			t.Fatalf("client %d: got %q", i, body)
		}
		conns, readers = append(conns, c), append(readers, br)
		// Quiet: its upstream goes back to the pool for the next client.
		waitFor(t, "the idle client's upstream back in the pool", func() bool { return g.srv.upPool.len() == 1 })
	}
	if n := u.conns.Load(); n != 1 {
		t.Errorf("upstream connections for %d idle keep-alive clients: got %d, want 1", clients, n)
	}
	if body := get(conns[0], readers[0]); body != fmt.Sprintf("response %d", clients+1) {
		t.Errorf("a quiet client's next request: got %q", body)
	}
}
