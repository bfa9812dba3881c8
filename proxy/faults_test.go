package proxy

// Upstream faults through a running Server: refused, blackholed (SYNs
// dropped), reset before and in the middle of a response. HTTP clients get
// 502/504 while no response has started and a cut connection after; TLS
// clients get a plain close (never a block alert); the counters say which
// fault it was; and nothing is left running afterwards (goleak).

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// blackholeAddr returns a loopback address whose SYNs are dropped: a
// listening socket with a backlog of 0 whose accept queue is filled and
// never accepted. A dial to it hangs until its timeout, like a firewalled
// or vanished host, without leaving loopback.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
	// Fill the queue until a dial times out: from then on SYNs are dropped.
	for i := 0; i < 16; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr
			}
			t.Fatalf("filling the blackhole's queue: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the accept queue never filled")
	return ""
}

// resetAfter is a raw upstream that reads a request head (or, for TLS, the
// first bytes), writes reply and aborts the connection with an RST.
func resetAfter(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for { // up to the end of a head, or whatever arrives first
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" || !strings.HasSuffix(line, "\r\n") {
					break
				}
			}
			io.WriteString(c, reply)
			time.Sleep(20 * time.Millisecond) // let the reply leave before the RST
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestFaultsHTTPUpstream(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	tests := []struct {
		name     string
		upstream func(t *testing.T) string
		status   int    // 0: a response whose body is cut
		kind     string // UpstreamErrors kind counted
	}{
		{"refused", func(t *testing.T) string {
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			ln.Close()
			return ln.Addr().String()
		}, 502, "dial"},
		{"blackholed", blackholeAddr, 504, "timeout"},
		{"reset before the response", func(t *testing.T) string { return resetAfter(t, "") }, 502, "reset"},
		{"reset inside the response head", func(t *testing.T) string { return resetAfter(t, "HTTP/1.1 200 OK\r\nContent-") }, 502, ""},
		{"reset in the middle of the body", func(t *testing.T) string {
			return resetAfter(t, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
		}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{
				Listeners: []ListenerConfig{{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: tt.upstream(t)}},
				Timeouts:  Timeouts{Dial: 300 * time.Millisecond, Idle: 2 * time.Second},
			}
			g := startGateway(t, cfg, mapDecider{filed: map[string]string{"filed.cn": ""}})
			c, err := net.Dial("tcp", g.addr("http"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\nGET /second HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			body, bodyErr := io.ReadAll(resp.Body)
			if tt.status == 0 {
				if resp.StatusCode != 200 || bodyErr == nil {
					t.Fatalf("got %d %q (err %v), want the 200 cut short", resp.StatusCode, body, bodyErr)
				}
			} else {
				if resp.StatusCode != tt.status {
					t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tt.status)
				}
				if !resp.Close {
					t.Errorf("the %d does not close the connection", tt.status)
				}
			}
			// Either way the connection ends: the pipelined request behind
			// is not answered from a broken upstream stream.
			if rest, err := io.ReadAll(br); len(rest) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
				t.Errorf("after the fault: got %q, %v; want the connection closed", rest, err)
			}
			if tt.kind != "" {
				if got := testutil.ToFloat64(g.m.UpstreamErrors.WithLabelValues("http", tt.kind)); got != 1 {
					t.Errorf("upstream_errors_total{kind=%q}: got %v, want 1", tt.kind, got)
				}
			}
			if err := g.stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
	goleak.VerifyNone(t, ignore)
}

func TestFaultsTLSUpstream(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	hello := clientHello(t, "www.filed.cn")
	tests := []struct {
		name     string
		upstream func(t *testing.T) string
		want     string // bytes the client reads before the close
		kind     string
	}{
		{"blackholed", blackholeAddr, "", "timeout"},
		{"reset at once", func(t *testing.T) string { return resetAfter(t, "") }, "", ""},
		{"reset mid-stream", func(t *testing.T) string { return resetAfter(t, "\x16\x03\x03\x00\x05part") }, "\x16\x03\x03\x00\x05part", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tlsListener(tt.upstream(t))
			cfg.Timeouts.Dial = 300 * time.Millisecond
			g := startGateway(t, cfg, filedOnly)
			c, err := net.Dial("tcp", g.addr("tls"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(hello)
			got, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read: %v, want the connection closed", err)
			}
			if string(got) != tt.want {
				t.Fatalf("got % x, want % x (and never an access_denied alert)", got, tt.want)
			}
			if tt.kind != "" {
				if n := testutil.ToFloat64(g.m.UpstreamErrors.WithLabelValues("tls", tt.kind)); n != 1 {
					t.Errorf("upstream_errors_total{kind=%q}: got %v, want 1", tt.kind, n)
				}
			}
			waitFor(t, "no open connections", func() bool {
				return testutil.ToFloat64(g.m.ActiveConnections.WithLabelValues("tls")) == 0
			})
			if err := g.stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
	goleak.VerifyNone(t, ignore)
}
