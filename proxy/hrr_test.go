package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/icpgate/icpgate/sni"
)

// retryListeners is a config with the two TLS paths to one upstream: a
// tls listener (served by the engine) and an auto listener (a goroutine
// per connection, tls.go).
func retryListeners(upstream string) Config {
	return Config{Listeners: []ListenerConfig{
		{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: upstream},
		{Name: "auto", Protocol: "auto", Address: "127.0.0.1:0", Upstream: upstream},
	}}
}

// recordingConn records every byte an origin reads.
type recordingConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (r recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.buf.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

// retryOrigin is a crypto/tls origin that only accepts P-384 key
// exchange, so the first hello of a Go client (X25519MLKEM768 and X25519
// key shares) draws a HelloRetryRequest. It answers HTTP/1.1 like
// tlsUpstream and records every byte it reads.
type retryOrigin struct {
	ln       net.Listener
	mu       sync.Mutex
	read     bytes.Buffer // guarded by mu
	accepted atomic.Int64
}

func newRetryOrigin(t *testing.T) *retryOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &retryOrigin{ln: ln}
	cert, _ := testCert(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.CurveP384}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serveHTTPEcho(tls.Server(recordingConn{c, &o.mu, &o.read}, cfg), "R")
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return o
}

func (o *retryOrigin) addr() string { return o.ln.Addr().String() }

// saw reports whether the origin read name.
func (o *retryOrigin) saw(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Contains(o.read.Bytes(), []byte(name))
}

// clientHelloConfig returns the first TLS record a Go client configured by
// cfg sends: its ClientHello.
func clientHelloConfig(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	go tls.Client(a, cfg).Handshake()
	defer a.Close()
	defer b.Close()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// readRecord reads one TLS record.
func readRecord(c net.Conn) ([]byte, error) {
	rec := make([]byte, 5)
	if _, err := io.ReadFull(c, rec); err != nil {
		return nil, err
	}
	rec = append(rec, make([]byte, int(rec[3])<<8|int(rec[4]))...)
	_, err := io.ReadFull(c, rec[5:])
	return rec, err
}

var changeCipherSpec = []byte{20, 3, 3, 0, 1, 1}

// retrySwitch is the attack: a first hello for first without a usable key
// share draws a HelloRetryRequest, then a second hello (after a
// middlebox-compatibility ChangeCipherSpec) names second, with a P-384 key
// share, so an origin that routes by the second name would go on. It
// returns what the client read after the retry request.
func retrySwitch(t *testing.T, addr, first, second string) []byte {
	t.Helper()
	hello1 := clientHello(t, first)
	hello2 := clientHelloConfig(t, &tls.Config{ServerName: second, InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.CurveP384}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(hello1); err != nil {
		t.Fatal(err)
	}
	rec, err := readRecord(c)
	if err != nil {
		t.Fatalf("reading the server's first record: %v", err)
	}
	if serverFirst(rec) != retryYes {
		t.Fatalf("the server's first record is not a HelloRetryRequest: % x", rec[:min(len(rec), 48)])
	}
	if _, err := c.Write(append(append([]byte(nil), changeCipherSpec...), hello2...)); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(c) // a reset after the alert is fine
	return rest
}

// endsWithAccessDenied reports whether b ends with the access_denied alert.
func endsWithAccessDenied(b []byte) bool {
	return len(b) >= 7 && b[len(b)-7] == recordTypeAlert && bytes.Equal(b[len(b)-2:], []byte{alertLevelFatal, alertAccessDenied})
}

// TestHRRSecondHelloChecked: after a HelloRetryRequest the client's
// second hello is decided too, on both TLS paths. One naming another
// server, or none, is refused with access_denied and never reaches the
// origin; a legitimate retry (crypto/tls on both ends) still works.
func TestHRRSecondHelloChecked(t *testing.T) {
	for _, ln := range []string{"tls", "auto"} {
		t.Run(ln, func(t *testing.T) {
			o := newRetryOrigin(t)
			g := startGateway(t, retryListeners(o.addr()), filedOnly)
			if ln == "tls" {
				servedByEngines(t, g)
			}
			addr := g.addr(ln)

			for _, second := range []string{"unfiled.cn", ""} {
				got := retrySwitch(t, addr, "filed.cn", second)
				if !endsWithAccessDenied(got) {
					t.Errorf("second hello for %q: client read % x, want the access_denied alert", second, got[:min(len(got), 64)])
				}
				if second != "" && o.saw(second) {
					t.Errorf("the origin read the second hello for %q", second)
				}
			}
			if n := testutil.ToFloat64(g.m.Decisions.WithLabelValues("tls", "block", reasonRetryMismatch)); n != 2 {
				t.Errorf("decisions{tls,block,%s}: got %v, want 2", reasonRetryMismatch, n)
			}

			// Same name, other case: decided afresh and passed (the Go
			// origin then refuses the hand-made transcript, which is not
			// the gateway's business).
			before := testutil.ToFloat64(g.m.Decisions.WithLabelValues("tls", "pass", "filed"))
			if got := retrySwitch(t, addr, "filed.cn", "Filed.CN"); endsWithAccessDenied(got) {
				t.Errorf("a second hello for the same name was refused")
			}
			if after := testutil.ToFloat64(g.m.Decisions.WithLabelValues("tls", "pass", "filed")); after != before+2 {
				t.Errorf("pass decisions for the two hellos: got %v, want 2", after-before)
			}

			// A real retry, end to end.
			c, err := dialTLS(addr, "filed.cn")
			if err != nil {
				t.Fatalf("legitimate retry handshake: %v", err)
			}
			defer c.Close()
			if body, err := httpGetTLS(c, "filed.cn"); err != nil || body != "hello filed.cn from R" {
				t.Fatalf("legitimate retry: got %q, %v", body, err)
			}
			if !c.ConnectionState().HandshakeComplete || c.ConnectionState().CurveID != tls.CurveP384 {
				t.Errorf("handshake: curve %v, want P-384 after a retry", c.ConnectionState().CurveID)
			}
		})
	}
}

// TestHRRSecondHelloOpenSSLOrigin: the same with openssl s_server as the
// origin, which (unlike crypto/tls) goes on with a second hello that
// names another server: the gateway must refuse it. openssl s_client's
// own retry (key share X25519 first, the origin wants P-384) still passes.
func TestHRRSecondHelloOpenSSLOrigin(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not installed")
		}
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	cert, _ := testCert(t)
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := l.Addr().String()
	l.Close()
	srv := exec.Command("openssl", "s_server", "-accept", origin, "-cert", certFile, "-key", keyFile, "-groups", "P-384", "-www", "-quiet")
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	waitFor(t, "openssl s_server to listen", func() bool {
		c, err := net.Dial("tcp", origin)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	g := startGateway(t, retryListeners(origin), filedOnly)
	servedByEngines(t, g)
	for _, ln := range []string{"tls", "auto"} {
		t.Run(ln, func(t *testing.T) {
			if got := retrySwitch(t, g.addr(ln), "filed.cn", "unfiled.cn"); !endsWithAccessDenied(got) {
				t.Errorf("second hello for unfiled.cn: client read % x..., want the access_denied alert", got[:min(len(got), 64)])
			}
			cmd := exec.Command("openssl", "s_client", "-connect", g.addr(ln), "-servername", "filed.cn", "-groups", "X25519:P-384", "-quiet")
			cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			cmd.WaitDelay = 5 * time.Second
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("openssl s_client hung; stderr: %s", stderr.String())
			}
			if !strings.Contains(out.String(), "200 ok") {
				t.Errorf("s_client through a retry: got %q, stderr %s", out.String(), stderr.String())
			}
		})
	}
	if n := testutil.ToFloat64(g.m.Decisions.WithLabelValues("tls", "block", reasonRetryMismatch)); n != 2 {
		t.Errorf("decisions{tls,block,%s}: got %v, want 2", reasonRetryMismatch, n)
	}
}

// hrrRecords is a HelloRetryRequest (prefix, then padding standing in for
// its extensions) cut into records of at most size bytes of handshake.
func hrrRecords(random [32]byte, size int) []byte {
	msg := append([]byte{typeServerHello, 0, 0, 40, 3, 3}, random[:]...)
	msg = append(msg, make([]byte, 40-2-32)...)
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 3, 0, byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestServerFirst(t *testing.T) {
	other := helloRetryRandom
	other[31] ^= 1
	whole := hrrRecords(helloRetryRandom, 1000)
	tests := []struct {
		name string
		b    []byte
		want int
	}{
		{"empty", nil, retryMore},
		{"header only", whole[:5], retryMore},
		{"prefix one byte a record", hrrRecords(helloRetryRandom, 1)[:retryPrefix*(recordHeaderLen+1)], retryYes},
		{"before the random ends", whole[:40], retryMore},
		{"retry request", whole, retryYes},
		{"retry request, prefix only", whole[:5+retryPrefix], retryYes},
		{"one byte a record", hrrRecords(helloRetryRandom, 1), retryYes},
		{"one byte a record, cut", hrrRecords(helloRetryRandom, 1)[:100], retryMore},
		{"server hello", hrrRecords(other, 1000), retryNo},
		{"alert", []byte{recordTypeAlert, 3, 3, 0, 2, 2, 40}, retryNo},
		{"not a server hello", []byte{recordTypeHandshake, 3, 3, 0, 4, 11, 0, 0, 0}, retryNo},
		{"empty handshake record", []byte{recordTypeHandshake, 3, 3, 0, 0}, retryNo},
		{"alert after a first fragment", append(hrrRecords(helloRetryRandom, 3)[:8], recordTypeAlert, 3, 3, 0, 2), retryNo},
	}
	for _, tt := range tests {
		if got := serverFirst(tt.b); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
	}
	if n := retryPrefix * (recordHeaderLen + 1); n > retryPeek {
		t.Errorf("a prefix one byte a record takes %d bytes, more than retryPeek", n)
	}
}

func TestScanRetryHello(t *testing.T) {
	hello := clientHello(t, "filed.cn")
	appData := []byte{recordTypeAppData, 3, 3, 0, 3, 1, 2, 3}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name    string
		b       []byte
		wantErr error
	}{
		{"hello", hello, nil},
		{"change cipher spec first", cat(changeCipherSpec, hello), nil},
		{"early data and change cipher spec first", cat(appData, changeCipherSpec, hello), nil},
		{"change cipher spec only", changeCipherSpec, sni.ErrIncomplete},
		{"cut change cipher spec", changeCipherSpec[:3], sni.ErrIncomplete},
		{"cut hello", cat(changeCipherSpec, hello[:50]), sni.ErrIncomplete},
		{"alert", []byte{recordTypeAlert, 3, 3, 0, 2, 2, 40}, sni.ErrNotTLS},
		{"empty change cipher spec", []byte{recordTypeCCS, 3, 3, 0, 0}, sni.ErrMalformed},
		{"early data past the cap", bytes.Repeat(cat([]byte{recordTypeAppData, 3, 3, 0x40, 0}, make([]byte, 0x4000)), 4), sni.ErrTooLarge},
	}
	var s sni.Scanner
	for _, tt := range tests {
		h, err := scanRetryHello(&s, tt.b)
		switch {
		case tt.wantErr == nil && (err != nil || h.ServerName != "filed.cn"):
			t.Errorf("%s: got %q, %v, want filed.cn", tt.name, h.ServerName, err)
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("%s: got error %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}
