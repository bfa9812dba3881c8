package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/icpgate/icpgate/sni"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var filedOnly = mapDecider{filed: map[string]string{"filed.cn": ""}}

func TestTLSPassthroughGoClient(t *testing.T) {
	tests := []struct {
		name       string
		serverName string // what the Go client is told; "" sends no SNI, an IP sends none either
		ipAccess   bool
		wantPass   bool
		wantReason string
	}{
		{"filed", "filed.cn", false, true, "filed"},
		{"subdomain of filed", "www.filed.cn", false, true, "filed"},
		{"deep subdomain", "a.b.filed.cn", false, true, "filed"},
		{"unfiled", "unfiled.cn", false, false, "unfiled"},
		{"suffix lookalike", "notfiled.cn", false, false, "unfiled"},
		{"no SNI, ip_access pass", "", true, true, "ip_access"},
		{"no SNI, ip_access block", "", false, false, "ip_access"},
		{"IP, ip_access pass", "127.0.0.1", true, true, "ip_access"},
		{"IP, ip_access block", "127.0.0.1", false, false, "ip_access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newTLSUpstream(t, "A", nil)
			d := filedOnly
			d.ipAccess = tt.ipAccess
			g := startGateway(t, tlsListener(up.addr()), d)
			c, err := dialTLS(g.addr("tls"), tt.serverName)
			verdict := "block"
			if tt.wantPass {
				verdict = "pass"
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				defer c.Close()
				sent := tt.serverName
				if strings.HasPrefix(sent, "127.") {
					sent = "" // Go sends no SNI for an IP
				}
				got, err := httpGet(c, bufio.NewReader(c), "x")
				if want := "hello " + sent + " from A"; err != nil || got != want {
					t.Fatalf("response: got %q, %v, want %q", got, err, want)
				}
				if n := up.accepted.Load(); n != 1 {
					t.Errorf("upstream connections: got %d, want 1", n)
				}
			} else {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded, want access denied")
				}
				if !strings.Contains(err.Error(), "access denied") {
					t.Errorf("handshake error: got %q, want access denied", err)
				}
				if n := up.accepted.Load(); n != 0 {
					t.Errorf("upstream connections: got %d, want 0 (never dialled when blocked)", n)
				}
			}
			waitFor(t, "decision counted", func() bool {
				return testutil.ToFloat64(g.m.Decisions.WithLabelValues("tls", verdict, tt.wantReason)) == 1
			})
		})
	}
}

func TestTLSBlockReset(t *testing.T) {
	up := newTLSUpstream(t, "A", nil)
	cfg := tlsListener(up.addr())
	cfg.Policy.TLSBlock = "reset"
	g := startGateway(t, cfg, filedOnly)
	_, err := dialTLS(g.addr("tls"), "unfiled.cn")
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("handshake error: got %v, want connection reset", err)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("upstream connections: got %d, want 0", n)
	}
	// A filed name still passes under the reset policy.
	c, err := dialTLS(g.addr("tls"), "filed.cn")
	if err != nil {
		t.Fatalf("filed handshake: %v", err)
	}
	c.Close()
}

func TestTLSAlertRecordVersion(t *testing.T) {
	// The alert carries the client's record version, byte for byte.
	g := startGateway(t, tlsListener("127.0.0.1:1"), filedOnly)
	for _, v := range []uint16{0x0301, 0x0303} {
		t.Run(fmt.Sprintf("%04x", v), func(t *testing.T) {
			hello := clientHello(t, "unfiled.cn")
			hello[1], hello[2] = byte(v>>8), byte(v)
			c, err := net.Dial("tcp", g.addr("tls"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			want := []byte{21, byte(v >> 8), byte(v), 0, 2, 2, 49}
			if !bytes.Equal(got, want) {
				t.Errorf("got % x, want % x", got, want)
			}
		})
	}
}

func TestTLSDecisionUpstream(t *testing.T) {
	upA := newTLSUpstream(t, "A", nil)
	upB := newTLSUpstream(t, "B", nil)
	d := mapDecider{filed: map[string]string{"filed.cn": upB.addr(), "other.cn": ""}}
	g := startGateway(t, tlsListener(upA.addr()), d)
	for _, tt := range []struct{ sni, want string }{
		{"filed.cn", "hello filed.cn from B"}, // the record's upstream
		{"other.cn", "hello other.cn from A"}, // the listener's default
	} {
		c, err := dialTLS(g.addr("tls"), tt.sni)
		if err != nil {
			t.Fatalf("%s: %v", tt.sni, err)
		}
		got, err := httpGet(c, bufio.NewReader(c), tt.sni)
		c.Close()
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v, want %q", tt.sni, got, err, tt.want)
		}
	}
}

func TestTLSHalfClose(t *testing.T) {
	const size = 200 << 10
	sawFIN := make(chan bool, 1)
	up := newTLSUpstream(t, "A", func(c *tls.Conn, raw *net.TCPConn) {
		n, err := io.Copy(io.Discard, c) // until the client's close_notify
		if err != nil {
			return
		}
		// Below TLS the relay must have half-closed us: a FIN, not a close.
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, ferr := raw.Read(make([]byte, 1))
		sawFIN <- ferr == io.EOF
		raw.SetReadDeadline(time.Time{})
		fmt.Fprintf(c, "got %d bytes", n)
		c.Close()
	})
	g := startGateway(t, tlsListener(up.addr()), filedOnly)
	raw, err := net.Dial("tcp", g.addr("tls"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, pool := testCert(t)
	c := tls.Client(raw, &tls.Config{ServerName: "filed.cn", RootCAs: pool})
	if _, err := c.Write(bytes.Repeat([]byte("x"), size)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil { // close_notify
		t.Fatal(err)
	}
	if err := raw.(*net.TCPConn).CloseWrite(); err != nil { // FIN
		t.Fatal(err)
	}
	raw.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply after our FIN: %v", err)
	}
	if want := fmt.Sprintf("got %d bytes", size); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if fin := <-sawFIN; !fin {
		t.Errorf("upstream did not see EOF on the TCP connection after the client's FIN")
	}
	waitFor(t, "bytes counted", func() bool {
		return testutil.ToFloat64(g.m.Bytes.WithLabelValues("tls", "upstream")) > size &&
			testutil.ToFloat64(g.m.Bytes.WithLabelValues("tls", "downstream")) > 0
	})
}

func TestTLSUpstreamErrors(t *testing.T) {
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name     string
		upstream string
		kind     string
	}{
		{"refused", dead, "dial"},
		{"no upstream", "", "no_upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, tlsListener(tt.upstream), filedOnly)
			_, err := dialTLS(g.addr("tls"), "filed.cn")
			if err == nil {
				t.Fatal("handshake succeeded with no upstream")
			}
			if strings.Contains(err.Error(), "access denied") {
				t.Errorf("got %q, want a plain close, not a block", err)
			}
			got := testutil.ToFloat64(g.m.UpstreamErrors.WithLabelValues("tls", tt.kind))
			if tt.kind == "dial" {
				got += testutil.ToFloat64(g.m.UpstreamErrors.WithLabelValues("tls", "timeout"))
			}
			if got != 1 {
				t.Errorf("upstream errors {%s}: got %v, want 1", tt.kind, got)
			}
		})
	}
}

// clientHello returns the first TLS record(s) a Go client sends for sni,
// up to the end of its ClientHello.
func clientHello(t testing.TB, sni string) []byte {
	t.Helper()
	return clientHelloConfig(t, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
}

func TestTLSHelloErrors(t *testing.T) {
	hello := clientHello(t, "filed.cn")
	tests := []struct {
		name    string
		send    []byte
		fin     bool // half-close after sending
		trickle bool // one byte per 50 ms instead of one write
		kind    string
	}{
		{"1 byte per 50 ms", hello, false, true, helloTimeout},
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n"), false, false, helloNotTLS},
		{"silent client", nil, false, false, helloTimeout},
		{"truncated hello then FIN", hello[:len(hello)/2], true, false, helloClosed},
		{"handshake not a ClientHello", []byte{22, 3, 1, 0, 8, 2, 0, 0, 4, 3, 3, 0, 0}, false, false, helloMalformed},
		{"oversized hello", append([]byte{22, 3, 1, 0x40, 0, 1, 0x0f, 0xff, 0xff}, make([]byte, 80<<10)...), false, false, helloTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newTLSUpstream(t, "A", nil)
			cfg := tlsListener(up.addr())
			cfg.Timeouts.Hello = 300 * time.Millisecond
			g := startGateway(t, cfg, filedOnly)
			c, err := net.Dial("tcp", g.addr("tls"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				if tt.trickle {
					for i := range tt.send {
						if _, err := c.Write(tt.send[i : i+1]); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
					return
				}
				c.Write(tt.send)
				if tt.fin {
					c.(*net.TCPConn).CloseWrite()
				}
			}()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read: %v, want the gateway to close", err)
			}
			if len(got) != 0 {
				t.Errorf("got % x from the gateway, want nothing", got)
			}
			waitFor(t, "hello error "+tt.kind, func() bool {
				return testutil.ToFloat64(g.m.HelloErrors.WithLabelValues(tt.kind)) == 1
			})
			if n := up.accepted.Load(); n != 0 {
				t.Errorf("upstream connections: got %d, want 0", n)
			}
		})
	}
}

// writeCAFile writes the test certificate as PEM for openssl and curl.
func writeCAFile(t *testing.T) string {
	cert, _ := testCert(t)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLSOpenSSLClient(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	up := newTLSUpstream(t, "A", nil)
	g := startGateway(t, tlsListener(up.addr()), filedOnly) // ip_access: block
	ca := writeCAFile(t)
	tests := []struct {
		name     string
		args     []string
		host     string
		wantPass bool
	}{
		{"filed", []string{"-servername", "filed.cn"}, "filed.cn", true},
		{"subdomain", []string{"-servername", "www.filed.cn"}, "www.filed.cn", true},
		{"unfiled", []string{"-servername", "unfiled.cn"}, "unfiled.cn", false},
		{"no SNI", []string{"-noservername"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.accepted.Load()
			args := append([]string{"s_client", "-connect", g.addr("tls"), "-CAfile", ca, "-quiet", "-verify_return_error"}, tt.args...)
			cmd := exec.Command("openssl", args...)
			cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: " + tt.host + "\r\nConnection: close\r\n\r\n")
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			cmd.WaitDelay = 5 * time.Second
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("openssl hung; stderr: %s", stderr.String())
			}
			if tt.wantPass {
				if want := "hello " + tt.host + " from A"; !strings.Contains(out.String(), want) {
					t.Errorf("stdout: got %q, want it to contain %q (err %v, stderr %s)", out.String(), want, err, stderr.String())
				}
				return
			}
			if err == nil {
				t.Errorf("openssl succeeded, want a failure")
			}
			if !strings.Contains(stderr.String(), "access denied") && !strings.Contains(stderr.String(), "alert number 49") {
				t.Errorf("stderr: got %q, want the access denied alert", stderr.String())
			}
			if n := up.accepted.Load() - before; n != 0 {
				t.Errorf("upstream connections: got %d, want 0", n)
			}
		})
	}
}

func TestTLSCurlClient(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	up := newTLSUpstream(t, "A", nil)
	g := startGateway(t, tlsListener(up.addr()), filedOnly)
	ca := writeCAFile(t)
	_, port, _ := net.SplitHostPort(g.addr("tls"))
	tests := []struct {
		host     string
		wantPass bool
	}{
		{"filed.cn", true},
		{"www.filed.cn", true},
		{"unfiled.cn", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			before := up.accepted.Load()
			cmd := exec.Command("curl", "-sS", "--http1.1", "--max-time", "20", "--cacert", ca,
				"--resolve", tt.host+":"+port+":127.0.0.1", "https://"+tt.host+":"+port+"/")
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			err := cmd.Run()
			if tt.wantPass {
				if want := "hello " + tt.host + " from A"; err != nil || out.String() != want {
					t.Errorf("got %q (err %v, stderr %q), want %q", out.String(), err, stderr.String(), want)
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 35 {
				t.Errorf("curl exit: got %v, want 35 (TLS connect error)", err)
			}
			if !strings.Contains(stderr.String(), "access denied") {
				t.Errorf("stderr: got %q, want the access denied alert", stderr.String())
			}
			if n := up.accepted.Load() - before; n != 0 {
				t.Errorf("upstream connections: got %d, want 0", n)
			}
		})
	}
}

// BenchmarkTLSHelloDecide measures the TLS path from accept to decision on
// loopback: accept, read the ClientHello with sni.Read, decide, count. Each
// op is one connection; the client side (dial, write the hello) runs in
// another goroutine and is included in wall time.
func BenchmarkTLSHelloDecide(b *testing.B) {
	hello := clientHello(b, "www.filed.cn")
	g := startGateway(b, tlsListener("127.0.0.1:1"), filedOnly)
	srv := g.srv
	rt := srv.lns["tls"].rt.Load()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
			if err != nil {
				return
			}
			c.Write(hello)
			c.Close()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := ln.AcceptTCP()
		if err != nil {
			b.Fatal(err)
		}
		h, sc, err := sni.Read(c, helloOptions(rt))
		if err != nil {
			b.Fatal(err)
		}
		d := srv.dec.Decide(h.ServerName)
		srv.countDecision("tls", &d)
		sc.Release()
		if !d.Pass {
			b.Fatal("not passed")
		}
		c.Close()
	}
}

// BenchmarkTLSPassthroughSetup measures a whole passthrough connection on
// loopback: client dial and hello, gateway accept, decide, upstream dial,
// hello replay, relay until both sides close. The upstream is a raw TCP
// server that reads the hello and closes.
func BenchmarkTLSPassthroughSetup(b *testing.B) {
	hello := clientHello(b, "www.filed.cn")
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() {
				io.ReadFull(c, make([]byte, len(hello)))
				c.Close()
			}()
		}
	}()
	cfg := tlsListener(up.Addr().String())
	g := startGateway(b, cfg, filedOnly)
	addr := g.srv.Addr("tls").(*net.TCPAddr)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.DialTCP("tcp", nil, addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(hello)
		c.CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
	if n := testutil.ToFloat64(g.m.Decisions.WithLabelValues("tls", "pass", "filed")); n < float64(b.N) {
		b.Fatalf("decisions: got %v, want %d", n, b.N)
	}
}

// fixedDecider returns the same decision for every host.
type fixedDecider Decision

func (f fixedDecider) Decide(string) Decision { return Decision(f) }

func TestDecisionPathAllocs(t *testing.T) {
	srv, err := NewServer(tlsListener("127.0.0.1:1"), fixedDecider{Pass: true, Reason: "filed"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := srv.dec.Decide("www.filed.cn")
	srv.countDecision("tls", &d) // first use fills the counter cache
	allocs := testing.AllocsPerRun(1000, func() {
		d := srv.dec.Decide("www.filed.cn")
		srv.countDecision("tls", &d)
	})
	if allocs != 0 {
		t.Errorf("decide and count: got %v allocs, want 0", allocs)
	}
	if got := testutil.ToFloat64(srv.m.Decisions.WithLabelValues("tls", "pass", "filed")); got != 1002 {
		t.Errorf("decisions counted: got %v, want 1002", got)
	}
}

// byteWriter writes every Write one byte per TCP segment (NODELAY is on):
// the worst fragmentation a client can produce.
type byteWriter struct{ net.Conn }

func (w byteWriter) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := w.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

func TestTLSFragmentedHello(t *testing.T) {
	up := newTLSUpstream(t, "A", nil)
	g := startGateway(t, tlsListener(up.addr()), filedOnly)
	// A hello of about 5 KB (a long ALPN list) outgrows the engine's 2 KiB
	// hold buffer while it arrives.
	var long []string
	for i := range 40 {
		long = append(long, fmt.Sprintf("proto-%03d-%s", i, strings.Repeat("x", 110)))
	}
	for _, tt := range []struct {
		sni  string
		pass bool
		alpn []string
	}{{"www.filed.cn", true, nil}, {"unfiled.cn", false, nil}, {"www.filed.cn", true, long}, {"unfiled.cn", false, long}} {
		raw, err := net.Dial("tcp", g.addr("tls"))
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		_, pool := testCert(t)
		c := tls.Client(byteWriter{raw}, &tls.Config{ServerName: tt.sni, RootCAs: pool, NextProtos: tt.alpn})
		err = c.Handshake()
		if !tt.pass {
			if err == nil || !strings.Contains(err.Error(), "access denied") {
				t.Errorf("%s: got %v, want access denied", tt.sni, err)
			}
			raw.Close()
			continue
		}
		if err != nil {
			t.Fatalf("%s: handshake: %v", tt.sni, err)
		}
		got, err := httpGet(c, bufio.NewReader(c), tt.sni)
		if want := "hello " + tt.sni + " from A"; err != nil || got != want {
			t.Errorf("%s: got %q, %v, want %q", tt.sni, got, err, want)
		}
		raw.Close()
	}
}

// TestTLSECHCounted sends a real ECH ClientHello captured from Go's client
// (outer name public.example.cn, not filed here): it is counted in
// ECHHellos{protocol="tls"}, decided on the outer name, and never reaches
// the upstream. A plain hello is not counted.
func TestTLSECHCounted(t *testing.T) {
	ech, err := os.ReadFile("../sni/testdata/go-ech.bin")
	if err != nil {
		t.Fatal(err)
	}
	up := newTLSUpstream(t, "A", nil)
	g := startGateway(t, tlsListener(up.addr()), filedOnly)
	for _, hello := range [][]byte{clientHello(t, "filed.cn"), ech} {
		c, err := net.Dial("tcp", g.addr("tls"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write(hello)
		// Until the gateway closes (block) or, for the passing hello that
		// nobody completes, a short deadline.
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	if got := testutil.ToFloat64(g.m.ECHHellos.WithLabelValues("tls")); got != 1 {
		t.Errorf("ech hellos: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(g.m.Decisions.WithLabelValues("tls", "block", "unfiled")); got != 1 {
		t.Errorf("blocked decisions (outer name): got %v, want 1", got)
	}
}
