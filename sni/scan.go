package sni

import (
	"errors"
	"net"
)

// ErrIncomplete is returned by Scanner.Scan when the bytes so far are a
// valid beginning of a ClientHello but not all of it: read more and scan
// again.
var ErrIncomplete = errors.New("client hello incomplete")

// Scanner parses a ClientHello out of bytes the caller has already read,
// for event loops that read sockets themselves and cannot block in Read.
// It applies exactly the checks of Read. A Scanner is reused from one
// connection to the next and is not safe for concurrent use; the zero
// value is ready.
type Scanner struct {
	c Conn
	r bytesReader
}

// Scan parses the ClientHello at the start of b, the bytes a client has
// sent so far, reading at most limit bytes of it (DefaultMaxBytes when 0).
// It returns an error wrapping ErrIncomplete when b ends before the hello
// does, or one wrapping ErrNotTLS, ErrTooLarge or ErrMalformed, like Read.
// The Hello's strings alias the Scanner's buffers: they stay valid until
// the next Scan.
func (s *Scanner) Scan(b []byte, limit int) (Hello, error) {
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	c := &s.c
	if cap(c.buf) < initialBuf || cap(c.buf) > poolMax {
		c.buf = make([]byte, 0, initialBuf)
	}
	c.buf, c.msg, c.off = c.buf[:0], c.msg[:0], 0
	if cap(c.msg) > poolMax {
		c.msg = nil
	}
	s.r.b = b
	c.Conn = &s.r
	h, err := c.readHello(limit)
	c.Conn, s.r.b = nil, nil
	return h, err
}

// bytesReader is the net.Conn a Scanner reads from: b, then ErrIncomplete.
// Only Read is ever called (by Conn.fill).
type bytesReader struct {
	net.Conn
	b []byte
}

func (r *bytesReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, ErrIncomplete
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
