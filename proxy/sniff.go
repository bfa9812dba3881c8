package proxy

// Protocol sniffing for auto listeners: a bounded peek (MSG_PEEK, nothing
// consumed) at the client's first bytes tells TLS, HTTP and anything else
// apart. TLS and HTTP go to their usual handlers, which read the socket
// from its first byte; anything else follows ListenerConfig.OtherProtocols.
//
// The classification leans towards TLS and HTTP whenever a server could
// read the bytes as one of them, because a connection sniffed as "other"
// is relayed undecided: any first byte 0x16 is TLS, and any request line a
// lenient HTTP server would serve (leading blanks, tabs or other odd
// whitespace between its words, a lower-case method, HTTP/0.9 "GET /") is
// HTTP, for the strict HTTP handler to decide or refuse. Only bytes that
// are positively something else are "other": binary hellos, and lines
// such as an SSH banner with comments, IRC, SIP or RTSP, whose first line
// ends without an HTTP version.
//
// A client that sends nothing for SniffTimeout is taken for a server-
// speaks-first protocol (SSH, MySQL, SMTP, FTP): the upstream is dialled
// and whichever side speaks first decides. When the server does, the
// connection is relayed; when the client does after all (a slow client),
// its bytes are sniffed as above and a TLS or HTTP start is decided as
// usual: the early upstream connection is then closed without a byte sent
// to it. That early dial is the one case where an upstream sees a TCP
// handshake for a connection that is then blocked; other_protocols: block
// avoids it.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"time"
)

// Sniff results, the label values of EdgeMetrics.Sniffed.
const (
	sniffTLS         = "tls"
	sniffHTTP        = "http"
	sniffOther       = "other"
	sniffSilent      = "silent"
	sniffProxyHeader = "proxy_header"
	sniffIncomplete  = "incomplete"
)

// sniffPeekMax bounds the bytes peeked at. A request line longer than this
// that is still HTTP-shaped is taken for HTTP.
const sniffPeekMax = 1024

// recordTypeHandshake is the content type of a TLS handshake record, the
// first byte a TLS client sends.
const recordTypeHandshake = 0x16

// classify returns what the first bytes b of a connection are: sniffTLS,
// sniffHTTP, sniffProxyHeader, sniffOther, or "" while more bytes are
// needed to tell. full reports that b is all the peek may hold.
func classify(b []byte, full bool) string {
	if len(b) == 0 {
		return ""
	}
	if b[0] == recordTypeHandshake {
		return sniffTLS
	}
	if proxySigMore(b) {
		if full {
			return sniffOther
		}
		return ""
	}
	if isProxySignature(b) {
		return sniffProxyHeader
	}
	k := classifyHTTP(b)
	if k == "" && full {
		// Still HTTP-shaped after sniffPeekMax bytes (a long target): the
		// HTTP handler decides, or refuses it.
		return sniffHTTP
	}
	return k
}

// classifyHTTP tells whether b starts an HTTP/1 request line as the most
// lenient servers read it, returning "" while more bytes are needed.
//
// Servers differ in what separates the words of a request line. Python's
// http.server decodes it as Latin-1 and splits on str.isspace (HT, VT, FF,
// CR, SP, 0x1c-0x1f, 0x85, 0xa0), so "GET\t/\tHTTP/1.1" reaches its handler;
// others skip leading blanks, or decode UTF-8 first and split on Unicode
// spaces. Rather than list every server's grammar, b is HTTP when:
//
//   - after leading blanks, its first token is one of httpMethods followed
//     by any byte that cannot continue the token (a GET needs no version
//     for HTTP/0.9, and no other protocol we know opens with these), or
//   - its first line, up to LF, contains "http/" in any case: every server
//     but an HTTP/0.9 one requires the version.
//
// It is "other" only when the first line ends (LF) without "http/", or a
// control byte no server reads as a blank shows that the bytes are binary:
// an SSH banner, IRC or SIP line, Redis command, or PostgreSQL, RDP or
// SOCKS hello. A line that is neither stays undecided, and sniff's hello
// timeout, or the full peek (taken for HTTP), ends it.
func classifyHTTP(b []byte) string {
	i := 0
	for i < len(b) && isSniffBlank(b[i]) {
		i++
	}
	ms := i
	for i < len(b) && tchar[b[i]] {
		i++
	}
	if i == len(b) {
		return "" // a blank, or a token that may still grow
	}
	if i > ms && isHTTPMethod(b[ms:i]) {
		return sniffHTTP
	}
	const version = "http/" // lower case: equalFold's convention
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\n':
			return sniffOther
		case (c < ' ' || c == 0x7f) && !isSniffBlank(c):
			return sniffOther
		case lower(c) == version[0] && hasPrefixFold(b[i:], version):
			return sniffHTTP
		}
	}
	// A partial "http/" at the end has only letters and '/' after it, so
	// no byte past i could have decided: undecided is stable.
	return ""
}

// httpMethods are the methods that make a line HTTP at once, in any case.
// OPTIONS is not among them: RTSP and SIP requests open with it, and a
// server reads an OPTIONS line as HTTP only with its version.
var httpMethods = [...]string{"get", "head", "post", "put", "delete", "connect", "patch", "trace"}

func isHTTPMethod(tok []byte) bool {
	for _, m := range httpMethods {
		if equalFold(tok, m) {
			return true
		}
	}
	return false
}

// isSniffBlank reports whether some server may read c as a blank between,
// or before, the words of a request line: the ASCII blanks, the Latin-1
// separators Python's str.isspace knows (0x1c-0x1f) and any byte of 0x80
// or more (0x85 and 0xa0 in Latin-1; the start or middle of U+3000, a BOM
// or another Unicode space in UTF-8).
func isSniffBlank(c byte) bool {
	switch {
	case c == ' ', c >= '\t' && c <= '\r', c >= 0x1c && c <= 0x1f, c >= 0x80:
		return true
	}
	return false
}

// sniffMore is peek's condition while sniffing.
func sniffMore(b []byte) bool { return classify(b, len(b) >= sniffPeekMax) == "" }

// sniff peeks at c's first bytes: it waits sniffTimeout for the first one
// (sniffSilent when none came) and up to hello in all for enough of them to
// classify (sniffIncomplete when they stalled or the client closed).
func sniff(c *net.TCPConn, sniffTimeout, hello time.Duration) string {
	var buf [sniffPeekMax]byte
	start := time.Now()
	if c.SetReadDeadline(start.Add(min(sniffTimeout, hello))) != nil {
		return sniffIncomplete
	}
	defer c.SetReadDeadline(time.Time{})
	n, _, err := peek(c, buf[:], sniffMore)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if n == 0 {
			return sniffSilent
		}
		// The client has started: give it the rest of the hello timeout.
		if c.SetReadDeadline(start.Add(hello)) != nil {
			return sniffIncomplete
		}
		n, _, _ = peek(c, buf[:], sniffMore)
	}
	if k := classify(buf[:n], n == len(buf)); k != "" {
		return k
	}
	// Stalled, closed or failed before the bytes told.
	return sniffIncomplete
}

// serveAuto serves one connection of an auto listener, admitted as job j.
// An HTTP client idle between requests is parked as on an http listener:
// serveAuto then reports true and the connection belongs to the parker.
func (s *Server) serveAuto(rt *listenerRuntime, tc *trackedConn, ci *connInfo, j *connJob) (parked bool) {
	e := rt.edge
	kind := sniff(tc.tcp, e.sniffTimeout, rt.hello)
	e.sniffed[kind].Inc()
	return s.serveSniffed(rt, tc, ci, kind, nil, j)
}

// serveSniffed serves a connection sniffed as kind (parked: see
// serveAuto). up, when not nil, is an upstream connection dialled before
// the client spoke (see serveSilent): it is used to relay "other" traffic
// and closed unused otherwise.
func (s *Server) serveSniffed(rt *listenerRuntime, tc *trackedConn, ci *connInfo, kind string, up *net.TCPConn, j *connJob) (parked bool) {
	if up != nil && kind != sniffOther {
		up.Close() // nothing was written to it
	}
	switch kind {
	case sniffTLS:
		s.serveTLS(rt, tc, ci)
	case sniffHTTP:
		return rt.http.run(s.drainCtx, tc.c, ci, "", true, &s.park, j)
	case sniffOther:
		s.serveOther(rt, tc, ci, up)
	case sniffSilent:
		return s.serveSilent(rt, tc, ci, j)
	case sniffProxyHeader:
		rt.edge.ppUntrusted.Inc()
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("PROXY header from an untrusted peer refused", "peer", ci.client.String())
		}
		tc.c.Close()
	default:
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("first bytes stalled or ended before their protocol was known", "client", ci.client.String())
		}
		tc.c.Close()
	}
	return false
}

// upstreamOf returns where a connection goes without a decided upstream:
// its original destination in transparent mode, else the listener's.
func (rt *listenerRuntime) upstreamOf(ci *connInfo) string {
	if ci.upstream != "" {
		return ci.upstream
	}
	return rt.cfg.Upstream
}

// serveOther passes (relays) or blocks (closes) a connection that is
// neither TLS nor HTTP, as OtherProtocols says. up is an upstream already
// dialled, or nil.
func (s *Server) serveOther(rt *listenerRuntime, tc *trackedConn, ci *connInfo, up *net.TCPConn) {
	e, c := rt.edge, tc.tcp
	defer c.Close()
	if e.otherBlock {
		e.otherBlocked.Inc()
		if up != nil {
			up.Close()
		}
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("other protocol blocked", "client", ci.client.String(), "dst", ci.dst.String())
		}
		return
	}
	e.otherPass.Inc()
	if up == nil {
		var ok bool
		if up, ok = s.dialUpstream(rt, rt.upstreamOf(ci), ci); !ok {
			return
		}
	}
	defer up.Close()
	s.conns.startRelay(tc, up, rt.idle)
	_, _, err := relay(&s.splicers, c, up, rt.bytesUp, rt.bytesDown)
	if err != nil && rt.log.Enabled(context.Background(), slog.LevelDebug) {
		rt.log.Debug("relay ended", "upstream", up.RemoteAddr().String(), "error", err)
	}
}

// serveSilent serves a connection whose client sent nothing for the sniff
// timeout: blocked at once by other_protocols: block; else the upstream is
// dialled and whichever side speaks first decides (see the file comment).
// parked: see serveAuto.
func (s *Server) serveSilent(rt *listenerRuntime, tc *trackedConn, ci *connInfo, j *connJob) (parked bool) {
	e, c := rt.edge, tc.tcp
	if e.otherBlock {
		s.serveOther(rt, tc, ci, nil)
		return false
	}
	up, ok := s.dialUpstream(rt, rt.upstreamOf(ci), ci)
	if !ok {
		c.Close()
		return false
	}
	clientFirst, err := firstSpeaker(c, up, rt.idle)
	switch {
	case err != nil:
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("neither side spoke", "client", ci.client.String(), "error", err)
		}
		up.Close()
		c.Close()
	case !clientFirst:
		s.serveOther(rt, tc, ci, up)
	default:
		kind := sniff(c, rt.hello, rt.hello)
		if kind == sniffSilent {
			kind = sniffIncomplete // it did speak: this cannot happen but must not loop
		}
		e.sniffed[kind].Inc()
		return s.serveSniffed(rt, tc, ci, kind, up, j)
	}
	return false
}

// firstSpeaker waits, up to timeout, until the client or the upstream has
// something to read (a byte or its EOF), consuming nothing, and reports
// whether the client was first. The upstream is watched by a second
// goroutine; each side's wait is cut short through its read deadline.
func firstSpeaker(c, up *net.TCPConn, timeout time.Duration) (clientFirst bool, err error) {
	deadline := time.Now().Add(timeout)
	if err := c.SetReadDeadline(deadline); err != nil {
		return false, err
	}
	if err := up.SetReadDeadline(deadline); err != nil {
		return false, err
	}
	defer c.SetReadDeadline(time.Time{})
	defer up.SetReadDeadline(time.Time{})
	upDone := make(chan error, 1)
	go waitUpstreamSpeaks(c, up, upDone)
	var b [1]byte
	_, _, cerr := peek(c, b[:], neverMore)
	up.SetReadDeadline(time.Now()) // stop the upstream wait, if still waiting
	uerr := <-upDone
	if cerr == nil {
		return true, nil
	}
	if uerr == nil {
		return false, nil
	}
	return false, cerr
}

// waitUpstreamSpeaks is firstSpeaker's upstream side: when the upstream
// has something to read, it wakes the client side through its deadline.
func waitUpstreamSpeaks(c, up *net.TCPConn, done chan<- error) {
	var b [1]byte
	_, _, err := peek(up, b[:], neverMore)
	if err == nil {
		c.SetReadDeadline(time.Now())
	}
	done <- err
}

func neverMore([]byte) bool { return false }

// dialUpstream dials addr for ci with the listener's dialer, counting a
// failure; ok is false when there is no upstream or the dial failed (the
// caller closes the client: a FIN, not a hang).
func (s *Server) dialUpstream(rt *listenerRuntime, addr string, ci *connInfo) (up *net.TCPConn, ok bool) {
	if addr == "" {
		rt.upNone.Inc()
		if !rt.warnedNoUpstream.Swap(true) {
			rt.log.Warn("passing connection has no upstream; closing such connections")
		}
		return nil, false
	}
	up, err := rt.edge.dialer.dial(s.hardCtx, addr, ci)
	if err != nil {
		if isDialTimeout(err) {
			rt.upTimeout.Inc()
		} else {
			rt.upDial.Inc()
		}
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("upstream dial failed", "upstream", addr, "error", err)
		}
		return nil, false
	}
	return up, true
}
