//go:build linux

package proxy

// The engine's share of an http listener.
//
// An http listener outside transparent mode and without PROXY headers is
// accepted by the passthrough engines (engine_linux.go), like a tls listener.
// The listening socket is TCP_DEFER_ACCEPT, so a new connection's request
// is already there when it is accepted: the engine reads it in the same
// turn and, when it is a complete request head with no body behind it
// whose Host is blocked, writes the block response and closes the socket
// there and then. That is nginx's own sequence for a request it answers
// from a map (accept4, read, write, close) and nothing else: no goroutine,
// no poller registration, no deadline timers (bench/results has what it
// saves).
//
// Every other connection goes to a handler goroutine (httpHandler.run)
// with the bytes read so far: a passing request, a request with a body (a
// blocked one is closed only after draining it, which may take a while),
// a head split across reads, a malformed one (the handler answers with
// the right status), a client that sent nothing yet. The hand-off wraps
// the socket in a sockConn (sockconn_linux.go), two system calls, fewer than
// the accept loop's accept spent after accept4.

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// engineServesHTTP reports whether the engines may accept for the http
// listener rt: not in transparent mode (the handler asks the socket for
// its original destination) and not taking PROXY headers (read and
// checked by the handler's admission).
func (rt *listenerRuntime) engineServesHTTP() bool {
	e := rt.edge
	return rt.cfg.Protocol == "http" && e.transparent == "" && !rt.original && len(e.acceptFrom) == 0
}

// acceptHTTP serves the new connection fd of the http listener el, from
// peer: the fast block path when it applies, else the hand-off.
func (e *engine) acceptHTTP(el *engListener, rt *listenerRuntime, fd int, peer netip.AddrPort) {
	s := e.s
	ip := peer.Addr().Unmap()
	if _, ok := s.admitPeer(rt, ip); !ok {
		rawClose(fd)
		return
	}
	// The request is here already (TCP_DEFER_ACCEPT), unless the client
	// stayed silent past the kernel's deferral (EAGAIN): the handler then
	// waits for it under the hello timeout.
	var got []byte
	n, errno := rawRead(fd, e.scratch)
	e.work += uint64(max(n, 0))
	switch {
	case n > 0:
		got = e.scratch[:n]
	case errno != unix.EAGAIN: // closed (n == 0) or failed before a byte
		s.lim.releaseConn(ip)
		rawClose(fd)
		return
	}
	full := n == len(e.scratch) // more may be waiting: never the fast path
	if got != nil && !full {
		if rest, ok := rt.http.blockFast(fd, got, peer, el.local, &e.hreq); ok {
			e.httpBlocked.Add(1)
			if len(rest) == 0 {
				rawClose(fd)
				s.lim.releaseConn(ip)
				return
			}
			e.finishBlock(rt, fd, ip, peer, el.local, rest)
			return
		}
	}
	tc := e.handOver(rt, fd, ip, peer, el.local)
	if tc == nil {
		return
	}
	j := connJob{rt: rt, tc: tc, client: peer}
	if got != nil {
		// The engine's buffer is the next connection's: the handler gets
		// a copy.
		j.first, j.firstFull = append([]byte(nil), got...), full
	}
	e.startHandler(j)
}

// finishBlock writes the rest of a block response that did not fit the
// socket's buffer (a large custom page) from a goroutine, under the hello
// timeout, then closes the connection. It is tracked like a handler, so
// the drain waits for it and its deadline closes it.
func (e *engine) finishBlock(rt *listenerRuntime, fd int, ip netip.Addr, peer, local netip.AddrPort, rest []byte) {
	e.httpFinished.Add(1)
	tc := e.handOver(rt, fd, ip, peer, local)
	if tc == nil {
		return
	}
	go func() {
		tc.c.SetWriteDeadline(time.Now().Add(rt.http.hello))
		tc.c.Write(rest)
		tc.c.Close()
		e.s.release(rt, tc)
	}()
}

// handOver takes the accepted socket fd (its limit slots taken) out of the
// engine: a sockConn, tracked like any handler's connection. On failure
// the socket is closed, the slots given back and nil returned.
func (e *engine) handOver(rt *listenerRuntime, fd int, ip netip.Addr, peer, local netip.AddrPort) *trackedConn {
	sc, err := newSockConn(fd, local, peer)
	if err != nil {
		e.s.lim.releaseConn(ip)
		rt.log.Warn("handing a connection to its handler failed", "error", err)
		return nil
	}
	tc := &trackedConn{c: sc, ip: ip, listener: rt.cfg.Name}
	e.s.track(rt, tc)
	return tc
}

// fdWriter writes to a socket with raw writes and keeps what did not fit.
type fdWriter struct {
	fd   int
	rest []byte // not written: the socket's buffer was full
}

func (w *fdWriter) Write(p []byte) (int, error) {
	off := 0
	full, errno := writeOn(w.fd, p, &off)
	if errno != 0 {
		return off, errno
	}
	if full {
		w.rest = append(w.rest, p[off:]...)
	}
	return len(p), nil
}

// blockFast answers on the engine the first request of a connection, b,
// read whole from fd, when it is a complete, well-formed head with no
// body and nothing behind it and its Host is blocked: the decision is
// counted, logged and observed and the block response written by the
// handler's own path (answerBlock). rest is what the socket could not
// take yet. ok is false, with nothing done, for any other request. req is
// the caller's scratch head.
func (h *httpHandler) blockFast(fd int, b []byte, client, local netip.AddrPort, req *msgHead) (rest []byte, ok bool) {
	if len(b) > h.maxHeaderBytes {
		return nil, false
	}
	if end, err := headEnd(b, 0); err != nil || end != len(b) {
		return nil, false
	}
	req.reset(req.fields[:0])
	if parseRequestHead(b, req, h.maxHeaders) != nil || req.chunked || req.contentLength > 0 {
		return nil, false
	}
	host := ""
	if req.hasAuthority {
		host = string(req.authority.of(b))
	}
	dec := h.d.Decide(host)
	if dec.Pass {
		return nil, false
	}
	var idBuf [blockIDLen]byte
	w := fdWriter{fd: fd}
	isHead := len(b) > 5 && string(b[:5]) == "HEAD "
	// No original destination: the engine is never transparent.
	_, err := h.answerBlock(&w, &dec, host, idBuf[:0], client, netip.AddrPort{}, string(req.accept.of(b)), isHead, time.Now())
	if err != nil {
		return nil, true // the client is gone: nothing left to send
	}
	return w.rest, true
}
