package proxy

// PROXY protocol (HAProxy's, v1 and v2): accepted from the load balancers
// of ProxyProtocol.AcceptFrom, refused from anyone else, optionally sent to
// upstreams. Parsing and formatting are github.com/pires/go-proxyproto's;
// this file only frames the header on the socket so that exactly its bytes
// are consumed and the protocol handlers read the connection as usual.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// PROXY header framing (proxy-protocol.txt §2.1, §2.2).
const (
	proxyV1MaxLen    = 107 // "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n"
	proxyV2HeaderLen = 16  // signature, version/command, family, length
)

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = proxyproto.SIGV2
)

// Errors of reading a PROXY header.
var (
	// errNoProxyHeader: the connection does not start with a PROXY
	// signature (or ended before sending one).
	errNoProxyHeader = errors.New("no PROXY header")
	// errBadProxyHeader: a PROXY signature followed by something the
	// library refuses, or a v1 line longer than 107 bytes.
	errBadProxyHeader = errors.New("invalid PROXY header")
)

// trusted reports whether ip may (and then must) send a PROXY header.
func (e *edgeRuntime) trusted(ip netip.Addr) bool {
	return len(e.acceptFrom) > 0 && inPrefixes(e.acceptFrom, ip)
}

// admit runs before the protocol handler: it reads the PROXY header of a
// trusted peer (and moves the per-IP limit to the client it carries),
// refuses a PROXY header from an untrusted peer, and finds and checks the
// original destination of a transparent listener. It fills ci and reports
// whether the connection may go on; the caller closes it otherwise.
func (s *Server) admit(rt *listenerRuntime, tc *trackedConn, ci *connInfo, trusted bool) bool {
	e := rt.edge
	if trusted {
		if !e.acceptProxyHeader(rt, tc.tcp, ci) {
			return false
		}
		ip := ci.client.Addr()
		if limit := s.lim.acquirePerIP(ip); limit != "" {
			s.rejects[limit].Inc()
			return false
		}
		tc.ip = ip
	} else if len(e.acceptFrom) > 0 && rt.cfg.Protocol != "auto" {
		// Auto listeners look for the signature in their sniff.
		if hasProxySignature(tc.tcp, rt.hello) {
			e.ppUntrusted.Inc()
			if rt.log.Enabled(context.Background(), slog.LevelDebug) {
				rt.log.Debug("PROXY header from an untrusted peer refused", "peer", ci.client.String())
			}
			return false
		}
	}
	if e.transparent != "" {
		dst, reason, err := e.resolveOriginal(tc.tcp)
		if reason != "" {
			e.refused[reason].Inc()
			if rt.log.Enabled(context.Background(), slog.LevelDebug) {
				rt.log.Debug("transparent connection refused", "reason", reason, "client", ci.client.String(), "error", err)
			}
			return false
		}
		ci.dst = dst
	}
	if rt.original {
		ci.upstream = ci.dst.String()
	}
	return true
}

// acceptProxyHeader reads the PROXY header a trusted peer must send, within
// the hello timeout, and puts the client (and destination) it carries in
// ci. A LOCAL command (a balancer's own health check) or a v1 UNKNOWN keeps
// the peer's addresses. It counts the result and reports whether the
// connection may go on.
func (e *edgeRuntime) acceptProxyHeader(rt *listenerRuntime, c *net.TCPConn, ci *connInfo) bool {
	h, err := readProxyHeader(c, rt.hello)
	if err != nil {
		e.countProxyError(rt, ci.client, err)
		return false
	}
	return e.applyProxyHeader(rt, h, &ci.client, &ci.dst)
}

// applyProxyHeader puts the client and destination h carries in client
// and dst (a LOCAL command, a balancer's own health check, or a v1 UNKNOWN
// keeps the peer's addresses), counts the result and reports whether the
// connection may go on.
func (e *edgeRuntime) applyProxyHeader(rt *listenerRuntime, h *proxyproto.Header, client, dst *netip.AddrPort) bool {
	if h.Command == proxyproto.LOCAL || h.TransportProtocol == proxyproto.UNSPEC {
		e.ppLocal.Inc()
		return true
	}
	src, to, ok := h.TCPAddrs()
	if !ok {
		// UDP or UNIX addresses on a TCP listener.
		e.ppInvalid.Inc()
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("PROXY header without TCP addresses, connection refused", "peer", client.String(), "protocol", h.TransportProtocol)
		}
		return false
	}
	*client = unmapAddrPort(src.AddrPort())
	*dst = unmapAddrPort(to.AddrPort())
	e.ppAccepted.Inc()
	return true
}

// countProxyError counts a PROXY header that could not be read (the
// deadline passed, none came, or it was invalid) and logs it at debug.
func (e *edgeRuntime) countProxyError(rt *listenerRuntime, peer netip.AddrPort, err error) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		e.ppTimeout.Inc()
	case errors.Is(err, errNoProxyHeader):
		e.ppMissing.Inc()
	default:
		e.ppInvalid.Inc()
	}
	if rt.log.Enabled(context.Background(), slog.LevelDebug) {
		rt.log.Debug("PROXY header not read, connection refused", "peer", peer.String(), "error", err)
	}
}

// readProxyHeader reads exactly one PROXY header (v1 or v2) from c within
// timeout and parses it with go-proxyproto. It peeks (MSG_PEEK) until the
// header's length is known, then reads that many bytes, so nothing after
// the header is consumed: the handlers read the socket itself.
func readProxyHeader(c *net.TCPConn, timeout time.Duration) (*proxyproto.Header, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	defer c.SetReadDeadline(time.Time{})
	var buf [proxyV1MaxLen]byte
	n, _, err := peek(c, buf[:], proxyHeaderMore)
	if err != nil {
		return nil, fmt.Errorf("peeking for a PROXY header after %d bytes: %w", n, err)
	}
	size, err := proxyHeaderLen(buf[:n])
	if err != nil {
		return nil, err
	}
	hb := make([]byte, size)
	if _, err := io.ReadFull(c, hb); err != nil {
		return nil, fmt.Errorf("reading a %d-byte PROXY header: %w", size, err)
	}
	return parseProxyHeader(hb)
}

// parseProxyHeader parses hb, exactly one PROXY header, with go-proxyproto.
func parseProxyHeader(hb []byte) (*proxyproto.Header, error) {
	// The buffered reader holds the whole header, which go-proxyproto's v1
	// parser requires (it refuses a line split across reads).
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(hb), max(len(hb), 16)))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadProxyHeader, err)
	}
	return h, nil
}

// proxyHeaderMore reports whether the peeked bytes b need more to tell
// the PROXY header's length: a prefix of a signature, a v1 line without its
// LF yet, or a v2 header without its length field.
func proxyHeaderMore(b []byte) bool {
	switch {
	case len(b) < len(proxyV1Sig) && bytes.HasPrefix(proxyV1Sig, b):
		return true
	case bytes.HasPrefix(b, proxyV1Sig):
		return bytes.IndexByte(b, '\n') < 0 && len(b) < proxyV1MaxLen
	case len(b) < len(proxyV2Sig) && bytes.HasPrefix(proxyV2Sig, b):
		return true
	case bytes.HasPrefix(b, proxyV2Sig):
		return len(b) < proxyV2HeaderLen
	}
	return false
}

// proxyHeaderLen returns the length of the PROXY header at the start of b
// (as peeked until proxyHeaderMore said enough).
func proxyHeaderLen(b []byte) (int, error) {
	switch {
	case bytes.HasPrefix(b, proxyV1Sig):
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return 0, fmt.Errorf("%w: v1 line without LF in %d bytes", errBadProxyHeader, len(b))
		}
		return i + 1, nil
	case bytes.HasPrefix(b, proxyV2Sig) && len(b) >= proxyV2HeaderLen:
		return proxyV2HeaderLen + int(binary.BigEndian.Uint16(b[14:16])), nil
	}
	return 0, errNoProxyHeader
}

// hasProxySignature peeks at the first bytes of c (waiting at most timeout)
// and reports whether they are a PROXY v1 or v2 signature. Nothing is
// consumed. A timeout or an early EOF counts as no signature: the handler
// then meets the same silence or EOF itself.
func hasProxySignature(c *net.TCPConn, timeout time.Duration) bool {
	if c.SetReadDeadline(time.Now().Add(timeout)) != nil {
		return false
	}
	var buf [len("\r\n\r\n\x00\r\nQUIT\n")]byte
	n, _, _ := peek(c, buf[:], proxySigMore)
	c.SetReadDeadline(time.Time{})
	return isProxySignature(buf[:n])
}

// proxySigMore reports whether b is a proper prefix of a PROXY signature.
func proxySigMore(b []byte) bool {
	return len(b) < len(proxyV1Sig) && bytes.HasPrefix(proxyV1Sig, b) ||
		len(b) < len(proxyV2Sig) && bytes.HasPrefix(proxyV2Sig, b)
}

// isProxySignature reports whether b starts with a PROXY signature.
func isProxySignature(b []byte) bool {
	return bytes.HasPrefix(b, proxyV1Sig) || bytes.HasPrefix(b, proxyV2Sig)
}

// writeProxyHeader writes the PROXY header of version v (1 or 2) for the
// connection ci to up: source the client, destination the address the
// client connected to. A connection without a known client or destination
// gets a LOCAL (v2) or UNKNOWN (v1) header.
func writeProxyHeader(up *net.TCPConn, v byte, ci *connInfo) error {
	b, err := proxyHeaderBytes(v, ci.client, ci.dst)
	if err != nil {
		return err
	}
	// A fresh connection's send buffer is empty: this write does not block.
	_, err = up.Write(b)
	return err
}

// proxyHeaderBytes formats the PROXY header of version v (1 or 2) for a
// connection from client to dst (LOCAL or UNKNOWN when either is unknown).
func proxyHeaderBytes(v byte, client, dst netip.AddrPort) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(v, net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(dst))
	if !client.IsValid() || !dst.IsValid() {
		h = &proxyproto.Header{Version: v, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	}
	return h.Format()
}

// peek copies the bytes c has received so far into buf without consuming
// them (recv with MSG_PEEK), waiting for more under c's read deadline while
// more(buf[:n]) is true and buf has room. eof reports that the peer has
// closed its side (no more bytes will come). The error is the deadline's
// (os.ErrDeadlineExceeded) or a socket error.
//
// The wait relies on the runtime poller being edge-triggered: after a peek
// that found too little, the goroutine parks until more data arrives.
func peek(c *net.TCPConn, buf []byte, more func([]byte) bool) (n int, eof bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	last := -1
	var serr error
	err = rc.Read(func(fd uintptr) bool {
		m, e := peekSocket(fd, buf)
		switch {
		case e == syscall.EAGAIN:
			return false // nothing yet: wait
		case e != 0:
			serr = e
			return true
		case m == 0:
			eof = true
			return true
		}
		n = m
		if m == len(buf) || !more(buf[:m]) {
			return true
		}
		if m == last && peerClosed(int(fd)) {
			// The same bytes again and the peer sent its FIN: nothing
			// more will come (a peek cannot see the FIN itself).
			eof = true
			return true
		}
		last = m
		return false
	})
	if err == nil {
		err = serr
	}
	return n, eof, err
}

// acquireGlobal admits one connection against the global cap only: a
// connection from a trusted PROXY sender, whose per-IP slot is taken for
// the client its header carries (acquirePerIP). It returns "" or the name
// of the limit that refused it.
func (l *connLimiter) acquireGlobal() string {
	if l.open.Add(1) > l.maxConns.Load() {
		l.open.Add(-1)
		return limitGlobal
	}
	return ""
}

// acquirePerIP takes a per-IP slot for ip on a connection already admitted
// by acquireGlobal; on success the connection is released with
// release(ip) like any other. On refusal the global slot stays taken
// (releaseGlobal returns it).
func (l *connLimiter) acquirePerIP(ip netip.Addr) string {
	s := l.shard(ip)
	max := l.maxPerIP.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[ip] >= max {
		return limitPerIP
	}
	s.perIP[ip]++
	return ""
}

// releaseGlobal returns a slot taken by acquireGlobal alone.
func (l *connLimiter) releaseGlobal() { l.open.Add(-1) }

// releaseConn returns the slots of a connection whose per-IP key is ip: the
// zero Addr when only acquireGlobal succeeded.
func (l *connLimiter) releaseConn(ip netip.Addr) {
	if ip.IsValid() {
		l.release(ip)
		return
	}
	l.releaseGlobal()
}
