package sni

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Buffer sizes. Nearly every real hello (post-quantum key shares included,
// about 1.8 KiB) fits the pooled buffer in one read; larger ones grow it, and
// a buffer grown past poolMax is dropped rather than pooled.
const (
	initialBuf = 8 << 10
	poolMax    = 16 << 10
)

// Interface guards.
var (
	_ net.Conn      = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)

// Conn is the connection Read returns: a net.Conn whose next reads first
// return exactly the bytes Read consumed, then read on from the socket.
//
// A Conn comes from a pool, with its buffer. Release returns it: call it
// once no goroutine uses the Conn any more; after that the Conn, its
// Buffered bytes and the Hello read with it must not be used. Close only
// closes the socket: it stays safe to call while another goroutine is in
// Read or ReadFrom (that is how a relay stops the other direction), so it
// cannot recycle anything. A Conn that is never released is collected by
// the GC like any other value.
//
// Conn is not safe for concurrent reads, like any net.Conn; one reader and
// one writer may run at the same time.
type Conn struct {
	net.Conn              // the socket
	tcp      *net.TCPConn // the socket when it is a *net.TCPConn, else nil
	buf      []byte       // bytes consumed by Read
	off      int          // bytes of buf already replayed
	msg      []byte       // handshake message reassembled across records
	alpn     [8]string    // backing array of Hello.ALPN
	vers     [8]uint16    // backing array of Hello.SupportedVersions
	p        parser
	closed   atomic.Bool // set by Close: the replay stops too (net.Conn's contract)
}

var connPool = sync.Pool{New: func() any { return new(Conn) }}

// getConn takes a Conn from the pool for socket c.
func getConn(c net.Conn) *Conn {
	sc := connPool.Get().(*Conn)
	sc.Conn = c
	sc.tcp, _ = c.(*net.TCPConn)
	if sc.buf == nil {
		sc.buf = make([]byte, 0, initialBuf)
	}
	return sc
}

// NewConn returns a Conn for socket c whose reads first return consumed
// (copied), then read on from c: for a caller that read the hello off the
// socket itself and hands the connection to code that wants a Conn.
// Release it like one from Read.
func NewConn(c net.Conn, consumed []byte) *Conn {
	sc := getConn(c)
	sc.buf = append(sc.buf[:0], consumed...)
	return sc
}

// Release returns the Conn and its buffer to the pool. It does not close
// the socket: a caller that wrote Buffered elsewhere may go on with
// TCPConn (or its own reference to the socket). After Release the Conn,
// the bytes Buffered returned and the Hello's strings and slices must not
// be used. Release is idempotent and does nothing on a nil Conn.
func (c *Conn) Release() {
	if c == nil || c.Conn == nil {
		return
	}
	c.Conn, c.tcp, c.off = nil, nil, 0
	c.closed.Store(false)
	c.buf = c.buf[:0]
	if cap(c.buf) > poolMax {
		c.buf = nil
	}
	c.msg = c.msg[:0]
	if cap(c.msg) > poolMax {
		c.msg = nil
	}
	clear(c.alpn[:])
	connPool.Put(c)
}

// Close closes the socket. It does not release the Conn (see Release).
// After Release it returns net.ErrClosed.
func (c *Conn) Close() error {
	if c == nil || c.Conn == nil {
		return net.ErrClosed
	}
	c.closed.Store(true)
	return c.Conn.Close()
}

// CloseWrite shuts down the writing side of the socket (a TCP half-close),
// for relays that propagate EOF. It fails with errors.ErrUnsupported when
// the socket has no CloseWrite.
func (c *Conn) CloseWrite() error {
	if c.tcp != nil {
		return c.tcp.CloseWrite()
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("sni: %T has no CloseWrite: %w", c.Conn, errors.ErrUnsupported)
}

// Buffered returns the consumed bytes not yet replayed by Read or WriteTo.
// Right after sni.Read it is every byte Read consumed: the complete hello
// records, plus whatever else arrived in the same reads (never more than
// Options.MaxBytes in all). The slice aliases the pooled buffer.
func (c *Conn) Buffered() []byte { return c.buf[c.off:] }

// TCPConn returns the underlying *net.TCPConn, or nil when the socket is
// not one. Reading from it directly skips the replay: use it after the
// replay is drained or after writing Buffered elsewhere.
func (c *Conn) TCPConn() *net.TCPConn { return c.tcp }

// Read replays the consumed bytes, then reads from the socket.
func (c *Conn) Read(p []byte) (int, error) {
	if c.off < len(c.buf) {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		n := copy(p, c.buf[c.off:])
		c.off += n
		return n, nil
	}
	return c.Conn.Read(p)
}

// WriteTo writes the replay to w, then copies the rest of the socket to w
// through the socket's own WriteTo, so that io.Copy(tcpDst, conn) splices.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if c.off < len(c.buf) {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		n, err := w.Write(c.buf[c.off:])
		c.off += n
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	var n int64
	var err error
	if c.tcp != nil {
		n, err = c.tcp.WriteTo(w)
	} else {
		n, err = io.Copy(w, c.Conn)
	}
	return total + n, err
}

// ReadFrom copies r to the socket through the socket's own ReadFrom, so
// that io.Copy(conn, tcpSrc) splices.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if c.tcp != nil {
		return c.tcp.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// Read reads a ClientHello from c under o's deadline and byte cap.
//
// It sets a read deadline on c and clears it before returning. On success
// it returns the parsed Hello and a Conn replaying every byte consumed.
//
// On error the Hello is zero except RecordVersion, which is set once a
// first handshake record header was read (for a TLS alert). The Conn is
// nil when nothing could be read (an immediate EOF or timeout); otherwise
// it holds the bytes read (Buffered), so the caller can log them or answer,
// e.g. with an HTTP 400 or a TLS alert, and Release it as usual. The error
// wraps one of ErrNotTLS, ErrTooLarge, ErrTimeout (together with
// os.ErrDeadlineExceeded) or ErrMalformed, or else the read error itself
// (io.EOF when the client closed before sending anything,
// io.ErrUnexpectedEOF when it closed in the middle of the hello).
func Read(c net.Conn, o Options) (Hello, *Conn, error) {
	timeout, limit := o.Timeout, o.MaxBytes
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Hello{}, nil, fmt.Errorf("sni: setting read deadline: %w", err)
	}
	sc := getConn(c)
	h, err := sc.readHello(limit)
	if derr := c.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = fmt.Errorf("sni: clearing read deadline: %w", derr)
	}
	if err != nil {
		if len(sc.buf) == 0 {
			sc.Release()
			sc = nil
		}
		return Hello{RecordVersion: h.RecordVersion}, sc, err
	}
	return h, sc, nil
}

// readHello reads records until they hold a complete ClientHello message
// and parses it.
func (c *Conn) readHello(limit int) (Hello, error) {
	var h Hello
	pos := 0       // start of the next record in c.buf
	msgLen := -1   // handshake body length, once the header is known
	var msg []byte // the message when it fits in one record, else nil
	for rec := 0; ; rec++ {
		if err := c.fill(pos+recordHeaderLen, limit); err != nil {
			return h, err
		}
		hdr := c.buf[pos : pos+recordHeaderLen]
		typ, vers := hdr[0], uint16(hdr[1])<<8|uint16(hdr[2])
		n := int(hdr[3])<<8 | int(hdr[4])
		if rec == 0 {
			if typ != recordTypeHandshake || vers >= 0x1000 {
				// crypto/tls's own test for "not a TLS client"; it also
				// catches SSLv2-compatible hellos (first byte 0x80).
				return h, fmt.Errorf("sni: first record type %d version %#04x: %w", typ, vers, ErrNotTLS)
			}
			h.RecordVersion = vers
		}
		switch {
		case typ != recordTypeHandshake || vers >= 0x1000:
			return h, fmt.Errorf("sni: record %d type %d version %#04x before the hello was complete: %w", rec, typ, vers, ErrMalformed)
		case n == 0:
			return h, fmt.Errorf("sni: record %d is empty: %w", rec, ErrMalformed)
		case n > maxPlaintext:
			return h, fmt.Errorf("sni: record %d of %d bytes: %w", rec, n, ErrMalformed)
		}
		end := pos + recordHeaderLen + n
		if end > limit {
			return h, fmt.Errorf("sni: record %d ends at byte %d, limit %d: %w", rec, end, limit, ErrTooLarge)
		}
		if err := c.fill(end, limit); err != nil {
			return h, err
		}
		frag := c.buf[pos+recordHeaderLen : end]
		pos = end
		if msgLen < 0 && len(c.msg) == 0 && len(frag) >= handshakeHeaderLen {
			// Fast path: the whole message header is in this record.
			msgLen = int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])
			if err := checkHeader(frag, msgLen); err != nil {
				return h, err
			}
			if handshakeHeaderLen+msgLen <= len(frag) {
				msg = frag[:handshakeHeaderLen+msgLen]
				break
			}
		}
		c.msg = append(c.msg, frag...)
		if msgLen < 0 && len(c.msg) >= handshakeHeaderLen {
			msgLen = int(c.msg[1])<<16 | int(c.msg[2])<<8 | int(c.msg[3])
			if err := checkHeader(c.msg, msgLen); err != nil {
				return h, err
			}
			// Grow once for the whole message, not per fragment. The
			// fragment that completed the header may already hold all of
			// a short message and more: then there is nothing to grow
			// (slices.Grow panics on a negative count).
			if n := handshakeHeaderLen + msgLen - len(c.msg); n > 0 {
				c.msg = slices.Grow(c.msg, n)
			}
		}
		if msgLen >= 0 {
			want := handshakeHeaderLen + msgLen
			if len(c.msg) >= want {
				msg = c.msg[:want]
				break
			}
			// Fail early when even full-size records cannot fit the rest.
			rest := want - len(c.msg)
			if need := pos + rest + recordHeaderLen*((rest+maxPlaintext-1)/maxPlaintext); need > limit {
				return h, fmt.Errorf("sni: hello needs at least %d bytes, limit %d: %w", need, limit, ErrTooLarge)
			}
		}
	}
	if err := c.p.parse(msg, &h, c.alpn[:0], c.vers[:0]); err != nil {
		return Hello{RecordVersion: h.RecordVersion}, err
	}
	return h, nil
}

// checkHeader checks a handshake message header: a ClientHello of at most
// 64 KiB.
func checkHeader(b []byte, n int) error {
	if b[0] != typeClientHello {
		return fmt.Errorf("sni: handshake message type %d: %w", b[0], ErrMalformed)
	}
	if n > maxHandshake {
		return fmt.Errorf("sni: handshake message of %d bytes: %w", n, ErrTooLarge)
	}
	return nil
}

// fill reads until c.buf holds at least n bytes, never reading past limit.
func (c *Conn) fill(n, limit int) error {
	if n > limit {
		return fmt.Errorf("sni: need %d bytes, limit %d: %w", n, limit, ErrTooLarge)
	}
	if n > cap(c.buf) {
		size := max(2*cap(c.buf), n)
		size = min(size, limit)
		nb := make([]byte, len(c.buf), size)
		copy(nb, c.buf)
		c.buf = nb
	}
	for len(c.buf) < n {
		m, err := c.Conn.Read(c.buf[len(c.buf):min(cap(c.buf), limit)])
		c.buf = c.buf[:len(c.buf)+m]
		if len(c.buf) >= n {
			return nil // a read error then shows on the next read
		}
		if err != nil {
			return readError(err, len(c.buf))
		}
	}
	return nil
}

// readError wraps a socket error met after got bytes.
func readError(err error, got int) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("sni: after %d bytes: %w: %w", got, ErrTimeout, err)
	case err == io.EOF && got > 0:
		return fmt.Errorf("sni: client closed after %d bytes: %w", got, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("sni: reading client hello after %d bytes: %w", got, err)
}
