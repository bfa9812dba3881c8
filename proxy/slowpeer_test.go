package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const wsUpgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// TestHTTPTunnelIdle: an upgraded (101) tunnel with no bytes either way for
// Timeouts.TunnelIdle is closed and counted; one that keeps moving bytes
// stays open past it.
func TestHTTPTunnelIdle(t *testing.T) {
	u := startHTTPUpstream(t)
	cfg := httpBaseConfig(u.addr)
	cfg.Timeouts.TunnelIdle = 400 * time.Millisecond
	g := startHTTPGateway(t, cfg, httpTestDecider())
	open := func(t *testing.T) (net.Conn, io.Reader) {
		c, br := httpDialRaw(t, g.addr)
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: filed.cn\r\n"+wsUpgrade)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("got %v %v, want 101", resp, err)
		}
		return c, br
	}

	t.Run("busy tunnel stays open", func(t *testing.T) {
		c, br := open(t)
		buf := make([]byte, 4)
		// Three tunnel idle periods, a message every tenth of one.
		for i := 0; i < 30; i++ {
			io.WriteString(c, "ping")
			if _, err := io.ReadFull(br, buf); err != nil {
				t.Fatalf("message %d: %v (closed while busy)", i, err)
			}
			time.Sleep(40 * time.Millisecond)
		}
	})
	before := testutil.ToFloat64(g.m.IdleTimeouts.WithLabelValues("http"))

	t.Run("idle tunnel is closed", func(t *testing.T) {
		c, br := open(t)
		io.WriteString(c, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatal(err)
		}
		// httpDialRaw's 10 s deadline would end this read with a timeout
		// error; the gateway's close ends it with EOF.
		n, err := br.Read(buf)
		if err != io.EOF {
			t.Fatalf("got %d bytes, %v; want EOF from the gateway closing the idle tunnel", n, err)
		}
	})
	if got := testutil.ToFloat64(g.m.IdleTimeouts.WithLabelValues("http")) - before; got != 1 {
		t.Fatalf("idle timeouts counted %v, want 1", got)
	}
}

// TestHTTPBodyMinRate: a client trickling its request body below
// Limits.MinBodyRate after Timeouts.BodyGrace gets a 408 long before the
// idle timeout, and nothing is answered by the origin; a slow client above
// the rate, whose body takes longer than the grace period, completes.
func TestHTTPBodyMinRate(t *testing.T) {
	u := startHTTPUpstream(t)
	cfg := httpBaseConfig(u.addr)
	cfg.Timeouts.Idle = 5 * time.Second
	cfg.Timeouts.BodyGrace = 200 * time.Millisecond
	cfg.Limits.MinBodyRate = 100
	g := startHTTPGateway(t, cfg, httpTestDecider())

	for _, tc := range []struct{ name, head, part, end string }{
		{"content-length", "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: 1000\r\n\r\n", "a", ""},
		{"chunked", "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n", "a", ""},
	} {
		t.Run("trickle/"+tc.name, func(t *testing.T) {
			c, br := httpDialRaw(t, g.addr)
			io.WriteString(c, tc.head)
			done := make(chan struct{})
			go func() {
				defer close(done)
				// 10 bytes/s, for at most the idle timeout: the gateway
				// must answer before this ends.
				for i := 0; i < 50; i++ {
					if _, err := io.WriteString(c, tc.part); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			resp, _ := httpReadResp(t, br, "POST")
			if resp.StatusCode != 408 {
				t.Fatalf("got %d, want 408", resp.StatusCode)
			}
			httpExpectClosed(t, br)
			c.Close()
			<-done
		})
	}
	if got := testutil.ToFloat64(g.m.HTTPErrors.WithLabelValues("body_too_slow")); got != 2 {
		t.Fatalf("body_too_slow errors = %v, want 2", got)
	}

	t.Run("slow but above the rate", func(t *testing.T) {
		c, br := httpDialRaw(t, g.addr)
		io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: 400\r\n\r\n")
		part := strings.Repeat("b", 40)
		for i := 0; i < 10; i++ { // 400 bytes/s for about a second
			io.WriteString(c, part)
			time.Sleep(100 * time.Millisecond)
		}
		resp, body := httpReadResp(t, br, "POST")
		if resp.StatusCode != 200 || len(body) != 400 {
			t.Fatalf("got %d with %d bytes, want 200 with 400", resp.StatusCode, len(body))
		}
	})
}
