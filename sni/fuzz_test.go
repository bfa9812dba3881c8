package sni

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// seedInputs returns the fuzz seeds: every captured hello, and variants
// from the table tests (edited SNI, fragmentation, foreign records).
func seedInputs(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, name := range captured {
		seeds = append(seeds, loadHello(tb, name))
	}
	msg := messageOf(tb, loadHello(tb, "openssl.bin"))
	edit := func(f func([]ext) []ext) []byte { return recordsOf(editHello(tb, msg, f), maxPlaintext) }
	seeds = append(seeds,
		recordsOf(msg, 1),
		recordsOf(msg, 7),
		edit(func(e []ext) []ext { return withoutExt(e, extServerName) }),
		edit(setSNI()),
		edit(setSNI(sniEntry{0, ""})),
		edit(setSNI(sniEntry{0, "a.example.cn"}, sniEntry{0, "b.example.cn"})),
		edit(setSNI(sniEntry{1, "other"}, sniEntry{0, "a.example.cn"})),
		edit(setSNI(sniEntry{0, "a\x00b.example.cn"})),
		edit(setSNI(sniEntry{0, "example.cn."})),
		edit(func(e []ext) []ext { return append(e, ext{0x1234, nil}, ext{0x1234, nil}) }),
		edit(func(e []ext) []ext { return append(e, ext{extECH, []byte{0, 0, 1, 0, 1, 7, 0, 1, 9, 0, 1, 9}}) }),
		append([]byte{21, 3, 1, 0, 2, 1, 0}, recordsOf(msg, maxPlaintext)...),
		append([]byte{22, 3, 1, 0, 0}, recordsOf(msg, maxPlaintext)...),
		[]byte("GET / HTTP/1.1\r\nHost: example.cn\r\n\r\n"),
		[]byte{0x80, 0x2e, 0x01, 0x03, 0x01},
	)
	return seeds
}

// alertBeforeHello reports whether the records at the start of b include
// an alert record, which crypto/tls skips and Read deliberately refuses.
func alertBeforeHello(b []byte) bool {
	for len(b) >= 5 && (b[0] == 21 || b[0] == recordTypeHandshake) {
		if b[0] == 21 {
			return true
		}
		n := int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			return false
		}
		b = b[5+n:]
	}
	return false
}

// FuzzAgainstCryptoTLS feeds the same bytes to a crypto/tls server
// (stopped in GetConfigForClient) and to Read. Both must accept or reject
// alike, apart from the differences documented in the package comment,
// and report the same server name, ALPN and supported versions.
func FuzzAgainstCryptoTLS(f *testing.F) {
	for _, s := range seedInputs(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ref, refOK := cryptoTLS(b)
		// A cap above crypto/tls's own limit: size differences are
		// documented, the format must match.
		h, c, err := Read(newMemConn(b), Options{MaxBytes: 1 << 20})
		defer c.Release()
		switch {
		case refOK && err != nil:
			if alertBeforeHello(b) && (errors.Is(err, ErrNotTLS) || errors.Is(err, ErrMalformed)) {
				return // documented: no records but handshake records
			}
			t.Fatalf("crypto/tls accepted (server name %q), we rejected: %v", ref.ServerName, err)
		case !refOK && err == nil:
			t.Fatalf("we accepted (server name %q), crypto/tls rejected", h.ServerName)
		case !refOK:
			return
		}
		if h.ServerName != ref.ServerName {
			t.Fatalf("server name: got %q, want %q (crypto/tls)", h.ServerName, ref.ServerName)
		}
		if !slices.Equal(h.ALPN, ref.ALPN) {
			t.Fatalf("ALPN: got %q, want %q (crypto/tls)", h.ALPN, ref.ALPN)
		}
		if len(h.SupportedVersions) > 0 && !slices.Equal(h.SupportedVersions, ref.Versions) {
			t.Fatalf("versions: got %x, want %x (crypto/tls)", h.SupportedVersions, ref.Versions)
		}
	})
}

// FuzzRead checks that Read never panics, never consumes more than the cap
// and only replays bytes the client sent.
func FuzzRead(f *testing.F) {
	for _, s := range seedInputs(f) {
		f.Add(s, uint16(0))
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, limit uint16) {
		o := Options{MaxBytes: int(limit)}
		h, c, err := Read(newMemConn(b), o)
		if c == nil {
			if err == nil {
				t.Fatal("nil Conn without an error")
			}
			return
		}
		defer c.Release()
		got := c.Buffered()
		if !bytes.HasPrefix(b, got) {
			t.Fatalf("Buffered %q is not a prefix of the input", got)
		}
		if capB := max(o.MaxBytes, 1); o.MaxBytes > 0 && len(got) > capB {
			t.Fatalf("consumed %d bytes, cap %d", len(got), capB)
		}
		if err == nil && len(h.ServerName) > len(got) {
			t.Fatalf("server name of %d bytes from %d bytes read", len(h.ServerName), len(got))
		}
	})
}

// FuzzParseHandshake checks ParseHandshake against Read on the same
// message carried in records.
func FuzzParseHandshake(f *testing.F) {
	for _, s := range seedInputs(f) {
		if len(s) > 5 {
			f.Add(s[5:])
		}
	}
	f.Add(loadHello(f, "go-quic-crypto.bin"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := ParseHandshake(msg)
		if err != nil {
			return
		}
		n := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		h2, c, err := Read(newMemConn(recordsOf(msg[:n], maxPlaintext)), Options{MaxBytes: 1 << 20})
		defer c.Release()
		if n == 4 {
			return // no records can carry an empty message
		}
		if err != nil {
			t.Fatalf("ParseHandshake accepted, Read rejected: %v", err)
		}
		if h.ServerName != h2.ServerName || !slices.Equal(h.ALPN, h2.ALPN) || h.ECH != h2.ECH {
			t.Fatalf("ParseHandshake got %q %q %v, Read got %q %q %v", h.ServerName, h.ALPN, h.ECH, h2.ServerName, h2.ALPN, h2.ECH)
		}
	})
}
