package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// parkGateway is poolGateway with the idle timeout given.
func parkGateway(t *testing.T, upstream string, idle time.Duration) *gateway {
	return parkGatewayProto(t, "http", upstream, idle)
}

// parkGatewayProto is parkGateway with a listener (named "http") of the
// protocol given: http or auto.
func parkGatewayProto(t *testing.T, protocol, upstream string, idle time.Duration) *gateway {
	cfg := Config{
		Listeners: []ListenerConfig{{Name: "http", Protocol: protocol, Address: "127.0.0.1:0", Upstream: upstream}},
		Timeouts:  Timeouts{Hello: 5 * time.Second, Dial: 2 * time.Second, Idle: idle},
	}
	return startGateway(t, cfg, filedOnly)
}

// keepAliveGet sends a GET on c and returns the response body.
func keepAliveGet(t *testing.T, c net.Conn, br *bufio.Reader, host string) (int, string) {
	t.Helper()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// countingUpstream is a keep-alive upstream answering "response N".
func countingUpstream(t *testing.T) *rawHTTPUpstream {
	return startRawHTTPUpstream(t, func(n int32, head string) string {
		body := fmt.Sprintf("response %d", n)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
}

// TestHTTPParkedClients: keep-alive clients that go quiet are parked (no
// handler goroutine, the slot kept); each next request, passing or
// blocked, is served as before, and the client is parked again after it.
// HTTP clients of an auto listener (sniffed, then served as HTTP) too.
func TestHTTPParkedClients(t *testing.T) {
	for _, protocol := range []string{"http", "auto"} {
		t.Run(protocol, func(t *testing.T) { testParkedClients(t, protocol) })
	}
}

func testParkedClients(t *testing.T, protocol string) {
	u := countingUpstream(t)
	g := parkGatewayProto(t, protocol, u.addr, 30*time.Second)
	active := func() float64 { return testutil.ToFloat64(g.m.ActiveConnections.WithLabelValues("http")) }
	const clients = 20
	conns := make([]net.Conn, clients)
	readers := make([]*bufio.Reader, clients)
	for i := range conns {
		c, err := net.Dial("tcp", g.addr("http"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i], readers[i] = c, bufio.NewReader(c)
		if st, body := keepAliveGet(t, c, readers[i], "www.filed.cn"); st != 200 || body != fmt.Sprintf("response %d", i+1) {
			t.Fatalf("client %d: got %d %q", i, st, body)
		}
	}
	waitFor(t, "every quiet client parked", func() bool { return g.srv.park.parked() == clients })
	if a := active(); a != clients {
		t.Errorf("active connections with every client parked: got %v, want %d", a, clients)
	}
	for round := range 2 {
		for i, c := range conns {
			st, body := keepAliveGet(t, c, readers[i], "www.filed.cn")
			if st != 200 || body == "" {
				t.Fatalf("round %d, client %d after parking: got %d %q", round, i, st, body)
			}
		}
		waitFor(t, "the clients parked again", func() bool { return g.srv.park.parked() == clients })
	}
	// A blocked request on a resumed connection gets the block page, and
	// the connection ends, as any blocked one does.
	if st, _ := keepAliveGet(t, conns[0], readers[0], "www.unfiled.cn"); st != 403 {
		t.Fatalf("unfiled host on a resumed connection: got %d, want 403", st)
	}
	waitFor(t, "the blocked client's slot released", func() bool { return active() == clients-1 })
	// A parked client that closes frees its slot.
	conns[1].Close()
	waitFor(t, "the closed client's slot released", func() bool { return active() == clients-2 })
	if n := g.srv.park.parked(); n != clients-2 {
		t.Errorf("parked after two clients left: got %d, want %d", n, clients-2)
	}
	if n := u.conns.Load(); n > clients {
		t.Errorf("upstream connections: %d for %d clients", n, clients)
	}
}

// TestHTTPParkedIdleTimeout: a parked client's idle timeout still ends it.
func TestHTTPParkedIdleTimeout(t *testing.T) {
	u := countingUpstream(t)
	g := parkGateway(t, u.addr, 600*time.Millisecond)
	c, err := net.Dial("tcp", g.addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if st, _ := keepAliveGet(t, c, br, "www.filed.cn"); st != 200 {
		t.Fatalf("got %d", st)
	}
	waitFor(t, "the client parked", func() bool { return g.srv.park.parked() == 1 })
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a parked client past its idle timeout: read got %v, want EOF", err)
	}
	t.Logf("closed %v after parking (idle timeout 600ms, sweep %v)", time.Since(start).Round(time.Millisecond), parkSweep)
	waitFor(t, "the slot released", func() bool {
		return testutil.ToFloat64(g.m.ActiveConnections.WithLabelValues("http")) == 0 && g.srv.park.parked() == 0
	})
}

// TestHTTPParkedDrain: draining closes parked clients at once, and the
// drain does not wait for their idle timeout.
func TestHTTPParkedDrain(t *testing.T) {
	u := countingUpstream(t)
	g := parkGateway(t, u.addr, time.Hour)
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", g.addr("http"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if st, _ := keepAliveGet(t, c, bufio.NewReader(c), "www.filed.cn"); st != 200 {
			t.Fatalf("got %d", st)
		}
		conns = append(conns, c)
	}
	waitFor(t, "the clients parked", func() bool { return g.srv.park.parked() == len(conns) })
	if err := g.stop(t); err != nil {
		t.Fatalf("Serve after the drain: %v", err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d after the drain: read got %v, want EOF", i, err)
		}
	}
	if n := g.srv.park.parked(); n != 0 {
		t.Errorf("parked after the drain: %d", n)
	}
}
