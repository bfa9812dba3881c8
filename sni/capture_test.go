package sni

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// captureEnv names the environment variable that makes TestCaptureHellos
// rewrite the captured hellos in testdata/ (see testdata/README.txt).
const captureEnv = "SNI_CAPTURE"

// TestCaptureHellos records the first bytes real clients send to a loopback
// listener and writes them to testdata/*.bin. It runs only with
// SNI_CAPTURE=1, since the output differs on every run (random values).
func TestCaptureHellos(t *testing.T) {
	if os.Getenv(captureEnv) != "1" {
		t.Skip("set " + captureEnv + "=1 to re-capture testdata/*.bin")
	}
	clients := []struct {
		file string
		run  func(ctx context.Context, addr string) error
		quic func() ([]byte, error) // instead of run: a QUIC client's CRYPTO data
	}{
		{file: "go-tls12.bin", run: goClient("tls12.example.cn", tls.VersionTLS12, tls.VersionTLS12, nil)},
		{file: "go-tls13-mlkem.bin", run: goClient("pq.example.cn", tls.VersionTLS12, tls.VersionTLS13, nil)},
		{file: "go-ech.bin", run: goClient("secret.example.cn", tls.VersionTLS13, tls.VersionTLS13, testECHConfigList(t))},
		{file: "openssl.bin", run: command("openssl", "s_client", "-connect", "{addr}", "-servername", "openssl.example.cn", "-alpn", "h2,http/1.1")},
		{file: "openssl-nosni.bin", run: command("openssl", "s_client", "-connect", "{addr}", "-noservername")},
		{file: "go-quic-crypto.bin", quic: goQUIC("quic.example.cn")},
		{file: "curl.bin", run: command("curl", "-sk", "--max-time", "3", "--resolve", "curl.example.cn:{port}:127.0.0.1", "https://curl.example.cn:{port}/")},
	}
	for _, c := range clients {
		t.Run(c.file, func(t *testing.T) {
			var b []byte
			var err error
			if c.quic != nil {
				b, err = c.quic()
			} else {
				b, err = capture(c.run)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("testdata", c.file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d bytes", c.file, len(b))
		})
	}
}

// capture runs a client against a fresh loopback listener and returns every
// byte it sent until it went quiet for half a second.
func capture(run func(ctx context.Context, addr string) error) ([]byte, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln.Addr().String()) }()
	c, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var got []byte
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	c.Close()
	cancel()
	<-done // the client fails once we hang up; that is expected
	if len(got) == 0 {
		return nil, errors.New("client sent nothing")
	}
	return got, nil
}

// goClient returns a crypto/tls client run.
func goClient(name string, minV, maxV uint16, ech []byte) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		d := tls.Dialer{Config: &tls.Config{
			ServerName:                     name,
			MinVersion:                     minV,
			MaxVersion:                     maxV,
			NextProtos:                     []string{"h2", "http/1.1"},
			EncryptedClientHelloConfigList: ech,
			InsecureSkipVerify:             true,
		}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// command returns a run of an external client; {addr} and {port} in args
// are replaced.
func command(name string, args ...string) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		_, port, _ := net.SplitHostPort(addr)
		a := make([]string, len(args))
		for i, s := range args {
			a[i] = strings.NewReplacer("{addr}", addr, "{port}", port).Replace(s)
		}
		cmd := exec.CommandContext(ctx, name, a...)
		cmd.Stdin = nil
		out, err := cmd.CombinedOutput()
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: %w: %s", name, err, out)
		}
		return nil
	}
}

// testECHConfigList builds an ECHConfigList (draft-ietf-tls-esni, as in
// crypto/tls's TestECH) for a fresh X25519 key with public name
// public.example.cn.
func testECHConfigList(t *testing.T) []byte {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(extECH)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(7)       // config id
			b.AddUint16(0x0020) // DHKEM(X25519, HKDF-SHA256)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.PublicKey().Bytes()) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(0x0001) // HKDF-SHA256
				b.AddUint16(0x0001) // AES-128-GCM
			})
			b.AddUint8(32)
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte("public.example.cn")) })
			b.AddUint16(0) // extensions
		})
	})
	return b.BytesOrPanic()
}

// goQUIC returns the Initial-level CRYPTO data of a crypto/tls QUIC client:
// a bare ClientHello handshake message, with QUIC transport parameters.
func goQUIC(name string) func() ([]byte, error) {
	return func() ([]byte, error) {
		q := tls.QUICClient(&tls.QUICConfig{TLSConfig: &tls.Config{
			ServerName: name,
			NextProtos: []string{"h3"},
			MinVersion: tls.VersionTLS13,
		}})
		// initial_max_data = 1 MiB, as a varint-coded transport parameter.
		q.SetTransportParameters([]byte{0x04, 0x04, 0x80, 0x10, 0x00, 0x00})
		if err := q.Start(context.Background()); err != nil {
			return nil, err
		}
		defer q.Close()
		var out []byte
		for {
			e := q.NextEvent()
			if e.Kind == tls.QUICNoEvent {
				break
			}
			if e.Kind == tls.QUICWriteData && e.Level == tls.QUICEncryptionLevelInitial {
				out = append(out, e.Data...)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no Initial CRYPTO data")
		}
		return out, nil
	}
}
