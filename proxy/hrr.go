package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/icpgate/icpgate/sni"
)

// The second ClientHello of a TLS 1.3 handshake.
//
// A server that cannot use any key share of the client's hello answers
// with a HelloRetryRequest (RFC 8446 §4.1.4), and the client sends a
// second ClientHello on the same connection. The server routes that
// handshake by the second hello's SNI, so a client could offer a filed
// name without a usable key share, draw the retry, and name an unfiled
// site in the second hello. Passthrough can see this: a HelloRetryRequest
// is a plaintext ServerHello whose random is a fixed value, and the second
// hello is plaintext too.
//
// So after a pass, the first bytes the server sends are peeked (MSG_PEEK,
// nothing is copied): when they are not a HelloRetryRequest, which is
// nearly always, the relay starts as it would have. When they are, the
// client's next hello is read and decided before any of it reaches the
// server: a name that is missing or differs from the first one's (ASCII
// case aside) is blocked with reason hrr_sni_mismatch, and the same name is
// decided afresh (the registry may have changed meanwhile). Until the
// server's first bytes are classified the client's later bytes wait in
// the kernel: a TLS server answers the hello without waiting for them.

// reasonRetryMismatch is the decision reason of a second ClientHello whose
// server name is not the first one's.
const reasonRetryMismatch = "hrr_sni_mismatch"

// helloRetryRandom is the ServerHello.random of a HelloRetryRequest:
// SHA-256("HelloRetryRequest").
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// TLS record and handshake constants the retry check reads (and
// recordTypeHandshake, sniff.go's).
const (
	recordTypeCCS     = 20
	recordTypeAppData = 23
	typeServerHello   = 2
	// retryPrefix is how much of the server's first handshake message
	// tells a HelloRetryRequest: type, length, legacy_version, random.
	retryPrefix = 4 + 2 + 32
	// retryPeek is the most bytes peeked: enough for retryPrefix even if
	// the server sent it one byte per record.
	retryPeek = 256
	// maxRecordBody is the largest record body RFC 8446 allows
	// (ciphertext: 2^14 + 256).
	maxRecordBody = 1<<14 + 256
)

// Results of serverFirst.
const (
	retryMore = iota // too few bytes to tell
	retryNo          // not a HelloRetryRequest
	retryYes         // a HelloRetryRequest
)

// serverFirst reports whether b, the first bytes a TLS server sent,
// start with a HelloRetryRequest. It reassembles the first retryPrefix
// bytes of the first handshake message across records. A server that
// starts with anything else (an alert, a ServerHello, a TLS 1.2 flight)
// is retryNo; so is an empty handshake record, which RFC 8446 forbids
// and the client rejects, so that every record looked at carries at least
// one byte and retryPeek bytes always suffice.
func serverFirst(b []byte) int {
	var msg [retryPrefix]byte
	n := 0
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			return retryMore
		}
		l := int(b[3])<<8 | int(b[4])
		if b[0] != recordTypeHandshake || l == 0 {
			return retryNo
		}
		frag := b[recordHeaderLen:]
		if len(frag) > l {
			frag = frag[:l]
		}
		n += copy(msg[n:], frag)
		if n > 0 && msg[0] != typeServerHello {
			return retryNo
		}
		if n == len(msg) {
			if [32]byte(msg[6:]) == helloRetryRandom {
				return retryYes
			}
			return retryNo
		}
		if len(frag) < l {
			return retryMore
		}
		b = b[recordHeaderLen+l:]
	}
	return retryMore
}

const recordHeaderLen = 5

// scanRetryHello parses the client's bytes after a HelloRetryRequest, b so
// far: any change_cipher_spec record (middlebox compatibility mode sends
// one before the second hello) and application_data records (early data
// the server skips after a retry), then the ClientHello, which s parses
// with the checks of sni.Read. The whole is capped at sni.DefaultMaxBytes.
// It returns the hello and the bytes it spans from the start of b, or an
// error wrapping sni.ErrIncomplete (read more), sni.ErrTooLarge,
// sni.ErrNotTLS or sni.ErrMalformed. The Hello aliases s's buffers.
func scanRetryHello(s *sni.Scanner, b []byte) (sni.Hello, error) {
	off := 0
	for len(b)-off >= 1 && (b[off] == recordTypeCCS || b[off] == recordTypeAppData) {
		if len(b)-off < recordHeaderLen {
			return sni.Hello{}, sni.ErrIncomplete
		}
		l := int(b[off+3])<<8 | int(b[off+4])
		if l == 0 || l > maxRecordBody {
			return sni.Hello{}, fmt.Errorf("record of %d bytes before the second client hello: %w", l, sni.ErrMalformed)
		}
		off += recordHeaderLen + l
		if off >= sni.DefaultMaxBytes {
			return sni.Hello{}, fmt.Errorf("records before the second client hello exceed %d bytes: %w", sni.DefaultMaxBytes, sni.ErrTooLarge)
		}
		if off > len(b) {
			return sni.Hello{}, sni.ErrIncomplete
		}
	}
	if off == len(b) {
		return sni.Hello{}, sni.ErrIncomplete
	}
	return s.Scan(b[off:], sni.DefaultMaxBytes-off)
}

// sameServerName reports whether a second hello names the first one's
// server (first, had), ignoring ASCII case: both without SNI, or both the
// same name.
func sameServerName(first string, had bool, second *sni.Hello) bool {
	if had != second.HasSNI || len(first) != len(second.ServerName) {
		return false
	}
	for i := 0; i < len(first); i++ {
		if lower(first[i]) != lower(second.ServerName[i]) {
			return false
		}
	}
	return true
}

// decideRetry decides the second ClientHello of a connection whose first
// hello named first (had: it had an SNI) and passed: a different name is
// blocked (counted as reason hrr_sni_mismatch), the same name is decided
// again like a first hello.
func (s *Server) decideRetry(rt *listenerRuntime, first string, had bool, hello *sni.Hello, client netip.AddrPort, dst func() netip.AddrPort) Decision {
	if !sameServerName(first, had, hello) {
		d := Decision{Reason: reasonRetryMismatch}
		s.countDecision("tls", &d)
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("tls blocked: the hello after a retry names another server", "sni", hello.ServerName, "first_sni", first, "client", client.Addr().String())
		}
		s.blocks.Log(rt.cfg.Name, "tls", hello.ServerName, reasonRetryMismatch, client)
		return d
	}
	return s.decideHello(rt, hello, client.Addr(), client, dst)
}

// retryPeeker peeks at the first bytes of an upstream socket for the
// goroutine path, with its callback made once (pooled), so that a
// connection's look allocates nothing.
type retryPeeker struct {
	buf   [retryPeek]byte
	n     int
	errno syscall.Errno
	kind  int
	f     func(fd uintptr) bool
}

var retryPeekers = sync.Pool{New: func() any {
	p := new(retryPeeker)
	p.f = func(fd uintptr) bool {
		p.n, p.errno = peekSocket(fd, p.buf[:])
		switch {
		case p.errno == syscall.EAGAIN:
			return false // wait for the server's first bytes
		case p.errno != 0 || p.n == 0:
			p.kind = retryNo
			return true
		}
		p.kind = serverFirst(p.buf[:p.n])
		if p.kind == retryMore && p.n == len(p.buf) {
			// Cannot happen (see serverFirst); fail closed.
			p.kind = retryYes
		}
		return p.kind != retryMore // more: wait for the rest
	}
	return p
}}

// peekHelloRetry waits for the server's first bytes on up and reports
// whether they are a HelloRetryRequest. EOF reads false: the relay that
// follows meets it. An error is returned: the peek took it off the socket
// (a reset is reported once), so the relay would see a mere EOF. The wait
// is bounded by the idle watchdog and the drain, which close up (the
// caller has called startRelay).
func peekHelloRetry(up *net.TCPConn) (bool, error) {
	rc, err := up.SyscallConn()
	if err != nil {
		return false, err
	}
	p := retryPeekers.Get().(*retryPeeker)
	p.kind, p.errno = retryNo, 0
	err = rc.Read(p.f)
	if err == nil && p.errno != 0 {
		err = &net.OpError{Op: "recvfrom", Net: "tcp", Err: p.errno}
	}
	yes := err == nil && p.kind == retryYes
	retryPeekers.Put(p)
	return yes, err
}

// errRetryRecord reports a server flight that is not the records of one
// HelloRetryRequest.
var errRetryRecord = errors.New("server's hello retry request is not handshake records")

// forwardHelloRetry copies the HelloRetryRequest at the start of src to
// dst, record by record, and stops at the end of the record that ends
// it: what the server sends next stays in src for the relay.
func forwardHelloRetry(dst io.Writer, src io.Reader) error {
	var hdr [recordHeaderLen]byte
	var msgHdr [4]byte
	got, want := 0, -1 // handshake bytes forwarded, message length with header
	body := make([]byte, maxRecordBody)
	for want < 0 || got < want {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return fmt.Errorf("reading the server's hello retry request: %w", err)
		}
		l := int(hdr[3])<<8 | int(hdr[4])
		if hdr[0] != recordTypeHandshake || l == 0 || l > maxRecordBody {
			return errRetryRecord
		}
		if _, err := io.ReadFull(src, body[:l]); err != nil {
			return fmt.Errorf("reading the server's hello retry request: %w", err)
		}
		if got < len(msgHdr) {
			copy(msgHdr[got:], body[:l])
		}
		got += l
		if want < 0 && got >= len(msgHdr) {
			want = len(msgHdr) + (int(msgHdr[1])<<16 | int(msgHdr[2])<<8 | int(msgHdr[3]))
			if want > sni.DefaultMaxBytes {
				return errRetryRecord
			}
		}
		if _, err := dst.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := dst.Write(body[:l]); err != nil {
			return err
		}
	}
	return nil
}

// checkHelloRetry runs the retry check of the goroutine path on a passed
// connection (client c, upstream up, whose first hello was first) and
// reports whether the relay may start. When the server's first bytes are
// a HelloRetryRequest, it forwards it, reads the client's next hello
// under the hello timeout, decides it and, on a pass, writes the bytes
// read to up; on a block it refuses c as the listener's TLS block mode
// says (alert, or reset; page mode alerts, since the handshake with the
// origin has begun).
func (s *Server) checkHelloRetry(rt *listenerRuntime, tc *trackedConn, up *net.TCPConn, first *sni.Hello, ci *connInfo) bool {
	debug := rt.log.Enabled(context.Background(), slog.LevelDebug)
	retry, err := peekHelloRetry(up)
	if err != nil {
		if debug {
			rt.log.Debug("relay ended", "error", fmt.Errorf("waiting for the server's first bytes: %w", err))
		}
		return false
	}
	if !retry {
		return true
	}
	c := tc.tcp
	up.SetReadDeadline(time.Now().Add(rt.hello))
	err = forwardHelloRetry(c, up)
	up.SetReadDeadline(time.Time{})
	if err != nil {
		if debug {
			rt.log.Debug("forwarding a hello retry request", "error", err)
		}
		return false
	}
	hello, b, err := readRetryHello(c, rt.hello)
	if err != nil {
		kind := helloErrorKind(err)
		rt.helloErrs[kind].Inc()
		if debug {
			rt.log.Debug("client hello after a retry not read", "kind", kind, "client", tc.ip.String(), "error", err)
		}
		return false
	}
	d := s.decideRetry(rt, first.ServerName, first.HasSNI, &hello, ci.client, func() netip.AddrPort { return ci.dst })
	if !d.Pass {
		up.Close() // the origin sees the end at once, not after the linger
		blockTLS(c, rt.tlsBlock, hello.RecordVersion)
		return false
	}
	if _, err := up.Write(b); err != nil {
		if debug {
			rt.log.Debug("writing the client hello after a retry to upstream", "error", err)
		}
		return false
	}
	return true
}

// errHelloTooLarge reports a hello over the scanner's limit.
var errHelloTooLarge = fmt.Errorf("hello over %d bytes: %w", sni.DefaultMaxBytes, sni.ErrTooLarge)

// readRetryHello reads what a client sends after a HelloRetryRequest, up
// to the end of its next ClientHello, within timeout. It returns the hello
// (aliasing a Scanner of its own) and every byte read, which all go to the
// upstream on a pass: a client waits for the server's answer after it.
func readRetryHello(c *net.TCPConn, timeout time.Duration) (sni.Hello, []byte, error) {
	var s sni.Scanner
	b := make([]byte, 0, 4<<10)
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	for {
		if len(b) == cap(b) {
			if len(b) >= sni.DefaultMaxBytes {
				return sni.Hello{}, nil, errHelloTooLarge
			}
			b = append(b, 0)[:len(b)]
		}
		n, err := c.Read(b[len(b):min(cap(b), sni.DefaultMaxBytes)])
		b = b[:len(b)+n]
		if n > 0 {
			h, serr := scanRetryHello(&s, b)
			if serr == nil {
				return h, b, nil
			}
			if !errors.Is(serr, sni.ErrIncomplete) {
				return sni.Hello{}, nil, serr
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("%w: %w", sni.ErrTimeout, err)
			}
			return sni.Hello{}, nil, err
		}
	}
}
