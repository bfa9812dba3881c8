package sni

import (
	"io"
	"testing"
)

// benchHellos are a real post-quantum hello (Go crypto/tls, about 1.5 KiB)
// and the same hello padded to 6 KiB.
func benchHellos(b *testing.B) []struct {
	name string
	recs []byte
} {
	pq := loadHello(b, "go-tls13-mlkem.bin")
	return []struct {
		name string
		recs []byte
	}{
		{"1.5KiB", pq},
		{"6KiB", padded(b, messageOf(b, pq), 6<<10)},
	}
}

// BenchmarkParseHandshake is the public parse-only entry point (it
// allocates the ALPN and versions slices).
func BenchmarkParseHandshake(b *testing.B) {
	for _, h := range benchHellos(b) {
		msg := messageOf(b, h.recs)
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := ParseHandshake(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse is the parser alone with the pooled scratch Read uses.
func BenchmarkParse(b *testing.B) {
	for _, h := range benchHellos(b) {
		msg := messageOf(b, h.recs)
		b.Run(h.name, func(b *testing.B) {
			c := new(Conn)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				var hello Hello
				if err := c.p.parse(msg, &hello, c.alpn[:0], c.vers[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadMem is Read (record reassembly, parse, pooled Conn) over an
// in-memory reader.
func BenchmarkReadMem(b *testing.B) {
	for _, h := range benchHellos(b) {
		b.Run(h.name, func(b *testing.B) {
			mc := newMemConn(h.recs)
			b.ReportAllocs()
			b.SetBytes(int64(len(h.recs)))
			for b.Loop() {
				mc.reset()
				_, c, err := Read(mc, Options{})
				if err != nil {
					b.Fatal(err)
				}
				c.Release()
			}
		})
	}
}

// BenchmarkReadWorstCase is Read on the costliest input the default cap
// allows: a 64 KiB hello in 1-byte records (about 11,000 of them).
func BenchmarkReadWorstCase(b *testing.B) {
	msg := messageOf(b, padded(b, messageOf(b, loadHello(b, "go-tls13-mlkem.bin")), 11000))
	recs := recordsOf(msg, 1)
	mc := newMemConn(recs[:min(len(recs), DefaultMaxBytes)])
	b.ReportAllocs()
	b.SetBytes(DefaultMaxBytes)
	for b.Loop() {
		mc.reset()
		_, c, err := Read(mc, Options{})
		if err == nil {
			b.Fatal("a 66 KiB hello passed a 64 KiB cap")
		}
		c.Release()
	}
}

// BenchmarkReadLoopback is Read over a loopback TCP connection: the client
// sends a hello, the server reads it and acknowledges with one byte. It
// includes the round trip and the deadline system calls.
func BenchmarkReadLoopback(b *testing.B) {
	for _, h := range benchHellos(b) {
		b.Run(h.name, func(b *testing.B) {
			cli, srv := tcpPair(b)
			done := make(chan error, 1)
			go func() {
				ack := make([]byte, 1)
				for {
					if _, err := cli.Write(h.recs); err != nil {
						done <- err
						return
					}
					if _, err := io.ReadFull(cli, ack); err != nil {
						done <- nil
						return
					}
				}
			}()
			ack := []byte{1}
			b.ReportAllocs()
			b.SetBytes(int64(len(h.recs)))
			for b.Loop() {
				_, c, err := Read(srv, Options{})
				if err != nil {
					b.Fatal(err)
				}
				c.Release()
				srv.Write(ack)
			}
			srv.Close()
			<-done
		})
	}
}

// BenchmarkCryptoTLS is the reference: a crypto/tls server reading the same
// bytes from memory and stopping in GetConfigForClient.
func BenchmarkCryptoTLS(b *testing.B) {
	for _, h := range benchHellos(b) {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(h.recs)))
			for b.Loop() {
				if _, ok := cryptoTLS(h.recs); !ok {
					b.Fatal("crypto/tls rejected the hello")
				}
			}
		})
	}
}
