package proxy

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icpgate/icpgate/sni"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
	"golang.org/x/crypto/cryptobyte"
)

// countingPacketConn counts the datagrams an upstream QUIC server
// receives, so a test can prove a blocked client never reached it.
type countingPacketConn struct {
	net.PacketConn
	datagrams atomic.Int64
}

func (c *countingPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.datagrams.Add(1)
	}
	return n, a, err
}

// h3Upstream is a real quic-go HTTP/3 server standing in for a hosted site.
type h3Upstream struct {
	pc   *countingPacketConn
	srv  *http3.Server
	done chan struct{}
}

func newH3Upstream(t *testing.T) *h3Upstream {
	t.Helper()
	cert, _ := testCert(t)
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &h3Upstream{pc: &countingPacketConn{PacketConn: c}, done: make(chan struct{})}
	u.srv = &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello %s over %s", r.Host, r.Proto)
		}),
	}
	go func() {
		defer close(u.done)
		u.srv.Serve(u.pc)
	}()
	t.Cleanup(func() {
		u.srv.Close()
		c.Close()
		<-u.done
	})
	return u
}

// startQUICGateway runs a Server with one quic listener in front of up.
func startQUICGateway(t *testing.T, up string, policy Policy, limits Limits) (*Server, *Metrics, string) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := NewServer(Config{
		Listeners: []ListenerConfig{{Name: "quic", Protocol: "quic", Address: "127.0.0.1:0", Upstream: up}},
		Policy:    policy,
		Limits:    limits,
		Timeouts:  Timeouts{Hello: 2 * time.Second, Drain: time.Second},
	}, mapDecider{filed: map[string]string{"filed.cn": ""}}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, m, srv.Addr("quic").String()
}

// h3Get fetches https://host/ from the gateway at addr over HTTP/3.
func h3Get(t *testing.T, addr, host string, handshake time.Duration) (string, error) {
	t.Helper()
	_, pool := testCert(t)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host},
		QUICConfig:      &quic.Config{HandshakeIdleTimeout: handshake},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddr(ctx, addr, tlsCfg, cfg)
		},
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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

// TestQUICPassAndBlock runs a quic-go HTTP/3 client through the gateway to
// a quic-go HTTP/3 upstream: a filed name gets its page, an unfiled one is
// refused (at once with CONNECTION_CLOSE, or silently with drop), and the
// upstream never sees a datagram of a refused connection.
func TestQUICPassAndBlock(t *testing.T) {
	tests := []struct {
		name      string
		block     string
		host      string
		handshake time.Duration
		wantBody  string
		wantCode  quic.TransportErrorCode // refused with close
		wantIdle  bool                    // refused with drop: the client times out
		verdict   string
		reason    string
	}{
		{name: "filed passes", host: "www.filed.cn", handshake: 5 * time.Second,
			wantBody: "hello www.filed.cn over HTTP/3.0", verdict: "pass", reason: "filed"},
		{name: "unfiled closed", block: "close", host: "unfiled.cn", handshake: 20 * time.Second,
			wantCode: quic.TransportErrorCode(0x131), verdict: "block", reason: "unfiled"},
		{name: "unfiled closed by default", host: "other.cn", handshake: 20 * time.Second,
			wantCode: quic.TransportErrorCode(0x131), verdict: "block", reason: "unfiled"},
		{name: "unfiled dropped", block: "drop", host: "unfiled.cn", handshake: time.Second,
			wantIdle: true, verdict: "block", reason: "unfiled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newH3Upstream(t)
			_, m, addr := startQUICGateway(t, up.pc.LocalAddr().String(), Policy{QUICBlock: tt.block}, Limits{})
			start := time.Now()
			body, err := h3Get(t, addr, tt.host, tt.handshake)
			took := time.Since(start)
			switch {
			case tt.wantBody != "":
				if err != nil {
					t.Fatalf("GET: %v (%s)", err, quicDropSummary(m))
				}
				if body != tt.wantBody {
					t.Errorf("got %q, want %q", body, tt.wantBody)
				}
			case tt.wantIdle:
				var idle *quic.IdleTimeoutError
				if !errors.As(err, &idle) {
					t.Fatalf("got error %v, want a handshake idle timeout", err)
				}
			default:
				var te *quic.TransportError
				if !errors.As(err, &te) {
					t.Fatalf("got error %v (%T), want a transport close", err, err)
				}
				if te.ErrorCode != tt.wantCode || !te.Remote {
					t.Errorf("got code %#x remote %v, want %#x from the peer", uint64(te.ErrorCode), te.Remote, uint64(tt.wantCode))
				}
				// The handshake timeout is 20 s: an answer within a few
				// seconds can only be the CONNECTION_CLOSE.
				if took > 5*time.Second {
					t.Errorf("refusal took %v, want well under the %v handshake timeout", took, tt.handshake)
				}
			}
			if got := testutil.ToFloat64(m.Decisions.WithLabelValues("quic", tt.verdict, tt.reason)); got != 1 {
				t.Errorf("decisions{quic,%s,%s}: got %v, want 1", tt.verdict, tt.reason, got)
			}
			if tt.verdict == "block" {
				if got := up.pc.datagrams.Load(); got != 0 {
					t.Errorf("upstream datagrams: got %d, want 0", got)
				}
				if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropBlocked)); got < 1 {
					t.Errorf("blocked drops: got %v, want at least 1", got)
				}
			} else if up.pc.datagrams.Load() == 0 {
				t.Error("upstream saw no datagrams for a passing flow")
			}
			if got := testutil.ToFloat64(m.QUICFlows.WithLabelValues("quic")); got != 1 {
				t.Errorf("flows: got %v, want 1", got)
			}
		})
	}
}

// TestQUICFlowLimit checks that a full flow table (or a client IP at its
// cap) refuses new connections while the open one keeps working, and
// counts the drops.
func TestQUICFlowLimit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		limits Limits
		reason string
	}{
		{"flows", Limits{MaxQUICFlows: 1}, quicDropFlowLimit},
		{"per IP", Limits{MaxConnsPerIP: 1}, quicDropIPLimit},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newH3Upstream(t)
			_, m, addr := startQUICGateway(t, up.pc.LocalAddr().String(), Policy{}, tt.limits)
			_, pool := testCert(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tlsConf := &tls.Config{RootCAs: pool, ServerName: "filed.cn", NextProtos: []string{http3.NextProtoH3}}
			c1, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("first connection: %v", err)
			}
			defer c1.CloseWithError(0, "")
			_, err = quic.DialAddr(ctx, addr, tlsConf, &quic.Config{HandshakeIdleTimeout: 500 * time.Millisecond})
			var idle *quic.IdleTimeoutError
			if !errors.As(err, &idle) {
				t.Fatalf("second connection: got error %v, want a handshake idle timeout", err)
			}
			if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", tt.reason)); got < 1 {
				t.Errorf("%s drops: got %v, want at least 1", tt.reason, got)
			}
			if err := c1.Context().Err(); err != nil {
				t.Errorf("first connection ended: %v", err)
			}
		})
	}
}

// TestQUICNotInitial checks datagrams that cannot start a flow are dropped
// and counted by reason, and that nothing reaches the upstream.
func TestQUICNotInitial(t *testing.T) {
	up, m, c := quicGatewayConn(t)
	tests := []struct {
		name   string
		b      []byte
		reason string
	}{
		{"short header", append([]byte{0x40}, make([]byte, 40)...), quicDropNoFlow},
		{"version negotiation", append([]byte{0xc0, 0, 0, 0, 0, 0, 0}, make([]byte, 1200)...), quicDropVersion},
		{"small initial", append([]byte{0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0}, make([]byte, 100)...), quicDropSmall},
		{"garbage initial", append([]byte{0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0xd0}, make([]byte, 1200)...), quicDropMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", tt.reason))
			if _, err := c.Write(tt.b); err != nil {
				t.Fatal(err)
			}
			waitQUICDrop(t, m, tt.reason, before)
		})
	}
	if got := up.pc.datagrams.Load(); got != 0 {
		t.Errorf("upstream datagrams: got %d, want 0", got)
	}
}

func TestQUICConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{Listeners: []ListenerConfig{
			{Name: "tls", Protocol: "tls", Address: "127.0.0.1:8443", Upstream: "127.0.0.1:1"},
			{Name: "quic", Protocol: "quic", Address: "127.0.0.1:8443", Upstream: "127.0.0.1:1"},
		}}
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" when valid
	}{
		{"quic shares the tls port", func(*Config) {}, ""},
		{"quic_block drop", func(c *Config) { c.Policy.QUICBlock = "drop" }, ""},
		{"quic_block bad", func(c *Config) { c.Policy.QUICBlock = "reset" }, "policy.quic_block"},
		{"two quic listeners on one port", func(c *Config) { c.Listeners[0].Protocol = "quic" }, "listeners[1].address"},
		{"negative quic idle", func(c *Config) { c.Timeouts.QUICIdle = -1 }, "timeouts.quic_idle"},
		{"negative flow cap", func(c *Config) { c.Limits.MaxQUICFlows = -1 }, "limits.max_quic_flows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.edit(&cfg)
			err := validate(cfg)
			var got string
			if err != nil {
				got = err.Error()
			}
			if tt.field == "" {
				if err != nil {
					t.Errorf("got %q, want no error", got)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !containsField(got, tt.field) {
				t.Errorf("got %q, want an ErrInvalidConfig naming %q", got, tt.field)
			}
		})
	}
}

func containsField(msg, field string) bool {
	for i := 0; i+len(field) <= len(msg); i++ {
		if msg[i:i+len(field)] == field {
			return true
		}
	}
	return false
}

// quicGatewayConn starts a gateway with a quic listener in front of a
// quic-go upstream and returns a UDP socket connected to the gateway.
func quicGatewayConn(t *testing.T) (*h3Upstream, *Metrics, net.Conn) {
	t.Helper()
	up := newH3Upstream(t)
	_, m, addr := startQUICGateway(t, up.pc.LocalAddr().String(), Policy{}, Limits{})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return up, m, c
}

// waitQUICDrop waits until the drops of reason exceed before.
func waitQUICDrop(t *testing.T, m *Metrics, reason string, before float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", reason)) == before {
		if time.Now().After(deadline) {
			t.Fatalf("drops{%s} did not grow (%s)", reason, quicDropSummary(m))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// quicDropSummary lists the non-zero drop counters, for failure messages.
func quicDropSummary(m *Metrics) string {
	var out string
	for _, r := range quicDropReasons {
		if v := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", r)); v > 0 {
			out += fmt.Sprintf("%s=%v ", r, v)
		}
	}
	return "drops: " + out
}

// echConfigList builds an ECHConfigList for a fresh X25519 key with the
// given public (outer) name, as crypto/tls's TestECH does.
func echConfigList(t *testing.T, publicName string) []byte {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0xfe0d)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(7)       // config id
			b.AddUint16(0x0020) // DHKEM(X25519, HKDF-SHA256)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.PublicKey().Bytes()) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(0x0001) // HKDF-SHA256
				b.AddUint16(0x0001) // AES-128-GCM
			})
			b.AddUint8(32)
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(publicName)) })
			b.AddUint16(0) // extensions
		})
	})
	return b.BytesOrPanic()
}

// TestQUICECH runs Go's ECH client (through quic-go) against the gateway:
// the hello is counted as carrying ECH and decided on its outer name,
// whatever the encrypted inner name is.
func TestQUICECH(t *testing.T) {
	tests := []struct {
		name, outer, inner string
		verdict, reason    string
	}{
		{"unfiled outer name is blocked", "unfiled.cn", "www.filed.cn", "block", "unfiled"},
		{"filed outer name passes", "filed.cn", "unfiled.cn", "pass", "filed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newH3Upstream(t)
			_, m, addr := startQUICGateway(t, up.pc.LocalAddr().String(), Policy{}, Limits{})
			_, pool := testCert(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := quic.DialAddr(ctx, addr, &tls.Config{
				RootCAs: pool, ServerName: tt.inner, NextProtos: []string{http3.NextProtoH3},
				EncryptedClientHelloConfigList: echConfigList(t, tt.outer),
			}, &quic.Config{HandshakeIdleTimeout: 3 * time.Second})
			if err == nil {
				c.CloseWithError(0, "")
				t.Fatal("handshake succeeded, want a failure (block, or an upstream without the ECH key)")
			}
			if got := testutil.ToFloat64(m.ECHHellos.WithLabelValues("quic")); got != 1 {
				t.Errorf("ech hellos: got %v, want 1", got)
			}
			if got := testutil.ToFloat64(m.Decisions.WithLabelValues("quic", tt.verdict, tt.reason)); got != 1 {
				t.Errorf("decisions{quic,%s,%s}: got %v, want 1 (%v)", tt.verdict, tt.reason, got, err)
			}
			if n := up.pc.datagrams.Load(); (tt.verdict == "pass") != (n > 0) {
				t.Errorf("upstream datagrams: got %d for a %s", n, tt.verdict)
			}
		})
	}
}

// TestQUICShutdown checks Serve ends open QUIC flows and waits for them.
func TestQUICShutdown(t *testing.T) {
	up := newH3Upstream(t)
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := NewServer(Config{
		Listeners: []ListenerConfig{{Name: "quic", Protocol: "quic", Address: "127.0.0.1:0", Upstream: up.pc.LocalAddr().String()}},
		Timeouts:  Timeouts{Drain: time.Second},
	}, mapDecider{filed: map[string]string{"filed.cn": ""}}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	_, pool := testCert(t)
	c, err := quic.DialAddr(context.Background(), srv.Addr("quic").String(),
		&tls.Config{RootCAs: pool, ServerName: "filed.cn", NextProtos: []string{http3.NextProtoH3}}, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	if got := testutil.ToFloat64(m.QUICActiveFlows.WithLabelValues("quic")); got != 1 {
		t.Errorf("active flows: got %v, want 1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got := testutil.ToFloat64(m.QUICActiveFlows.WithLabelValues("quic")); got != 0 {
		t.Errorf("active flows after Serve: got %v, want 0", got)
	}
	for _, c := range []prometheus.Collector{m.QUICFlows, m.QUICActiveFlows, m.QUICDrops, m.ECHHellos} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("metric %s: %s", p.Metric, p.Text)
		}
	}
}

// reorderRelay is a UDP relay between one client and the gateway that
// holds the client's first datagram and sends it after the second, as
// networks (and Chrome's split hellos) deliver them.
type reorderRelay struct {
	pc        net.PacketConn
	held      []byte
	reordered atomic.Bool
}

func newReorderRelay(t *testing.T, gateway string) *reorderRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.Dial("udp", gateway)
	if err != nil {
		t.Fatal(err)
	}
	r := &reorderRelay{pc: pc}
	var client atomic.Pointer[net.Addr]
	done := make(chan struct{}, 2)
	go func() { // client -> gateway
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65535)
		n := 0
		for {
			k, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			client.Store(&a)
			n++
			switch n {
			case 1:
				r.held = append([]byte(nil), buf[:k]...)
			case 2:
				up.Write(buf[:k])
				up.Write(r.held)
				r.reordered.Store(true)
			default:
				up.Write(buf[:k])
			}
		}
	}()
	go func() { // gateway -> client
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65535)
		for {
			k, err := up.Read(buf)
			if err != nil {
				return
			}
			if a := client.Load(); a != nil {
				pc.WriteTo(buf[:k], *a)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		up.Close()
		<-done
		<-done
	})
	return r
}

// TestQUICReorderedHello sends quic-go's hello (two datagrams: its
// post-quantum key share does not fit in one) to the gateway in reverse
// order: the gateway reassembles it and the request succeeds.
func TestQUICReorderedHello(t *testing.T) {
	up := newH3Upstream(t)
	_, m, addr := startQUICGateway(t, up.pc.LocalAddr().String(), Policy{}, Limits{})
	relay := newReorderRelay(t, addr)
	body, err := h3Get(t, relay.pc.LocalAddr().String(), "www.filed.cn", 5*time.Second)
	if err != nil {
		t.Fatalf("GET: %v (%s)", err, quicDropSummary(m))
	}
	if want := "hello www.filed.cn over HTTP/3.0"; body != want {
		t.Errorf("got %q, want %q", body, want)
	}
	if !relay.reordered.Load() {
		t.Error("the relay did not reorder the first two datagrams")
	}
	if got := testutil.ToFloat64(m.QUICFlows.WithLabelValues("quic")); got != 1 {
		t.Errorf("flows: got %v, want 1", got)
	}
}

// captureQUICHello returns the datagrams a quic-go client sends before it
// hears from the server: its Initial packets with the ClientHello.
func captureQUICHello(tb testing.TB, host string) [][]byte {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		quic.DialAddr(ctx, pc.LocalAddr().String(), &tls.Config{ServerName: host, NextProtos: []string{http3.NextProtoH3}},
			&quic.Config{HandshakeIdleTimeout: 2 * time.Second})
	}()
	var out [][]byte
	buf := make([]byte, 65535)
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	var dcid string
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		h, ok := sni.ParseQUICHeader(buf[:n])
		if !ok || !h.Initial || (dcid != "" && string(h.DCID) != dcid) {
			continue
		}
		dcid = string(h.DCID)
		out = append(out, append([]byte(nil), buf[:n]...))
		if _, err := sni.ParseInitial(bytes.Join(out, nil)); err == nil || len(out) > 4 {
			break // the hello is complete (ParseInitial sees the packets coalesced)
		}
	}
	cancel()
	<-done
	if len(out) == 0 {
		tb.Fatal("captured no Initial")
	}
	return out
}

// BenchmarkQUICHandle measures the gateway's work for one new QUIC
// connection (quic-go's hello, two datagrams): flow setup, decryption,
// reassembly, decision, and for a block the CONNECTION_CLOSE sent.
func BenchmarkQUICHandle(b *testing.B) {
	for _, bc := range []struct {
		name, host string
	}{{"blocked", "unfiled.cn"}} {
		b.Run(bc.name, func(b *testing.B) {
			dgs := captureQUICHello(b, bc.host)
			sink, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			q, m := newTestQUICListener(b, Limits{MaxQUICFlows: 1 << 30, MaxConnsPerIP: 1 << 30})
			base := sink.LocalAddr().(*net.UDPAddr).AddrPort()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// Each iteration is another client (the port varies), so
				// every datagram pair starts a new flow; the table is
				// emptied before a port comes round again.
				client := netip.AddrPortFrom(base.Addr(), uint16(10000+i%1000))
				i++
				for _, d := range dgs {
					q.handle(d, client)
				}
				if i%1000 == 0 {
					b.StopTimer()
					q.closeAll()
					b.StartTimer()
				}
			}
			b.StopTimer()
			if got := testutil.ToFloat64(m.Decisions.WithLabelValues("quic", "block", "unfiled")); got < 1 {
				b.Fatalf("no block decisions (drops: %s)", quicDropSummary(m))
			}
		})
	}
}

// newTestQUICListener returns a quic listener whose datagrams a test hands
// to handle itself, without its read loop, janitor or flow goroutines.
func newTestQUICListener(tb testing.TB, limits Limits) (*quicListener, *Metrics) {
	tb.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := NewServer(Config{Listeners: []ListenerConfig{{Name: "quic", Protocol: "quic", Address: "127.0.0.1:0"}},
		Limits: limits}, mapDecider{filed: map[string]string{"filed.cn": ""}}, m, nil)
	if err != nil {
		tb.Fatal(err)
	}
	l := srv.lns["quic"]
	l.pc = pc
	q := &quicListener{s: srv, l: l, pc: pc, log: srv.log, flowsCreated: m.QUICFlows.WithLabelValues("quic"),
		active: m.QUICActiveFlows.WithLabelValues("quic"), drops: map[string]prometheus.Counter{},
		ech: m.ECHHellos.WithLabelValues("quic"), decisions: newDecisionCounter(m.Decisions, "quic", nil),
		flows: map[flowKey]*quicFlow{}, byAddr: map[netip.AddrPort]*quicFlow{}, perIP: map[netip.Addr]int{}}
	for _, r := range quicDropReasons {
		q.drops[r] = m.QUICDrops.WithLabelValues("quic", r)
	}
	return q, m
}

// zeroRTT returns a datagram of one 0-RTT packet of n bytes to dcid (its
// payload is not protected: the gateway never opens 0-RTT packets).
func zeroRTT(dcid []byte, n int) []byte {
	b := []byte{0xd3} // long header, type 0-RTT in v1
	b = binary.BigEndian.AppendUint32(b, sni.QUICv1)
	b = append(append(b, byte(len(dcid))), dcid...)
	b = append(b, 0) // no SCID
	l := n - len(b) - 2
	b = append(b, 0x40|byte(l>>8), byte(l))
	return append(b, make([]byte, l)...)
}

// flowState returns the state of the flow of client and dcid, or -1.
func flowState(q *quicListener, client netip.AddrPort, dcid []byte) int {
	q.mu.Lock()
	f := q.flows[flowKey{client, makeCID(dcid)}]
	q.mu.Unlock()
	if f == nil {
		return -1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// TestQUICPendingFlowCaps checks what one undecided flow may buffer: 0-RTT
// datagrams past its byte cap and datagrams over quicMaxPendingDatagram
// are dropped while the flow goes on; an Initial past the cap, or CRYPTO
// data past quicMaxHelloBytes, refuses the flow.
func TestQUICPendingFlowCaps(t *testing.T) {
	hello := quicClientHello(t, "www.filed.cn")
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	client := netip.MustParseAddrPort("192.0.2.1:4433")
	start := clientInitial(t, dcid, 0, cryptoFrame(hello, 0, 100)) // the hello's end never comes
	t.Run("0-RTT past the cap is dropped", func(t *testing.T) {
		q, m := newTestQUICListener(t, Limits{})
		q.handle(start, client)
		for range 2 * quicMaxPendingBytes / 1400 {
			q.handle(zeroRTT(dcid, 1400), client)
		}
		q.handle(zeroRTT(dcid, 64<<10), client)
		f := q.flows[flowKey{client, makeCID(dcid)}]
		if got := flowState(q, client, dcid); got != flowPending {
			t.Fatalf("state: got %d, want pending (%s)", got, quicDropSummary(m))
		}
		if f.pendingBytes > quicMaxPendingBytes || len(f.pending) > quicMaxPending {
			t.Errorf("buffered %d datagrams, %d bytes; want at most %d, %d", len(f.pending), f.pendingBytes, quicMaxPending, quicMaxPendingBytes)
		}
		if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropPendingLimit)); got < 1 {
			t.Errorf("pending_limit drops: got %v, want at least 1", got)
		}
		if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropTooLarge)); got != 1 {
			t.Errorf("too_large drops: got %v, want 1", got)
		}
		if got, want := q.buffered.Load(), int64(f.pendingBytes+f.in.Footprint()); got != want {
			t.Errorf("listener buffered %d bytes, want the flow's %d", got, want)
		}
		// An Initial past the cap would be read but could not be
		// forwarded: the flow is refused instead.
		q.handle(clientInitial(t, dcid, 1, cryptoFrame(hello, 100, 200)), client)
		if got := flowState(q, client, dcid); got != flowBlocked {
			t.Errorf("state after an Initial past the cap: got %d, want blocked", got)
		}
		if got := q.buffered.Load(); got != 0 {
			t.Errorf("listener buffered %d bytes after the refusal, want 0", got)
		}
	})
	t.Run("CRYPTO past the hello cap refuses the flow", func(t *testing.T) {
		q, m := newTestQUICListener(t, Limits{})
		q.handle(clientInitial(t, dcid, 0, cryptoFrame(make([]byte, quicMaxHelloBytes+1), quicMaxHelloBytes-100, quicMaxHelloBytes+1)), client)
		if got := flowState(q, client, dcid); got != flowBlocked {
			t.Errorf("state: got %d, want blocked", got)
		}
		if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropTooLarge)); got != 1 {
			t.Errorf("too_large drops: got %v, want 1", got)
		}
	})
	t.Run("a first datagram over the size cap starts no flow", func(t *testing.T) {
		q, m := newTestQUICListener(t, Limits{})
		q.handle(append(bytes.Clone(start), make([]byte, quicMaxPendingDatagram)...), client)
		if got := flowState(q, client, dcid); got != -1 {
			t.Errorf("state: got %d, want no flow", got)
		}
		if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropTooLarge)); got != 1 {
			t.Errorf("too_large drops: got %v, want 1", got)
		}
	})
}

// TestQUICPendingBudget starts undecided flows, each holding one Initial
// and its reassembly state, on a listener whose budget holds a few of them:
// the listener never holds more than its budget, the flows ended are the
// oldest, each counted under pending_budget, and the newest go on.
func TestQUICPendingBudget(t *testing.T) {
	const budget, flows = 32 << 10, 40
	hello := quicClientHello(t, "www.filed.cn")
	q, m := newTestQUICListener(t, Limits{MaxQUICPendingBytes: budget})
	var clients []netip.AddrPort
	var dcids [][]byte
	for k := range flows {
		client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+k))
		dcid := []byte{1, 2, 3, 4, 5, 6, 7, byte(k)}
		q.handle(clientInitial(t, dcid, 0, cryptoFrame(hello, 0, 100)), client)
		if got := q.buffered.Load(); got > budget {
			t.Fatalf("after flow %d: buffered %d bytes, over the %d budget", k, got, budget)
		}
		clients, dcids = append(clients, client), append(dcids, dcid)
	}
	evicted := 0
	for k := range flows {
		switch flowState(q, clients[k], dcids[k]) {
		case flowBlocked:
			if evicted != k {
				t.Fatalf("flow %d was ended while the older flow %d goes on", k, evicted)
			}
			evicted++
		case flowPending:
		default:
			t.Fatalf("flow %d: state %d", k, flowState(q, clients[k], dcids[k]))
		}
	}
	if evicted == 0 || evicted == flows {
		t.Fatalf("%d of %d flows ended, want the oldest but not all", evicted, flows)
	}
	if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropEvicted)); got != float64(evicted) {
		t.Errorf("pending_budget drops: got %v, want %d (one datagram each)", got, evicted)
	}
	// What the listener counts is what its undecided flows hold.
	var held int64
	for k := evicted; k < flows; k++ {
		f := q.flows[flowKey{clients[k], makeCID(dcids[k])}]
		f.mu.Lock()
		held += int64(f.pendingBytes + f.in.Footprint())
		f.mu.Unlock()
	}
	if got := q.buffered.Load(); got != held {
		t.Errorf("listener buffered %d bytes, its flows hold %d", got, held)
	}
	q.closeAll()
	if got := q.buffered.Load(); got != 0 || q.oldest != nil || q.newest != nil {
		t.Errorf("after closeAll: buffered %d, list %p %p; want 0 and empty", got, q.oldest, q.newest)
	}
}

// TestQUICHelloTimeout sends only the first of quic-go's two hello
// datagrams: the pending flow is dropped after Timeouts.Hello, counted,
// and nothing reaches the upstream.
func TestQUICHelloTimeout(t *testing.T) {
	dgs := captureQUICHello(t, "www.filed.cn")
	if len(dgs) < 2 {
		t.Fatalf("quic-go's hello fits in %d datagram, want 2 (post-quantum key share)", len(dgs))
	}
	up, m, c := quicGatewayConn(t)
	if _, err := c.Write(dgs[0]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropHelloTimeout)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending flow not expired (%s)", quicDropSummary(m))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(m.QUICActiveFlows.WithLabelValues("quic")); got != 0 {
		t.Errorf("active flows: got %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.QUICFlows.WithLabelValues("quic")); got != 1 {
		t.Errorf("flows: got %v, want 1", got)
	}
	if got := up.pc.datagrams.Load(); got != 0 {
		t.Errorf("upstream datagrams: got %d, want 0", got)
	}
}

// TestQUICNoUpstream checks a passing flow with nowhere to go is dropped
// silently (fail closed) and counted.
func TestQUICNoUpstream(t *testing.T) {
	dgs := captureQUICHello(t, "www.filed.cn")
	_, m, addr := startQUICGateway(t, "", Policy{}, Limits{})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range dgs {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.UpstreamErrors.WithLabelValues("quic", "no_upstream")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no no_upstream error counted (%s)", quicDropSummary(m))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("quic", "pass", "filed")); got != 1 {
		t.Errorf("decisions{quic,pass,filed}: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropUpstream)); got != float64(len(dgs)) {
		t.Errorf("upstream drops: got %v, want %d", got, len(dgs))
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 2048)); err == nil {
		t.Errorf("got a %d-byte answer, want silence", n)
	}
}

// clientInitial builds a datagram of client Initial packets (QUIC v1) for
// the connection whose first DCID is dcid, one packet per payload of
// frames numbered from pn, padded to 1200 bytes. It lets a test send
// CRYPTO frames no real client would.
func clientInitial(t testing.TB, dcid []byte, pn int, payloads ...[]byte) []byte {
	t.Helper()
	var out []byte
	for k, p := range payloads {
		padTo := 0
		if k == len(payloads)-1 {
			padTo = 1200
		}
		var err error
		if out, err = sni.AppendClientInitial(out, sni.QUICv1, dcid, []byte{9, 9, 9, 9}, uint32(pn+k), p, padTo); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// cryptoFrame returns a CRYPTO frame carrying msg[from:to].
func cryptoFrame(msg []byte, from, to int) []byte {
	f := []byte{0x06}
	f = quicvarint.Append(f, uint64(from))
	f = quicvarint.Append(f, uint64(to-from))
	return append(f, msg[from:to]...)
}

// quicClientHello returns a ClientHello as Go's QUIC TLS client writes it
// for name.
func quicClientHello(t *testing.T, name string) []byte {
	t.Helper()
	qc := tls.QUICClient(&tls.QUICConfig{TLSConfig: &tls.Config{ServerName: name, NextProtos: []string{http3.NextProtoH3},
		MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}}}) // small enough for one datagram
	qc.SetTransportParameters([]byte{0x04, 0x04, 0x80, 0x10, 0x00, 0x00}) // initial_max_data
	if err := qc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer qc.Close()
	for e := qc.NextEvent(); e.Kind != tls.QUICNoEvent; e = qc.NextEvent() {
		if e.Kind == tls.QUICWriteData && e.Level == tls.QUICEncryptionLevelInitial {
			return bytes.Clone(e.Data)
		}
	}
	t.Fatal("no ClientHello written")
	return nil
}

// TestQUICCryptoConflict sends, through a real socket, the start of a
// hello for unfiled.cn and then a whole hello for a.filed.cn at the same
// CRYPTO offsets. A quic-go origin keeps the bytes it got first, so a
// gateway that let the later copy win passed a connection the origin then
// served as unfiled.cn. The flow must be refused, counted as
// crypto_conflict, and no datagram may reach the upstream.
func TestQUICCryptoConflict(t *testing.T) {
	unfiled := quicClientHello(t, "unfiled.cn")
	name := bytes.Index(unfiled, []byte("unfiled.cn"))
	filed := bytes.Clone(unfiled)
	copy(filed[name:], "a.filed.cn") // the same hello but for the name
	cut := name + len("unfiled.cn")
	first, second := cryptoFrame(unfiled, 0, cut), cryptoFrame(filed, 0, len(filed))
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	tests := []struct {
		name      string
		datagrams [][]byte
	}{
		{"one packet, two frames", [][]byte{clientInitial(t, dcid, 0, append(bytes.Clone(first), second...))}},
		{"two coalesced packets", [][]byte{clientInitial(t, dcid, 0, first, second)}},
		{"two datagrams", [][]byte{clientInitial(t, dcid, 0, first), clientInitial(t, dcid, 1, second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, m, c := quicGatewayConn(t)
			for _, d := range tt.datagrams {
				if _, err := c.Write(d); err != nil {
					t.Fatal(err)
				}
			}
			waitQUICDrop(t, m, quicDropConflict, 0)
			if got := testutil.ToFloat64(m.Decisions.WithLabelValues("quic", "pass", "filed")); got != 0 {
				t.Errorf("decisions{quic,pass,filed}: got %v, want 0", got)
			}
			// A datagram to a refused flow is dropped as blocked; once it is
			// counted, everything sent before it has been handled.
			if _, err := c.Write(tt.datagrams[0]); err != nil {
				t.Fatal(err)
			}
			waitQUICDrop(t, m, quicDropBlocked, 0)
			if got := up.pc.datagrams.Load(); got != 0 {
				t.Errorf("upstream datagrams: got %d, want 0", got)
			}
		})
	}
}

// namedOrigin is a quic-go server that records the server name of every
// ClientHello its TLS stack reads, so a test can tell which hello the
// origin served a connection on.
type namedOrigin struct {
	pc    *countingPacketConn
	mu    sync.Mutex
	names []string
}

// newNamedOrigin starts a namedOrigin; configure may change its transport
// and TLS config before it listens.
func newNamedOrigin(t *testing.T, configure func(*quic.Transport, *tls.Config)) *namedOrigin {
	t.Helper()
	cert, _ := testCert(t)
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &namedOrigin{pc: &countingPacketConn{PacketConn: c}}
	tr := &quic.Transport{Conn: o.pc}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"icpgate-test"},
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			o.mu.Lock()
			o.names = append(o.names, chi.ServerName)
			o.mu.Unlock()
			return nil, nil
		}}
	if configure != nil {
		configure(tr, tc)
	}
	ln, err := tr.Listen(tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				<-conn.Context().Done()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		tr.Close()
		<-done
	})
	return o
}

// namedOriginConn starts a gateway with a quic listener in front of a
// namedOrigin and returns a UDP socket connected to the gateway.
func namedOriginConn(t *testing.T) (*namedOrigin, *Metrics, net.Conn) {
	t.Helper()
	origin := newNamedOrigin(t, nil)
	_, m, addr := startQUICGateway(t, origin.pc.LocalAddr().String(), Policy{}, Limits{})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return origin, m, c
}

// read reports whether the origin read a ClientHello naming name.
func (o *namedOrigin) read(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Contains(o.names, name)
}

// nameSwappedHellos returns Go's QUIC ClientHello for unfiled.cn, the same
// hello for a.filed.cn, and where the names start: the hellos agree
// before it.
func nameSwappedHellos(t *testing.T) (unfiled, filed []byte, name int) {
	t.Helper()
	unfiled = quicClientHello(t, "unfiled.cn")
	name = bytes.Index(unfiled, []byte("unfiled.cn"))
	filed = bytes.Clone(unfiled)
	copy(filed[name:], "a.filed.cn")
	return unfiled, filed, name
}

// waitQUIC waits until done reports true, or fails the test saying what.
func waitQUIC(t *testing.T, m *Metrics, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen (%s)", what, quicDropSummary(m))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQUICDuplicatePacketNumber sends, through a real socket to a quic-go
// origin, the common start of two hellos in Initial packet 0, the rest of
// the a.filed.cn hello in a second packet numbered 0, and the rest of the
// unfiled.cn hello in packet 1. quic-go discards the second packet 0
// unread, so a gateway that read it passed the flow on a.filed.cn and
// forwarded packet 1, with which the origin read a hello for unfiled.cn.
// The flow must be refused as crypto_conflict before anything is
// forwarded.
func TestQUICDuplicatePacketNumber(t *testing.T) {
	unfiled, filed, name := nameSwappedHellos(t)
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	origin, m, c := namedOriginConn(t)
	for _, d := range [][]byte{
		clientInitial(t, dcid, 0, cryptoFrame(filed, 0, name)),
		clientInitial(t, dcid, 0, cryptoFrame(filed, name, len(filed))),
		clientInitial(t, dcid, 1, cryptoFrame(unfiled, name, len(unfiled))),
	} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	conflicts := func() float64 { return testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropConflict)) }
	waitQUIC(t, m, "a crypto_conflict drop or the origin reading unfiled.cn", func() bool {
		return conflicts() > 0 || origin.read("unfiled.cn")
	})
	if origin.read("unfiled.cn") {
		t.Fatal("the origin read a ClientHello for unfiled.cn")
	}
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("quic", "pass", "filed")); got != 0 {
		t.Errorf("decisions{quic,pass,filed}: got %v, want 0", got)
	}
	// Once a datagram to the refused flow is counted as blocked,
	// everything sent before it has been handled.
	if _, err := c.Write(clientInitial(t, dcid, 2, cryptoFrame(filed, 0, name))); err != nil {
		t.Fatal(err)
	}
	waitQUICDrop(t, m, quicDropBlocked, 0)
	if got := origin.pc.datagrams.Load(); got != 0 {
		t.Errorf("upstream datagrams: got %d, want 0", got)
	}
}

// TestQUICAfterPass passes a flow on a whole a.filed.cn hello in Initial
// packet 0 and then sends, in packet 1, what the origin would read as
// CRYPTO data after the decision: the unfiled.cn hello over the decided
// offsets (crypto_conflict), or a second ClientHello, for unfiled.cn,
// after the first (which an origin that sent a HelloRetryRequest serves
// the connection on: blocked as hrr_sni_mismatch). The gateway must end
// the flow before forwarding packet 1, and the origin must never read a
// hello for unfiled.cn.
func TestQUICAfterPass(t *testing.T) {
	unfiled, filed, _ := nameSwappedHellos(t)
	n := len(filed)
	both := append(bytes.Clone(filed), unfiled...)
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	tests := []struct {
		name    string
		later   []byte
		counter func(m *Metrics) prometheus.Counter
		reason  string
	}{
		{"other bytes at decided offsets", cryptoFrame(unfiled, 0, n),
			func(m *Metrics) prometheus.Counter { return m.QUICDrops.WithLabelValues("quic", quicDropConflict) }, "crypto_conflict"},
		{"the name's bytes only", cryptoFrame(unfiled, bytes.Index(unfiled, []byte("unfiled")), n),
			func(m *Metrics) prometheus.Counter { return m.QUICDrops.WithLabelValues("quic", quicDropConflict) }, "crypto_conflict"},
		{"a second ClientHello for another name", cryptoFrame(both, n, 2*n),
			func(m *Metrics) prometheus.Counter {
				return m.Decisions.WithLabelValues("quic", "block", reasonRetryMismatch)
			}, reasonRetryMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin, m, c := namedOriginConn(t)
			if _, err := c.Write(clientInitial(t, dcid, 0, cryptoFrame(filed, 0, n))); err != nil {
				t.Fatal(err)
			}
			waitQUIC(t, m, "the pass", func() bool {
				return testutil.ToFloat64(m.Decisions.WithLabelValues("quic", "pass", "filed")) == 1
			})
			if _, err := c.Write(clientInitial(t, dcid, 1, tt.later)); err != nil {
				t.Fatal(err)
			}
			waitQUIC(t, m, tt.reason, func() bool { return testutil.ToFloat64(tt.counter(m)) > 0 })
			blocked := testutil.ToFloat64(m.QUICDrops.WithLabelValues("quic", quicDropBlocked))
			if _, err := c.Write(clientInitial(t, dcid, 2, cryptoFrame(filed, 0, 10))); err != nil {
				t.Fatal(err)
			}
			waitQUICDrop(t, m, quicDropBlocked, blocked)
			if origin.read("unfiled.cn") {
				t.Error("the origin read a ClientHello for unfiled.cn")
			}
		})
	}
}

// TestQUICInitialPhase completes real quic-go handshakes through the
// gateway with origins that answer the first hello with a
// HelloRetryRequest (the second hello names the same server and is
// decided again) or with a Retry (the client's next Initials use new
// keys): reading the client's Initials after the pass must not refuse
// them.
func TestQUICInitialPhase(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*quic.Transport, *tls.Config)
		decisions float64
	}{
		{"no retry", nil, 1},
		{"hello retry request", func(_ *quic.Transport, tc *tls.Config) { tc.CurvePreferences = []tls.CurveID{tls.CurveP256} }, 2},
		{"retry packet", func(tr *quic.Transport, _ *tls.Config) { tr.VerifySourceAddress = func(net.Addr) bool { return true } }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin := newNamedOrigin(t, tt.configure)
			_, m, addr := startQUICGateway(t, origin.pc.LocalAddr().String(), Policy{}, Limits{})
			_, pool := testCert(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := quic.DialAddr(ctx, addr, &tls.Config{RootCAs: pool, ServerName: "www.filed.cn", NextProtos: []string{"icpgate-test"}},
				&quic.Config{HandshakeIdleTimeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("handshake: %v (%s)", err, quicDropSummary(m))
			}
			defer conn.CloseWithError(0, "")
			if got := testutil.ToFloat64(m.Decisions.WithLabelValues("quic", "pass", "filed")); got != tt.decisions {
				t.Errorf("decisions{quic,pass,filed}: got %v, want %v", got, tt.decisions)
			}
		})
	}
}
