package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// captured lists the hellos in testdata/ (see testdata/README.txt).
var captured = []string{"go-tls12.bin", "go-tls13-mlkem.bin", "go-ech.bin", "openssl.bin", "openssl-nosni.bin", "curl.bin"}

// loadHello returns a captured hello: the records a client sent.
func loadHello(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// messageOf reassembles the handshake message carried by well-formed
// records (test fixtures only).
func messageOf(tb testing.TB, recs []byte) []byte {
	tb.Helper()
	var msg []byte
	for len(recs) >= 5 {
		n := int(recs[3])<<8 | int(recs[4])
		msg = append(msg, recs[5:5+n]...)
		recs = recs[5+n:]
		if len(msg) >= 4 && len(msg) >= 4+(int(msg[1])<<16|int(msg[2])<<8|int(msg[3])) {
			return msg
		}
	}
	tb.Fatal("records do not hold a complete handshake message")
	return nil
}

// recordsOf fragments a handshake message into records of at most size
// bytes with record version 0x0301, as clients send them.
func recordsOf(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// ext is one ClientHello extension.
type ext struct {
	typ  uint16
	data []byte
}

// splitHello splits a ClientHello message into the part before the
// extensions block (handshake header excluded) and the extensions.
func splitHello(tb testing.TB, msg []byte) ([]byte, []ext) {
	tb.Helper()
	s := cryptobyte.String(msg[4:])
	start := len(s)
	var skip cryptobyte.String
	if !s.Skip(2+32) || !s.ReadUint8LengthPrefixed(&skip) || !s.ReadUint16LengthPrefixed(&skip) || !s.ReadUint8LengthPrefixed(&skip) {
		tb.Fatal("bad fixture hello")
	}
	prefix := msg[4 : 4+start-len(s)]
	var exts cryptobyte.String
	var out []ext
	if !s.ReadUint16LengthPrefixed(&exts) {
		tb.Fatal("bad fixture extensions")
	}
	for !exts.Empty() {
		var e ext
		var d cryptobyte.String
		exts.ReadUint16(&e.typ)
		exts.ReadUint16LengthPrefixed(&d)
		e.data = d
		out = append(out, e)
	}
	return prefix, out
}

// joinHello builds a ClientHello message from a prefix and extensions.
func joinHello(prefix []byte, exts []ext) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint8(typeClientHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes(prefix)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range exts {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	})
	return b.BytesOrPanic()
}

// editHello rewrites the extensions of a hello message; the pre_shared_key
// extension, if any, stays last.
func editHello(tb testing.TB, msg []byte, edit func([]ext) []ext) []byte {
	tb.Helper()
	prefix, exts := splitHello(tb, msg)
	exts = edit(slices.Clone(exts))
	return joinHello(prefix, exts)
}

// withoutExt removes extension typ.
func withoutExt(exts []ext, typ uint16) []ext {
	return slices.DeleteFunc(exts, func(e ext) bool { return e.typ == typ })
}

// setSNI replaces the server_name extension by one with the given raw
// entries (name type, name), or by an empty list when entries is empty.
func setSNI(entries ...sniEntry) func([]ext) []ext {
	return func(exts []ext) []ext {
		b := cryptobyte.NewBuilder(nil)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range entries {
				b.AddUint8(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(e.name)) })
			}
		})
		return append([]ext{{extServerName, b.BytesOrPanic()}}, withoutExt(exts, extServerName)...)
	}
}

// sniEntry is one server_name list entry.
type sniEntry struct {
	typ  uint8
	name string
}

// padded returns records of at most 16384 bytes that carry msg with a
// padding extension (21) added so that the records total exactly total
// bytes.
func padded(tb testing.TB, msg []byte, total int) []byte {
	tb.Helper()
	base := len(recordsOf(editHello(tb, msg, func(e []ext) []ext { return append(e, ext{21, nil}) }), maxPlaintext))
	for p := max(0, total-base-100); p <= total-base+10; p++ {
		m := editHello(tb, msg, func(e []ext) []ext { return append(e, ext{21, make([]byte, p)}) })
		if r := recordsOf(m, maxPlaintext); len(r) == total {
			return r
		}
	}
	tb.Fatalf("cannot pad to %d bytes", total)
	return nil
}

// memConn is an in-memory net.Conn that reads from a fixed byte slice (EOF
// at its end) and discards writes. It stands in for a socket only where the
// peer is a parser (crypto/tls, fuzzing, allocation counts).
type memConn struct {
	r bytes.Reader
	b []byte
}

func newMemConn(b []byte) *memConn {
	c := &memConn{b: b}
	c.r.Reset(b)
	return c
}

func (c *memConn) reset()                             { c.r.Reset(c.b) }
func (c *memConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// refHello is what crypto/tls's server reports to GetConfigForClient.
type refHello struct {
	ServerName string
	ALPN       []string
	Versions   []uint16
}

var errAbort = errors.New("abort after client hello")

// cryptoTLS feeds b to a crypto/tls server and reports whether it got as
// far as GetConfigForClient, and what it saw there.
func cryptoTLS(b []byte) (refHello, bool) {
	var got refHello
	seen := false
	srv := tls.Server(newMemConn(b), &tls.Config{
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			seen = true
			got = refHello{chi.ServerName, chi.SupportedProtos, chi.SupportedVersions}
			return nil, errAbort
		},
	})
	srv.Handshake()
	return got, seen
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (client, server *net.TCPConn) {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- res{c, err}
	}()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// readAllFrom drains r in the background and returns a function that waits
// for the result.
func readAllFrom(r io.Reader) func() ([]byte, error) {
	ch := make(chan []byte, 1)
	var err error
	go func() {
		var b []byte
		b, err = io.ReadAll(r)
		ch <- b
	}()
	return func() ([]byte, error) { b := <-ch; return b, err }
}
