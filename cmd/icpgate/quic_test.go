package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// countingPC counts the sources the HTTP/3 origin receives datagrams
// from: the gateway opens one socket per passing flow, so a new source is
// a new flow reaching the origin.
type countingPC struct {
	net.PacketConn
	sources sync.Map
	n       atomic.Int64
}

func (c *countingPC) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		if _, seen := c.sources.LoadOrStore(a.String(), true); !seen {
			c.n.Add(1)
		}
	}
	return n, a, err
}

// TestServeQUIC runs `icpgate serve` with a quic listener (on the tls
// listener's port number) in front of a quic-go HTTP/3 origin: a filed
// name is served over HTTP/3, an unfiled one is refused at once with
// CRYPTO_ERROR access_denied and never reaches the origin.
func TestServeQUIC(t *testing.T) {
	q := startQUICGateway(t, nil)
	pc, get := q.origin, func(host string, handshake time.Duration) (string, error) { return q.get(host, handshake, nil) }

	body, err := get("www.filed.cn", 5*time.Second)
	if err != nil {
		t.Fatalf("filed: %v", err)
	}
	if want := "origin saw www.filed.cn over HTTP/3.0"; body != want {
		t.Errorf("filed: got %q, want %q", body, want)
	}
	before := pc.n.Load()
	if before == 0 {
		t.Error("the origin saw no gateway flow for the filed name")
	}
	start := time.Now()
	_, err = get("unfiled.cn", 20*time.Second)
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != 0x131 || !te.Remote {
		t.Fatalf("unfiled: got error %v, want a CONNECTION_CLOSE with 0x131 from the gateway", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("unfiled: refusal took %v, want well under the 20s handshake timeout", took)
	}
	if got := pc.n.Load(); got != before {
		t.Errorf("new sources at the origin during the unfiled attempt: got %d, want 0", got-before)
	}
}

// quicGateway is `icpgate serve` with a quic listener (on the tls
// listener's port number, as in production: :443 for both) in front of a
// quic-go HTTP/3 origin that counts the flows it sees.
type quicGateway struct {
	origin *countingPC
	addr   string // the gateway's quic listener
}

// startQUICGateway starts the origin (speaking versions; nil: quic-go's
// default) and the gateway; both stop at the end of the test.
func startQUICGateway(t *testing.T, versions []quic.Version) *quicGateway {
	t.Helper()
	cert, err := selfSigned([]string{"filed.cn", "*.filed.cn", "unfiled.cn"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc := &countingPC{PacketConn: c}
	h3 := &http3.Server{
		TLSConfig:  http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		QUICConfig: &quic.Config{Versions: versions},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "origin saw %s over %s", r.Host, r.Proto)
		}),
	}
	served := make(chan struct{})
	go func() { defer close(served); h3.Serve(pc) }()
	t.Cleanup(func() { h3.Close(); c.Close(); <-served })
	port := freeTCPUDPPort(t)
	o := startOrigin(t)
	path := writeConfig(t, t.TempDir(), o, "") // copies the test registry
	writeQUICConfig(t, path, o, port, c.LocalAddr().String())
	g := runServe(t, path)
	return &quicGateway{origin: pc, addr: g.ProxyAddr("quic").String()}
}

// get makes an HTTP/3 request for host through the gateway, offering
// versions (nil: quic-go's default), and returns the body.
func (q *quicGateway) get(host string, handshake time.Duration, versions []quic.Version) (string, error) {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: host},
		QUICConfig:      &quic.Config{HandshakeIdleTimeout: handshake, Versions: versions},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddr(ctx, q.addr, tc, qc)
		},
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), handshake+10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// writeQUICConfig rewrites the config at path with a tls and a quic
// listener on the same port number.
func writeQUICConfig(t *testing.T, path string, o *origin, port int, quicUpstream string) {
	t.Helper()
	cfg := fmt.Sprintf(`node: test-node
registry:
  file: registry.jsonl
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
  - {name: tls, protocol: tls, address: "127.0.0.1:%d", upstream: %q}
  - {name: quic, protocol: quic, address: "127.0.0.1:%d", upstream: %q}
admin:
  address: "127.0.0.1:0"
policy:
  quic_block: close
timeouts:
  drain: 2s
`, o.http.Addr().String(), port, o.tls.Addr().String(), port, quicUpstream)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// freeTCPUDPPort returns a port number free for both TCP and UDP on
// 127.0.0.1, below the kernel's ephemeral range (32768 and up by default):
// a port from ":0" is ephemeral, and between closing it and the gateway
// binding it an outgoing connection elsewhere may take it.
func freeTCPUDPPort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 21000 + rand.IntN(5000) // clear of bench/'s fixed ports
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		return port
	}
	t.Fatal("no free port for TCP and UDP in 21000-26000")
	return 0
}
