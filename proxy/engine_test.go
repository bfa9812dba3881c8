package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// enginesOf returns the engines of g's server, failing when the tls
// listener is not served by one.
func enginesOf(t *testing.T, g *gateway) []*engine {
	t.Helper()
	var es []*engine
	waitFor(t, "the passthrough engine to serve the tls listener", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		es = g.srv.engines
		return len(es) > 0 && len(g.srv.lns["tls"].engines) == len(es)
	})
	return es
}

// TestEngineBulkBothWays sends 3 MiB up and 3 MiB down through the engine
// (past spliceAfter, so both directions switch to splice) and checks every
// byte, the byte counters, and that once the transfer is over the bursts
// end: TCP_NODELAY is back on (the tail push) and no pipe is held.
func TestEngineBulkBothWays(t *testing.T) {
	const size = 3 << 20
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	want := sha256.Sum256(payload)
	up := newTLSUpstream(t, "A", func(c *tls.Conn, _ *net.TCPConn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		if _, err := io.CopyN(h, c, size); err != nil {
			return
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			fmt.Fprint(c, "BAD")
			return
		}
		fmt.Fprint(c, "OK!")
		c.Write(payload)
		// Then one small message after the burst: it must arrive.
		fmt.Fprint(c, "tail")
		io.Copy(io.Discard, c)
	})
	g := startGateway(t, tlsListener(up.addr()), filedOnly)
	engines := enginesOf(t, g)
	c, err := dialTLS(g.addr("tls"), "filed.cn")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go c.Write(payload)
	verdict := make([]byte, 3)
	if _, err := io.ReadFull(c, verdict); err != nil || string(verdict) != "OK!" {
		t.Fatalf("upload: got %q, %v; want OK!", verdict, err)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, c, size); err != nil {
		t.Fatalf("download: %v", err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("download: the bytes differ")
	}
	tail := make([]byte, 4)
	if _, err := io.ReadFull(c, tail); err != nil || string(tail) != "tail" {
		t.Fatalf("tail: got %q, %v", tail, err)
	}
	// Both bursts end: the directions leave Nagle (tail push).
	waitFor(t, "the bursts to end", func() bool {
		bursts := 0
		for _, e := range engines {
			e.call(func() {
				for _, pc := range e.slots {
					if pc.rt != nil && (pc.up.nagle || pc.down.nagle) {
						bursts++
					}
				}
			})
		}
		return bursts == 0
	})
	c.Close()
	waitFor(t, "the connection to close", func() bool { return g.srv.openConns() == 0 })
	if got := testutil.ToFloat64(g.m.Bytes.WithLabelValues("tls", "upstream")); got < size {
		t.Errorf("bytes upstream: got %v, want at least %d", got, size)
	}
	if got := testutil.ToFloat64(g.m.Bytes.WithLabelValues("tls", "downstream")); got < size {
		t.Errorf("bytes downstream: got %v, want at least %d", got, size)
	}
}

// TestEngineUpstreamName dials an upstream given by name: resolved off the
// engine's loop, then connected by it.
func TestEngineUpstreamName(t *testing.T) {
	up := newTLSUpstream(t, "named", nil)
	_, port, _ := net.SplitHostPort(up.addr())
	g := startGateway(t, tlsListener("localhost:"+port), filedOnly)
	enginesOf(t, g)
	c, err := dialTLS(g.addr("tls"), "filed.cn")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body, err := httpGetTLS(c, "filed.cn")
	if err != nil || body != "hello filed.cn from named" {
		t.Fatalf("got %q, %v", body, err)
	}
}

// TestEngineHandOff reloads an engine listener with a PROXY protocol
// config, which the engine does not serve: new connections go to the
// goroutine path (a PROXY header then a hello pass), and a reload back
// gives them to the engine again.
func TestEngineHandOff(t *testing.T) {
	up := newTLSUpstream(t, "A", nil)
	cfg := tlsListener(up.addr())
	g := startGateway(t, cfg, filedOnly)
	enginesOf(t, g)
	pp := cfg
	pp.Listeners = []ListenerConfig{cfg.Listeners[0]}
	pp.Listeners[0].ProxyProtocol = ProxyProtocol{AcceptFrom: loopbackNet}
	if err := g.srv.Reload(pp, nil); err != nil {
		t.Fatal(err)
	}
	// The socket stays the engines' (same name, protocol, address).
	enginesOf(t, g)
	// PROXY headers from the allowed peers are handled by the handler the
	// engine hands connections to.
	raw := dialRaw(t, g.addr("tls"))
	raw.Write(proxyHeader(t, 2, "203.0.113.9:4242", "198.51.100.1:443"))
	_, pool := testCert(t)
	c := tls.Client(raw, &tls.Config{ServerName: "filed.cn", RootCAs: pool})
	body, err := httpGetTLS(c, "filed.cn")
	if err != nil || body != "hello filed.cn from A" {
		t.Fatalf("after the PROXY reload: got %q, %v", body, err)
	}
	c.Close()

	back := pp
	back.Listeners = []ListenerConfig{pp.Listeners[0]}
	back.Listeners[0].ProxyProtocol = ProxyProtocol{}
	if err := g.srv.Reload(back, nil); err != nil {
		t.Fatal(err)
	}
	c2, err := dialTLS(g.addr("tls"), "filed.cn")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if body, err := httpGetTLS(c2, "filed.cn"); err != nil || !strings.HasPrefix(body, "hello filed.cn") {
		t.Fatalf("after the reload back: got %q, %v", body, err)
	}
}

// httpGetTLS sends one request on c and returns the response body.
func httpGetTLS(c *tls.Conn, host string) (string, error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return httpGet(c, bufio.NewReader(c), host)
}
