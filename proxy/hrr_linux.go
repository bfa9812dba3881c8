package proxy

// The engine's side of the HelloRetryRequest check (hrr.go).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/icpgate/icpgate/sni"
)

// States of pconn.retry, the engine's retry check.
const (
	retryOff   uint8 = iota // relaying freely
	retryWatch              // waiting for the server's first bytes
	retryRead               // reading the client's hello after a retry
)

// pumpRetry runs the engine's retry check of c before pump moves bytes:
// it classifies the server's first bytes once they are there (a peek:
// pump's own read takes them after) and, after a HelloRetryRequest, reads
// and decides the client's next hello. It reports false when c ended.
func (e *engine) pumpRetry(c *pconn) bool {
	if c.retry == retryWatch {
		if !c.ur {
			return true // nothing from the server yet
		}
		var b [retryPeek]byte
		n, errno := peekSocket(uintptr(c.ufd), b[:])
		kind := retryNo // EOF: pump meets it
		switch {
		case errno == unix.EAGAIN:
			c.ur = false
			return true
		case errno != 0:
			// The peek took the error off the socket (a reset is
			// reported once): pump would see a mere EOF.
			if c.rt.log.Enabled(context.Background(), slog.LevelDebug) {
				c.rt.log.Debug("relay ended", "upstream", c.upAddr, "error", fmt.Errorf("waiting for the server's first bytes: %w", errno))
			}
			e.finish(c)
			return false
		case n > 0:
			kind = serverFirst(b[:n])
		}
		if kind == retryMore {
			switch {
			case n == len(b):
				kind = retryYes // cannot happen (see serverFirst); fail closed
			case c.urHup:
				kind = retryNo // the server closed mid-record: nothing to check
			default:
				c.ur = false // the rest arrives as a new edge
				return true
			}
		}
		if kind == retryNo {
			c.retry = retryOff
			return true
		}
		c.retry, c.deadline = retryRead, e.now+int64(c.rt.hello)
	}
	for c.cr {
		if c.buf == nil {
			c.buf = e.getBuf(0)
		}
		if len(c.buf) == cap(c.buf) {
			if len(c.buf) >= sni.DefaultMaxBytes {
				e.retryFailed(c, helloTooLarge, errHelloTooLarge)
				return false
			}
			nb := make([]byte, len(c.buf), min(2*cap(c.buf), sni.DefaultMaxBytes))
			copy(nb, c.buf)
			e.putBuf(c.buf)
			c.buf = nb
		}
		n, errno := rawRead(c.cfd, c.buf[len(c.buf):cap(c.buf)])
		switch {
		case errno == unix.EAGAIN:
			c.cr = false
			return true
		case errno != 0:
			e.retryFailed(c, helloClosed, errno)
			return false
		case n == 0:
			e.retryFailed(c, helloClosed, errHelloEOF)
			return false
		}
		e.work += uint64(n)
		c.buf = c.buf[:len(c.buf)+n]
		hello, err := scanRetryHello(&e.scan, c.buf)
		if errors.Is(err, sni.ErrIncomplete) {
			continue
		}
		if err != nil {
			e.retryFailed(c, helloErrorKind(err), err)
			return false
		}
		// c.first is not a string: the comparison reads it in place.
		d := e.s.decideRetry(c.rt, unsafe.String(unsafe.SliceData(c.first), len(c.first)), c.firstSNI, &hello, c.client, func() netip.AddrPort { return dstOf(c) })
		if !d.Pass {
			e.blockRetry(c, hello.RecordVersion)
			return false
		}
		// Everything read goes to the upstream, as pending bytes of the
		// client's direction.
		c.up.pend, c.up.pendOff, c.buf = c.buf, 0, nil
		c.retry = retryOff
		return true
	}
	return true
}

// retryFailed ends c, whose hello after a retry could not be read.
func (e *engine) retryFailed(c *pconn, kind string, err error) {
	rt := c.rt
	rt.helloErrs[kind].Inc()
	if rt.log.Enabled(context.Background(), slog.LevelDebug) {
		rt.log.Debug("client hello after a retry not read", "kind", kind, "client", c.client.Addr().String(), "error", err)
	}
	e.finish(c)
}

// blockRetry refuses c, whose hello after a retry was blocked: the
// upstream is closed at once, the client refused as the block mode says
// (page mode alerts: the handshake with the origin has begun). A client
// that still has part of a server record pending gets no alert: it could
// not read one after a partial record.
func (e *engine) blockRetry(c *pconn, recordVersion uint16) {
	rawClose(c.ufd)
	c.ufd = -1
	if c.down.pend != nil || c.down.inPipe > 0 {
		e.finish(c)
		return
	}
	e.block(c, recordVersion)
}
