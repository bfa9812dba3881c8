package sni

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

// readOver writes chunks from a loopback client (pausing between them) and
// runs Read on the server end. It returns what Read returned and the bytes
// the client sent.
func readOver(t *testing.T, o Options, pause time.Duration, chunks ...[]byte) (Hello, *Conn, []byte, error) {
	t.Helper()
	cli, srv := tcpPair(t)
	cli.SetNoDelay(true)
	var sent []byte
	for _, c := range chunks {
		sent = append(sent, c...)
	}
	go func() {
		for i, c := range chunks {
			if i > 0 && pause > 0 {
				time.Sleep(pause)
			}
			if _, err := cli.Write(c); err != nil {
				return
			}
		}
	}()
	h, c, err := Read(srv, o)
	return h, c, sent, err
}

// bytesOf splits b into chunks of n bytes.
func bytesOf(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

func TestReadCaptured(t *testing.T) {
	tests := []struct {
		file     string
		sni      string
		hasSNI   bool
		alpn     []string
		tls13    bool
		ech      bool
		recordV  uint16
		recordsN int
	}{
		{"go-tls12.bin", "tls12.example.cn", true, []string{"h2", "http/1.1"}, false, false, 0x0301, 1},
		{"go-tls13-mlkem.bin", "pq.example.cn", true, []string{"h2", "http/1.1"}, true, false, 0x0301, 1},
		{"go-ech.bin", "public.example.cn", true, []string{"h2", "http/1.1"}, true, true, 0x0301, 1},
		{"openssl.bin", "openssl.example.cn", true, []string{"h2", "http/1.1"}, true, false, 0x0301, 1},
		{"openssl-nosni.bin", "", false, nil, true, false, 0x0301, 1},
		{"curl.bin", "curl.example.cn", true, []string{"h2", "http/1.1"}, true, false, 0x0301, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := loadHello(t, tt.file)
			h, c, sent, err := readOver(t, Options{}, 0, b)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Release()
			if h.ServerName != tt.sni || h.HasSNI != tt.hasSNI {
				t.Errorf("ServerName %q HasSNI %v, want %q %v", h.ServerName, h.HasSNI, tt.sni, tt.hasSNI)
			}
			if !slices.Equal(h.ALPN, tt.alpn) {
				t.Errorf("ALPN got %q, want %q", h.ALPN, tt.alpn)
			}
			if got := slices.Contains(h.SupportedVersions, 0x0304); got != tt.tls13 {
				t.Errorf("TLS 1.3 offered: got %v, want %v (%x)", got, tt.tls13, h.SupportedVersions)
			}
			if h.ECH != tt.ech {
				t.Errorf("ECH got %v, want %v", h.ECH, tt.ech)
			}
			if h.RecordVersion != tt.recordV {
				t.Errorf("RecordVersion got %#04x, want %#04x", h.RecordVersion, tt.recordV)
			}
			if got := c.Buffered(); !bytes.Equal(got, sent) {
				t.Errorf("Buffered got %d bytes, want the %d sent", len(got), len(sent))
			}
			ref, ok := cryptoTLS(b)
			if !ok {
				t.Fatal("crypto/tls rejected the captured hello")
			}
			if ref.ServerName != h.ServerName || !slices.Equal(ref.ALPN, h.ALPN) {
				t.Errorf("crypto/tls saw %q %q, we saw %q %q", ref.ServerName, ref.ALPN, h.ServerName, h.ALPN)
			}
		})
	}
}

func TestReadDelivery(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin") // one record, about 1.5 KiB
	small := loadHello(t, "openssl.bin")
	pqMsg := messageOf(t, pq)
	tests := []struct {
		name   string
		sni    string
		o      Options
		pause  time.Duration
		chunks [][]byte
	}{
		{"one write", "pq.example.cn", Options{}, 0, [][]byte{pq}},
		{"1-byte TCP writes, paused", "openssl.example.cn", Options{}, 300 * time.Microsecond, bytesOf(small, 1)},
		{"1-byte TCP writes, large hello", "pq.example.cn", Options{}, 0, bytesOf(pq, 1)},
		{"1-byte TLS records", "pq.example.cn", Options{}, 0, [][]byte{recordsOf(pqMsg, 1)}},
		{"1-byte TLS records in 1-byte TCP writes", "openssl.example.cn", Options{}, 0, bytesOf(recordsOf(messageOf(t, small), 1), 1)},
		{"7-byte TLS records in 13-byte writes", "pq.example.cn", Options{}, 0, bytesOf(recordsOf(pqMsg, 7), 13)},
		{"16 KiB padded", "pq.example.cn", Options{}, 0, [][]byte{padded(t, pqMsg, 16<<10)}},
		{"64 KiB padded, exactly the cap", "pq.example.cn", Options{}, 0, bytesOf(padded(t, pqMsg, 64<<10), 4000)},
		{"64 KiB padded, in 1 KiB records", "pq.example.cn", Options{MaxBytes: 1 << 20}, 0, [][]byte{recordsOf(messageOf(t, padded(t, pqMsg, 60<<10)), 1024)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, c, sent, err := readOver(t, tt.o, tt.pause, tt.chunks...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Release()
			if h.ServerName != tt.sni {
				t.Errorf("got %q, want %q", h.ServerName, tt.sni)
			}
			if got := c.Buffered(); !bytes.Equal(got, sent) {
				t.Errorf("Buffered got %d bytes, want the %d sent", len(got), len(sent))
			}
		})
	}
}

// TestReadEverySplit splits a real hello into two writes at every offset.
func TestReadEverySplit(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin")
	for i := 1; i < len(pq); i++ {
		h, c, _, err := readOver(t, Options{}, 100*time.Microsecond, pq[:i], pq[i:])
		if err != nil {
			t.Fatalf("split at %d: %v", i, err)
		}
		if h.ServerName != "pq.example.cn" || !bytes.Equal(c.Buffered(), pq) {
			t.Fatalf("split at %d: got %q and %d bytes, want %q and %d", i, h.ServerName, len(c.Buffered()), "pq.example.cn", len(pq))
		}
		c.Close()
		c.Release()
	}
}

func TestReadErrors(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin")
	msg := messageOf(t, pq)
	edit := func(f func([]ext) []ext) []byte { return recordsOf(editHello(t, msg, f), maxPlaintext) }
	sslv2 := []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}
	sslv2 = append(sslv2, make([]byte, 0x2e-9)...)
	bigMsg := []byte{typeClientHello, 0x01, 0x00, 0x01} // 65537 bytes announced
	bigMsg = append(bigMsg, make([]byte, 65537)...)
	tests := []struct {
		name    string
		in      []byte
		o       Options
		want    error  // nil: accepted
		sni     string // when accepted
		hasSNI  bool
		tlsDiff bool // a documented difference from crypto/tls
	}{
		{"no SNI", edit(func(e []ext) []ext { return withoutExt(e, extServerName) }), Options{}, nil, "", false, false},
		{"empty SNI list", edit(setSNI()), Options{}, ErrMalformed, "", false, false},
		{"empty host name", edit(setSNI(sniEntry{0, ""})), Options{}, ErrMalformed, "", false, false},
		{"two host names", edit(setSNI(sniEntry{0, "a.example.cn"}, sniEntry{0, "b.example.cn"})), Options{}, ErrMalformed, "", false, false},
		{"host name and another type", edit(setSNI(sniEntry{1, "other"}, sniEntry{0, "a.example.cn"})), Options{}, nil, "a.example.cn", true, false},
		{"only another type", edit(setSNI(sniEntry{7, "other"})), Options{}, nil, "", true, false},
		{"NUL in name, as crypto/tls", edit(setSNI(sniEntry{0, "a\x00b.example.cn"})), Options{}, nil, "a\x00b.example.cn", true, false},
		{"space and slash, as crypto/tls", edit(setSNI(sniEntry{0, "a b/c"})), Options{}, nil, "a b/c", true, false},
		{"upper case kept", edit(setSNI(sniEntry{0, "WWW.Example.CN"})), Options{}, nil, "WWW.Example.CN", true, false},
		{"IP literal kept", edit(setSNI(sniEntry{0, "192.0.2.1"})), Options{}, nil, "192.0.2.1", true, false},
		{"trailing dot", edit(setSNI(sniEntry{0, "example.cn."})), Options{}, ErrMalformed, "", false, false},
		{"over-long label kept", edit(setSNI(sniEntry{0, string(bytes.Repeat([]byte("a"), 300)) + ".cn"})), Options{}, nil, string(bytes.Repeat([]byte("a"), 300)) + ".cn", true, false},
		{"duplicate extension", edit(func(e []ext) []ext { return append(e, ext{0x1234, nil}, ext{0x1234, nil}) }), Options{}, ErrMalformed, "", false, false},
		{"duplicate SNI extension", edit(func(e []ext) []ext {
			return append(e, e[slices.IndexFunc(e, func(x ext) bool { return x.typ == extServerName })])
		}), Options{}, ErrMalformed, "", false, false},
		{"empty ALPN protocol", edit(func(e []ext) []ext { return append(withoutExt(e, extALPN), ext{extALPN, []byte{0, 1, 0}}) }), Options{}, ErrMalformed, "", false, false},
		{"bad ECH type", edit(func(e []ext) []ext { return append(e, ext{extECH, []byte{9}}) }), Options{}, ErrMalformed, "", false, false},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: example.cn\r\n\r\n"), Options{}, ErrNotTLS, "", false, false},
		{"SSLv2-compatible hello", sslv2, Options{}, ErrNotTLS, "", false, false},
		{"garbage", []byte{0, 1, 2, 3, 4, 5, 6, 7}, Options{}, ErrNotTLS, "", false, false},
		{"record version 0x1603", append([]byte{22, 0x16, 0x03}, pq[3:]...), Options{}, ErrNotTLS, "", false, false},
		{"first record an alert", append([]byte{21, 3, 1, 0, 2, 1, 0}, pq...), Options{}, ErrNotTLS, "", false, true},
		{"alert record mid-hello", append(append(recordsOf(msg[:10], 10), 21, 3, 1, 0, 2, 1, 0), recordsOf(msg[10:], maxPlaintext)...), Options{}, ErrMalformed, "", false, true},
		{"change_cipher_spec mid-hello", append(append(recordsOf(msg[:10], 10), 20, 3, 1, 0, 1, 1), recordsOf(msg[10:], maxPlaintext)...), Options{}, ErrMalformed, "", false, false},
		{"zero-length record", append([]byte{22, 3, 1, 0, 0}, pq...), Options{}, ErrMalformed, "", false, false},
		{"record over 16 KiB", append([]byte{22, 3, 1, 0x40, 0x01}, make([]byte, 0x4001)...), Options{MaxBytes: 1 << 20}, ErrMalformed, "", false, false},
		{"server hello", recordsOf(append([]byte{2}, msg[1:]...), maxPlaintext), Options{}, ErrMalformed, "", false, false},
		{"message over 64 KiB", recordsOf(bigMsg, maxPlaintext), Options{MaxBytes: 1 << 20}, ErrTooLarge, "", false, false},
		{"beyond the cap", padded(t, msg, 64<<10+1), Options{}, ErrTooLarge, "", false, true},
		{"beyond a small cap", pq, Options{MaxBytes: 1000}, ErrTooLarge, "", false, true},
		{"truncated body", recordsOf(append(slices.Clone(msg[:4]), msg[4:40]...), maxPlaintext), Options{}, ErrMalformed, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "truncated body" {
				// The header still announces the full body: shorten it.
				n := 36
				tt.in[5+1], tt.in[5+2], tt.in[5+3] = byte(n>>16), byte(n>>8), byte(n)
			}
			h, c, sent, err := readOver(t, tt.o, 0, tt.in)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if c == nil {
				t.Fatal("got a nil Conn after bytes were read")
			}
			if got := c.Buffered(); !bytes.HasPrefix(sent, got) || len(got) == 0 || len(got) > max(tt.o.MaxBytes, DefaultMaxBytes) {
				t.Errorf("Buffered got %d bytes, want a non-empty prefix of the %d sent", len(got), len(sent))
			}
			if err != nil && h.RecordVersion != 0x0301 && !errors.Is(err, ErrNotTLS) && tt.in[0] == recordTypeHandshake {
				t.Errorf("RecordVersion on error got %#04x, want 0x0301", h.RecordVersion)
			}
			if err == nil && (h.ServerName != tt.sni || h.HasSNI != tt.hasSNI) {
				t.Errorf("got %q (HasSNI %v), want %q (%v)", h.ServerName, h.HasSNI, tt.sni, tt.hasSNI)
			}
			c.Release()
			ref, ok := cryptoTLS(tt.in)
			if ok != (err == nil) && !tt.tlsDiff {
				t.Errorf("crypto/tls accepted=%v (%q), we accepted=%v: undocumented difference", ok, ref.ServerName, err == nil)
			}
			if ok && err == nil && ref.ServerName != h.ServerName {
				t.Errorf("crypto/tls saw %q, we saw %q", ref.ServerName, h.ServerName)
			}
		})
	}
}

func TestReadTimeout(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin")
	tests := []struct {
		name     string
		send     []byte
		pause    time.Duration // between bytes
		timeout  time.Duration
		wantConn bool
	}{
		{"sends nothing", nil, 0, 100 * time.Millisecond, false},
		{"stops mid-hello", pq[:100], 0, 100 * time.Millisecond, true},
		{"sends 1 byte per second", pq, time.Second, 2500 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv := tcpPair(t)
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i := range tt.send {
					if tt.pause == 0 {
						cli.Write(tt.send)
						return
					}
					if _, err := cli.Write(tt.send[i : i+1]); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(tt.pause):
					}
				}
			}()
			_, c, err := Read(srv, Options{Timeout: tt.timeout})
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, want ErrTimeout and os.ErrDeadlineExceeded", err)
			}
			if (c != nil) != tt.wantConn {
				t.Fatalf("got Conn %v, want one: %v", c != nil, tt.wantConn)
			}
			if c != nil && !bytes.HasPrefix(tt.send, c.Buffered()) {
				t.Errorf("Buffered got %q, want a prefix of what was sent", c.Buffered())
			}
			c.Release()
			// The deadline is cleared: a later read waits for data.
			srv.SetReadDeadline(time.Time{})
		})
	}
}

func TestReadClosed(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin")
	tests := []struct {
		name     string
		send     []byte
		want     error
		wantConn bool
	}{
		{"closes at once", nil, io.EOF, false},
		{"closes mid-hello", pq[:300], io.ErrUnexpectedEOF, true},
		{"closes mid-header", pq[:3], io.ErrUnexpectedEOF, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv := tcpPair(t)
			cli.Write(tt.send)
			cli.CloseWrite()
			_, c, err := Read(srv, Options{Timeout: 5 * time.Second})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if (c != nil) != tt.wantConn {
				t.Fatalf("got Conn %v, want %v", c != nil, tt.wantConn)
			}
			if c != nil && !bytes.Equal(c.Buffered(), tt.send) {
				t.Errorf("Buffered got %d bytes, want %d", len(c.Buffered()), len(tt.send))
			}
			c.Release()
		})
	}
}

// TestReadClearsDeadline checks that the deadline Read set does not outlive
// it: a read after a longer pause than Options.Timeout still succeeds.
func TestReadClearsDeadline(t *testing.T) {
	cli, srv := tcpPair(t)
	pq := loadHello(t, "go-tls13-mlkem.bin")
	cli.Write(pq)
	_, c, err := Read(srv, Options{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		time.Sleep(150 * time.Millisecond)
		cli.Write([]byte("late"))
	}()
	buf := make([]byte, len(pq)+4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read after the hello: %v", err)
	}
	if got, want := string(buf[len(pq):]), "late"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestConnCopy checks that after Read, io.Copy in both directions moves the
// replay and then the rest of the stream byte for byte, through the
// *net.TCPConn of each side (so the kernel may splice).
func TestConnCopy(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin")
	rest := make([]byte, 1<<20)
	rand.Read(rest)
	tests := []struct {
		name string
		read func(c *Conn, p []byte) error // consumes part of the replay first
		skip int
	}{
		{"WriteTo at once", func(*Conn, []byte) error { return nil }, 0},
		{"after reading 10 bytes", func(c *Conn, p []byte) error { _, err := io.ReadFull(c, p[:10]); return err }, 10},
		{"after draining the replay", func(c *Conn, p []byte) error { _, err := io.ReadFull(c, p[:len(pq)]); return err }, len(pq)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv := tcpPair(t)
			upCli, upSrv := tcpPair(t) // the "upstream": we write to upCli, it reads on upSrv
			go func() {
				cli.Write(pq)
				cli.Write(rest)
				cli.CloseWrite()
			}()
			_, c, err := Read(srv, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.TCPConn() == nil {
				t.Fatal("TCPConn() is nil for a TCP socket")
			}
			head := make([]byte, len(pq))
			if err := tt.read(c, head); err != nil {
				t.Fatal(err)
			}
			wait := readAllFrom(upSrv)
			n, err := io.Copy(upCli, c) // Conn.WriteTo -> TCPConn.WriteTo -> splice
			if err != nil {
				t.Fatal(err)
			}
			upCli.CloseWrite()
			got, err := wait()
			if err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(pq[tt.skip:]), rest...)
			if int(n) != len(want) || !bytes.Equal(got, want) {
				t.Fatalf("upstream got %d bytes (copied %d), want %d", len(got), n, len(want))
			}

			// The other direction: io.Copy(conn, upstream) uses ReadFrom.
			back := []byte(fmt.Sprintf("%x", rest[:4096]))
			waitCli := readAllFrom(cli)
			go func() { upSrv.Write(back); upSrv.CloseWrite() }()
			if _, err := io.Copy(c, upCli); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			gotBack, _ := waitCli()
			if !bytes.Equal(gotBack, back) {
				t.Fatalf("client got %d bytes, want %d", len(gotBack), len(back))
			}
		})
	}
}

// TestReadOverNonTCP checks Read and the replay on a socket that is not a
// *net.TCPConn (a net.Pipe).
func TestReadOverNonTCP(t *testing.T) {
	pq := loadHello(t, "openssl.bin")
	a, b := net.Pipe()
	defer a.Close()
	go func() { a.Write(pq); a.Write([]byte("more")); a.Close() }()
	h, c, err := Read(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.TCPConn() != nil {
		t.Error("TCPConn() not nil over a pipe")
	}
	if err := c.CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite over a pipe: got %v, want errors.ErrUnsupported", err)
	}
	if h.ServerName != "openssl.example.cn" {
		t.Errorf("got %q, want %q", h.ServerName, "openssl.example.cn")
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, c); err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(pq), "more"...); !bytes.Equal(out.Bytes(), want) {
		t.Errorf("got %d bytes, want %d", out.Len(), len(want))
	}
}

// TestReadAllocs asserts the hot path allocates nothing once the pool is
// warm, when the Conn is released.
func TestReadAllocs(t *testing.T) {
	for _, name := range captured {
		t.Run(name, func(t *testing.T) {
			mc := newMemConn(loadHello(t, name))
			allocs := testing.AllocsPerRun(200, func() {
				mc.reset()
				_, c, err := Read(mc, Options{})
				if err != nil {
					t.Fatal(err)
				}
				c.Release()
			})
			if allocs != 0 {
				t.Errorf("got %v allocs per Read, want 0", allocs)
			}
		})
	}
}

func TestParseHandshake(t *testing.T) {
	for _, name := range captured {
		t.Run(name, func(t *testing.T) {
			b := loadHello(t, name)
			msg := messageOf(t, b)
			h, err := ParseHandshake(msg)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := cryptoTLS(b)
			if h.ServerName != ref.ServerName || !slices.Equal(h.ALPN, ref.ALPN) {
				t.Errorf("got %q %q, want %q %q", h.ServerName, h.ALPN, ref.ServerName, ref.ALPN)
			}
			for i := range len(msg) {
				_, err := ParseHandshake(msg[:i])
				if !errors.Is(err, ErrMalformed) || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("prefix of %d bytes: got %v, want ErrMalformed and io.ErrUnexpectedEOF", i, err)
				}
			}
		})
	}
}

func TestHelloClone(t *testing.T) {
	mc := newMemConn(loadHello(t, "curl.bin"))
	h, c, err := Read(mc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	k := h.Clone()
	c.Release()
	// Reuse the pooled buffer for another hello.
	mc2 := newMemConn(loadHello(t, "openssl.bin"))
	_, c2, err := Read(mc2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Release()
	if k.ServerName != "curl.example.cn" || !slices.Equal(k.ALPN, []string{"h2", "http/1.1"}) {
		t.Errorf("clone got %q %q, want %q %q", k.ServerName, k.ALPN, "curl.example.cn", []string{"h2", "http/1.1"})
	}
}

// TestParseHandshakeQUIC parses the CRYPTO data of a real QUIC client
// (crypto/tls's QUIC API), whole and in every shorter prefix.
func TestParseHandshakeQUIC(t *testing.T) {
	msg := loadHello(t, "go-quic-crypto.bin")
	h, err := ParseHandshake(msg)
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerName != "quic.example.cn" || !slices.Equal(h.ALPN, []string{"h3"}) || !slices.Equal(h.SupportedVersions, []uint16{0x0304}) {
		t.Errorf("got %q %q %x, want %q %q %x", h.ServerName, h.ALPN, h.SupportedVersions, "quic.example.cn", []string{"h3"}, []uint16{0x0304})
	}
	if h.RecordVersion != 0 {
		t.Errorf("RecordVersion got %#04x, want 0", h.RecordVersion)
	}
	ref, ok := cryptoTLS(recordsOf(msg, maxPlaintext))
	if !ok || ref.ServerName != h.ServerName || !slices.Equal(ref.ALPN, h.ALPN) {
		t.Errorf("crypto/tls (accepted %v) saw %q %q, we saw %q %q", ok, ref.ServerName, ref.ALPN, h.ServerName, h.ALPN)
	}
	for i := range len(msg) {
		if _, err := ParseHandshake(msg[:i]); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("prefix of %d bytes: got %v, want io.ErrUnexpectedEOF", i, err)
		}
	}
	if _, err := ParseHandshake(append(slices.Clone(msg), "trailing"...)); err != nil {
		t.Errorf("trailing bytes after the message: got %v, want nil", err)
	}
}

// TestReadKeepsExtraBytes checks that bytes after the hello (more
// handshake data in the last record, early data in later records) are
// consumed only as far as they arrived, and replayed.
func TestReadKeepsExtraBytes(t *testing.T) {
	msg := messageOf(t, loadHello(t, "openssl.bin"))
	tests := []struct {
		name string
		in   []byte
		min  int // bytes Read must have consumed at least
	}{
		{"more handshake bytes in the record", recordsOf(append(slices.Clone(msg), 0x0b, 0, 0, 0), maxPlaintext), len(msg) + 9},
		{"application data after the hello", append(recordsOf(msg, maxPlaintext), 23, 3, 3, 0, 3, 'a', 'b', 'c'), len(msg) + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, c, sent, err := readOver(t, Options{}, 0, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Release()
			if h.ServerName != "openssl.example.cn" {
				t.Errorf("got %q, want %q", h.ServerName, "openssl.example.cn")
			}
			if got := c.Buffered(); !bytes.HasPrefix(sent, got) || len(got) < tt.min {
				t.Errorf("Buffered got %d bytes, want a prefix of the %d sent of at least %d", len(got), len(sent), tt.min)
			}
			ref, ok := cryptoTLS(tt.in)
			if !ok || ref.ServerName != h.ServerName {
				t.Errorf("crypto/tls (accepted %v) saw %q, we saw %q", ok, ref.ServerName, h.ServerName)
			}
		})
	}
}

// TestConnRelease checks Release and Close on used, released and nil
// Conns.
func TestConnRelease(t *testing.T) {
	var nilConn *Conn
	nilConn.Release() // no panic
	mc := newMemConn(loadHello(t, "curl.bin"))
	_, c, err := Read(mc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Release()
	c.Release() // idempotent
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Close after Release: got %v, want net.ErrClosed", err)
	}
}

// TestConnCloseUnblocks checks that Close, called while another goroutine
// copies from the Conn, stops that copy without a race or a panic.
func TestConnCloseUnblocks(t *testing.T) {
	cli, srv := tcpPair(t)
	pq := loadHello(t, "go-tls13-mlkem.bin")
	cli.Write(pq)
	_, c, err := Read(srv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, c) // replays, then blocks on the socket
		done <- n
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-done:
		if n != int64(len(pq)) {
			t.Errorf("copied %d bytes, want %d", n, len(pq))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock the copy")
	}
	c.Release()
}

// TestFixtures checks that the captured hellos are what their names say:
// the post-quantum one offers an X25519MLKEM768 key share (0x11ec), the
// ECH one carries an outer ECH extension, the TLS 1.2 one no key share.
func TestFixtures(t *testing.T) {
	keyShareGroups := func(e []ext) []uint16 {
		var groups []uint16
		for _, x := range e {
			if x.typ != extKeyShare {
				continue
			}
			d := x.data[2:]
			for len(d) >= 4 {
				groups = append(groups, uint16(d[0])<<8|uint16(d[1]))
				d = d[4+(int(d[2])<<8|int(d[3])):]
			}
		}
		return groups
	}
	has := func(e []ext, typ uint16) bool {
		return slices.ContainsFunc(e, func(x ext) bool { return x.typ == typ })
	}
	tests := []struct {
		file  string
		check func(e []ext) bool
	}{
		{"go-tls13-mlkem.bin", func(e []ext) bool { return slices.Contains(keyShareGroups(e), 0x11ec) }},
		{"go-ech.bin", func(e []ext) bool {
			i := slices.IndexFunc(e, func(x ext) bool { return x.typ == extECH })
			return i >= 0 && len(e[i].data) > 100 && e[i].data[0] == 0
		}},
		{"go-tls12.bin", func(e []ext) bool { return !has(e, extKeyShare) }},
		{"openssl-nosni.bin", func(e []ext) bool { return !has(e, extServerName) }},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, e := splitHello(t, messageOf(t, loadHello(t, tt.file)))
			if !tt.check(e) {
				t.Errorf("fixture %s does not have the property its name claims", tt.file)
			}
		})
	}
}

// TestConnReadAfterClose: once closed, the Conn stops replaying too, as a
// net.Conn must (Read and WriteTo return net.ErrClosed, not stale bytes).
func TestConnReadAfterClose(t *testing.T) {
	for _, name := range []string{"Read", "WriteTo"} {
		t.Run(name, func(t *testing.T) {
			_, c, err := Read(newMemConn(loadHello(t, "curl.bin")), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Release()
			if len(c.Buffered()) == 0 {
				t.Fatal("nothing buffered to replay")
			}
			c.Close()
			var n int64
			if name == "Read" {
				var k int
				k, err = c.Read(make([]byte, 64))
				n = int64(k)
			} else {
				n, err = c.WriteTo(io.Discard)
			}
			if n != 0 || !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s after Close: got (%d, %v), want (0, net.ErrClosed)", name, n, err)
			}
		})
	}
}

// TestNewConn: a Conn made from bytes read elsewhere replays them, then
// reads on from the socket; Buffered shows what is left of them.
func TestNewConn(t *testing.T) {
	client, server := tcpPair(t)
	consumed := []byte("\x16\x03\x01 hello bytes")
	sc := NewConn(server, consumed)
	defer sc.Release()
	consumed[0] = 'X' // NewConn copied them
	if got := sc.Buffered(); string(got) != "\x16\x03\x01 hello bytes" {
		t.Fatalf("Buffered: got %q", got)
	}
	if sc.TCPConn() != server {
		t.Error("TCPConn is not the socket")
	}
	client.Write([]byte(" and the rest"))
	client.Close()
	got, err := io.ReadAll(sc)
	if err != nil || string(got) != "\x16\x03\x01 hello bytes and the rest" {
		t.Fatalf("read: got %q, %v", got, err)
	}
}
