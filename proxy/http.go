package proxy

// HTTP listener architecture
//
// Each accepted connection on an "http" listener is served by
// httpHandler.run with a strict streaming parser, not net/http with
// httputil.ReverseProxy (a blocked first request the passthrough engine
// answers itself, with the same response: enghttp.go). The reasons, in
// order of weight:
//
//   - Strictness. net/http is built to be lenient: it silently drops
//     Content-Length when Transfer-Encoding is present, accepts an empty
//     Host, non-ASCII targets, userinfo in an absolute-form target, any
//     HTTP/1.x minor version, chunk lines with trailing whitespace, and
//     ReverseProxy forwards "Upgrade: h2c". A gateway whose job is to decide
//     on the Host of every request must reject every ambiguity instead, so
//     that what it decides on is exactly what the upstream will act on.
//     httpparse.go is that parser; httpparse_test.go proves against
//     net/http that it is never laxer (differential table + fuzz target).
//   - Every request is decided. The loop reads one request head, decides it,
//     forwards it, relays its body by validated framing, then relays the
//     response by its framing before reading the next head, so keep-alive
//     and pipelined requests are each decided and the upstream never sees
//     a byte of a blocked request or of anything behind it.
//   - Cost. Heads are parsed in place in a pooled per-connection buffer
//     (fields are offsets, nothing is allocated per header); the rewritten
//     head and the start of the body go out in one write; large
//     Content-Length bodies are moved with splice(2) through a cached pipe
//     (spliceRun);
//     a client connection holds one upstream connection while it lives,
//     taken on its first passing request from the Server's shared idle
//     pool (upstreampool.go, nginx's upstream keepalive) or dialled, and
//     handed back to the pool when the client connection ends, if its
//     last response was complete and nothing is pending. A new client
//     connection therefore usually costs no dial at all. A keep-alive
//     request costs four system calls, as in nginx (read the client,
//     write the upstream, read the upstream, write the client), and no
//     read finds nothing: a request without a body is written inside
//     the wait for its response, and a response that is all here inside
//     the wait for the client's next request (rawIO.sendThenRead).
//     Deadlines are moved lazily (rawIO.setDeadline), so a request
//     updates no runtime timer while its connection is busy.
//
// Its speed is measured, not described here: the benchmarks in
// http_test.go (BenchmarkHTTPKeepAlive*, BenchmarkHTTPBlocked,
// BenchmarkParseRequestHead, BenchmarkWriteBlock) and the whole-system
// runs of bench/ against nginx and HAProxy, whose results are in
// bench/results.
//
// Deliberate simplifications: HTTP/1.0 clients get "Connection: close" after
// each response; a request with "Expect: 100-continue" is answered
// "100 Continue" by the gateway itself (as nginx does) once the request is
// decided and the upstream dialled; 1xx interim responses are relayed;
// request trailer fields are validated and dropped; idempotent requests
// without a body are retried once when a pooled upstream connection turns
// out closed, others are sent only after a non-blocking MSG_PEEK; an
// upgraded (101) tunnel has no idle timeout of its own (the Server's drain
// deadline ends it); request and response bodies time out after
// Timeouts.Idle without progress per 1 MiB.

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	defaultHelloTimeout   = 5 * time.Second
	defaultDialTimeout    = 3 * time.Second
	defaultHTTPIdle       = 60 * time.Second
	defaultBodyGrace      = 5 * time.Second
	defaultMinBodyRate    = 240 // bytes/s
	defaultMaxHeaderBytes = 64 << 10
	defaultMaxHeaders     = 100

	httpBufSize    = 8 << 10 // initial per-direction buffer; grows to MaxHeaderBytes
	maxChunkLine   = 4 << 10 // chunk-size line or trailer line
	maxTrailers    = 100
	spliceStep     = 1 << 20 // bytes per splice run between deadline refreshes
	outFlushThresh = 32 << 10
	// idleRelease: a keep-alive client that has sent nothing for this long
	// gives back what it holds while it waits: its upstream connection
	// goes to the shared pool (as nginx's keepalive does after every
	// response) and its buffers to httpBufs, so thousands of idle clients
	// hold neither upstream connections nor buffers.
	idleRelease = 100 * time.Millisecond
)

// httpBufs holds the httpBufSize buffers idle connections gave back.
var httpBufs = sync.Pool{New: func() any { b := make([]byte, httpBufSize); return &b }}

func getHTTPBuf() []byte { return *httpBufs.Get().(*[]byte) }

func putHTTPBuf(b []byte) {
	if len(b) == httpBufSize {
		httpBufs.Put(&b)
	}
}

// httpHandler serves the connections of one http listener.
type httpHandler struct {
	// splicers keeps the pipes of bodies and tunnels: the Server's
	// (newRuntime), or the handler's own.
	splicers *splicerCache
	l        ListenerConfig
	d        Decider
	log      *slog.Logger
	node     string
	page     *BlockPage
	status   int
	redirect string
	proto    string

	hello, dial, idle time.Duration
	tunnelIdle        time.Duration
	bodyGrace         time.Duration
	minBodyRate       int // bytes/s; 0: off
	maxHeaderBytes    int
	maxHeaders        int

	ids requestIDs

	bytesUp, bytesDown         prometheus.Counter
	durPass, durBlock          prometheus.Observer
	errBadRequest, errTooLarge prometheus.Counter
	errTimeout, errMethod      prometheus.Counter
	errVersion, errSlowBody    prometheus.Counter
	errExpect                  prometheus.Counter
	tunnelIdleClosed           prometheus.Counter
	upDial, upTimeout, upBad   prometheus.Counter
	upReset, upExcess          prometheus.Counter
	m                          *Metrics
	decisions                  *decisionCounter

	conns sync.Pool // *httpConn

	// pool is the Server's shared pool of idle upstream connections, nil
	// when this listener's upstream connections must not be shared
	// (spoofed source, PROXY header) or when no Server runs the handler:
	// then an upstream connection lives only as long as its client's.
	pool *upstreamPool

	blocks *blockLog      // the Server's block log; nil writes nothing
	dialer upstreamDialer // dials upstreams (transparent source, PROXY header: transparent.go)
	obs    *observerSlot  // the Server's block observer; nil observes nothing
}

// newHTTPHandler creates the handler of one http listener. A replacement
// block page that fails to load is logged and the embedded page used: the
// gateway keeps blocking (fail-closed on access, fail-safe on looks); cmd
// validates the block page settings at start (NewBlockPage) so this is rare.
func newHTTPHandler(cfg Config, l ListenerConfig, d Decider, m *Metrics, log *slog.Logger) *httpHandler {
	h := &httpHandler{
		splicers:       new(splicerCache),
		l:              l,
		d:              d,
		log:            log.With("component", "http", "listener", l.Name),
		node:           cfg.Node,
		page:           defaultBlockPage,
		status:         cfg.Policy.HTTPBlockStatus,
		redirect:       cfg.Policy.RedirectURL,
		proto:          l.ForwardedProto,
		hello:          cfg.Timeouts.Hello,
		dial:           cfg.Timeouts.Dial,
		idle:           cfg.Timeouts.Idle,
		tunnelIdle:     cfg.Timeouts.TunnelIdle,
		bodyGrace:      cfg.Timeouts.BodyGrace,
		minBodyRate:    cfg.Limits.MinBodyRate,
		maxHeaderBytes: cfg.Limits.MaxHeaderBytes,
		maxHeaders:     cfg.Limits.MaxHeaders,
		m:              m,
	}
	// The page with the provider's settings (Policy.Provider, TimeZone,
	// ShowNode, BlockPage). Validation has checked them, so an error here
	// is a template file changed since.
	if p, err := NewBlockPage(cfg.Policy); err != nil {
		h.log.Error("block page not loaded, using the embedded page", "path", cfg.Policy.BlockPage, "error", err)
	} else {
		h.page = p
	}
	if h.status == 0 {
		h.status = 403
	}
	if h.proto == "" {
		h.proto = "http"
	}
	if h.hello <= 0 {
		h.hello = defaultHelloTimeout
	}
	if h.dial <= 0 {
		h.dial = defaultDialTimeout
	}
	h.dialer = upstreamDialer{timeout: h.dial}
	if h.idle <= 0 {
		h.idle = defaultHTTPIdle
	}
	if h.tunnelIdle <= 0 {
		h.tunnelIdle = h.idle
	}
	if h.bodyGrace <= 0 {
		h.bodyGrace = defaultBodyGrace
	}
	switch {
	case h.minBodyRate == 0:
		h.minBodyRate = defaultMinBodyRate
	case h.minBodyRate < 0:
		h.minBodyRate = 0
	}
	if h.maxHeaderBytes <= 0 {
		h.maxHeaderBytes = defaultMaxHeaderBytes
	}
	if h.maxHeaders <= 0 {
		h.maxHeaders = defaultMaxHeaders
	}
	h.ids.init()
	h.bytesUp = m.Bytes.WithLabelValues(l.Name, "upstream")
	h.bytesDown = m.Bytes.WithLabelValues(l.Name, "downstream")
	h.durPass = m.RequestDuration.WithLabelValues(l.Name, "pass")
	h.durBlock = m.RequestDuration.WithLabelValues(l.Name, "block")
	h.errBadRequest = m.HTTPErrors.WithLabelValues("bad_request")
	h.errTooLarge = m.HTTPErrors.WithLabelValues("header_too_large")
	h.errTimeout = m.HTTPErrors.WithLabelValues("timeout")
	h.errMethod = m.HTTPErrors.WithLabelValues("method_not_allowed")
	h.errVersion = m.HTTPErrors.WithLabelValues("version_not_supported")
	h.errSlowBody = m.HTTPErrors.WithLabelValues("body_too_slow")
	h.errExpect = m.HTTPErrors.WithLabelValues("expectation_failed")
	h.tunnelIdleClosed = m.IdleTimeouts.WithLabelValues(l.Name)
	h.upDial = m.UpstreamErrors.WithLabelValues(l.Name, "dial")
	h.upTimeout = m.UpstreamErrors.WithLabelValues(l.Name, "timeout")
	h.upBad = m.UpstreamErrors.WithLabelValues(l.Name, "bad_response")
	h.upReset = m.UpstreamErrors.WithLabelValues(l.Name, "reset")
	h.upExcess = m.UpstreamErrors.WithLabelValues(l.Name, "excess_bytes")
	h.decisions = newDecisionCounter(m.Decisions, "http", cfg.Outcomes)
	h.conns.New = func() any {
		return &httpConn{
			in:    connBuf{b: make([]byte, httpBufSize)},
			out:   make([]byte, 0, 2<<10),
			reqF:  make([]hdrField, 0, 32),
			respF: make([]hdrField, 0, 32),
		}
	}
	return h
}

// countDecision counts one decision.
func (h *httpHandler) countDecision(d *Decision) { h.decisions.count(d) }

// requestIDs generates compact unique request IDs: 16 hex digits of a
// random per-handler base plus a counter. Unique within a process for 2^64
// requests; across nodes the random base makes a clash negligible, and the
// node is shown next to the ID anyway.
type requestIDs struct {
	base uint64
	n    atomic.Uint64
}

func (g *requestIDs) init() {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		// crypto/rand never fails on Linux; a time-based base is a fine
		// fallback for an ID that only needs to be unlikely to repeat.
		binary.LittleEndian.PutUint64(b[:], uint64(time.Now().UnixNano()))
	}
	g.base = binary.LittleEndian.Uint64(b[:])
}

// next appends a new ID to dst.
func (g *requestIDs) next(dst []byte) []byte {
	v := g.base + g.n.Add(1)
	const hex = "0123456789abcdef"
	for s := 60; s >= 0; s -= 4 {
		dst = append(dst, hex[v>>uint(s)&0xf])
	}
	return dst
}

// connBuf is a read buffer: bytes b[r:w] are received and not consumed.
type connBuf struct {
	b    []byte
	r, w int
	// full: the last read filled all the room it had, so more bytes may
	// be waiting in the socket (a short read means TCP had no more).
	full bool
}

func (cb *connBuf) buffered() []byte { return cb.b[cb.r:cb.w] }

// compact moves unconsumed bytes to the front.
func (cb *connBuf) compact() {
	if cb.r > 0 {
		n := copy(cb.b, cb.b[cb.r:cb.w])
		cb.r, cb.w = 0, n
	}
}

// fill reads once from c, compacting first when the buffer's tail is full.
func (cb *connBuf) fill(c io.Reader) (int, error) {
	if cb.w == len(cb.b) {
		cb.compact()
		if cb.w == len(cb.b) {
			return 0, errBufferFull
		}
	}
	n, err := c.Read(cb.b[cb.w:])
	cb.full = cb.w+n == len(cb.b)
	cb.w += n
	return n, err
}

var errBufferFull = errors.New("buffer full")

// httpConn is the per-client-connection state, pooled with its buffers.
type httpConn struct {
	h      *httpHandler
	c      stream
	client netip.AddrPort
	ip     []byte   // client IP text for X-Forwarded-For
	ci     connInfo // client, destination and original upstream (transparent.go)

	in   connBuf // from the client
	upIn connBuf // from the upstream
	out  []byte  // head being written

	up      *net.TCPConn
	cio     rawIO // reads and writes of c
	uio     rawIO // of up
	upAddr  string
	upClean bool // up has relayed a complete keep-alive response and nothing since

	req, resp   msgHead
	reqF, respF []hdrField
	acceptBuf   []byte // current request's Accept value
	host        string // last decided host, reused while unchanged
	linger      bool   // drain unread client bytes before closing
	id          []byte // current request ID

	nUp, nDown int64     // bytes relayed for the current request
	now        time.Time // when the current request's head came, or its body was sent

	// While a request body is relayed (bodyStart set), reads of the
	// client are also bounded by the body's minimum data rate: from
	// bodyStart+bodyGrace on, the bytes sent upstream since bodyBase
	// must keep up with minBodyRate.
	bodyStart time.Time
	bodyBase  int64

	// canPark: run may park the idle client (it has a parker); parkFor
	// is then set by readHead to the rest of an idle timeout to park for.
	canPark bool
	parkFor time.Duration

	mu       sync.Mutex // guards idle, draining and the client read deadline while idle
	idle     bool
	draining bool
	wakeDone sync.WaitGroup // drainWake has finished
}

// serveConn serves requests on c until the client or upstream ends the
// connection, a request is blocked or refused, or ctx is cancelled
// (draining: the request in progress completes, then c is closed). It
// closes c.
func (h *httpHandler) serveConn(ctx context.Context, c stream, client netip.AddrPort) {
	ci := newConnInfo(c, client)
	h.serve(ctx, c, &ci)
}

// serve is serveConn for a connection the Server has admitted: ci names
// its client (possibly from a PROXY header), its destination and, in
// transparent mode, the upstream every request goes to.
func (h *httpHandler) serve(ctx context.Context, c stream, ci *connInfo) {
	h.run(ctx, c, ci, "", true, nil, nil)
}

// run serves c from its first request (first) or, resumed by the parker,
// from its next one (host is then the last one decided). Given a parker p
// and the connection's job j, a keep-alive client idle past idleRelease is
// parked (see park.go): run then reports true and c belongs to p.
// Otherwise run closes c.
func (h *httpHandler) run(ctx context.Context, c stream, ci *connInfo, host string, first bool, p *parker, j *connJob) (parked bool) {
	hc := h.conns.Get().(*httpConn)
	hc.h, hc.c, hc.client, hc.ci, hc.host = h, c, ci.client, *ci, host
	hc.canPark = p.enabled()
	hc.ip = ci.client.Addr().Unmap().AppendTo(hc.ip[:0])
	if first && j != nil && len(j.first) > 0 {
		hc.in.grow(len(j.first))
		hc.in.w = copy(hc.in.b, j.first)
		hc.in.full = j.firstFull
		j.first = nil // a parked connection's job must not keep them
	}
	hc.wakeDone.Add(1)
	stop := context.AfterFunc(ctx, hc.drainWake)
	defer func() {
		if !parked {
			if stop() {
				hc.wakeDone.Done()
			} else {
				hc.wakeDone.Wait() // drainWake started: let it finish before reuse
			}
			// The upstream connection first: a client that saw the end
			// of its response may come straight back on a new connection.
			hc.releaseUpstream()
			hc.flushDown()
			if hc.linger {
				lingerClose(c)
			}
			c.Close()
		}
		hc.reset()
		h.conns.Put(hc)
	}()
	for ; ; first = false {
		if ctx.Err() != nil {
			return false
		}
		if !hc.serveRequest(first) {
			return hc.parkFor > 0 && hc.park(p, j, stop)
		}
	}
}

// flushDown sends the end of a response that was left to go out with
// the next read of the client (relayFinal) when that read did not happen
// or failed before it could write: the server is draining, or the read's
// deadline had passed. Nothing else is written before it: rawIO.Write
// sends it first.
func (hc *httpConn) flushDown() {
	if err := hc.cio.flushLead(); err != nil && hc.h.log.Enabled(context.Background(), slog.LevelDebug) {
		hc.h.log.Debug("writing response", "client", hc.client.String(), "error", err)
	}
}

// park parks hc's idle client with p for the rest of its idle timeout
// (hc.parkFor), giving back the upstream connection. It reports false when
// p did not take it; run then closes the connection, as the end of the
// idle wait would.
func (hc *httpConn) park(p *parker, j *connJob, stop func() bool) bool {
	rest := hc.parkFor
	hc.parkFor = 0
	if !stop() {
		return false // draining: drainWake ran (run's cleanup waits for it)
	}
	hc.wakeDone.Done()
	hc.releaseUpstream()
	hc.flushDown() // sent by the idle read already, unless that failed at once
	pc := &parkedConn{job: *j, ci: hc.ci, host: hc.host, fd: -1, expires: time.Now().Add(rest).UnixNano()}
	pc.job.resume = nil
	hc.io(hc.c).rc.Control(func(fd uintptr) { pc.fd = int(fd) })
	return pc.fd >= 0 && p.park(pc)
}

// resume serves a connection the parker resumed (see run).
func (h *httpHandler) resume(ctx context.Context, pc *parkedConn, p *parker) (parked bool) {
	c := pc.job.tc.c
	if pc.expired {
		c.Close() // the idle timeout passed while parked
		return false
	}
	return h.run(ctx, c, &pc.ci, pc.host, false, p, &pc.job)
}

// io returns the raw reader and writer of c, hc's client or upstream
// socket.
func (hc *httpConn) io(c stream) *rawIO {
	if c == hc.c {
		hc.cio.bind(c)
		return &hc.cio
	}
	hc.uio.bind(c)
	return &hc.uio
}

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

func (hc *httpConn) reset() {
	hc.h, hc.c, hc.ci = nil, nil, connInfo{}
	hc.cio.bind(nil)
	hc.uio.bind(nil)
	hc.in.r, hc.in.w = 0, 0
	hc.upIn.r, hc.upIn.w = 0, 0
	hc.out = hc.out[:0]
	hc.host = ""
	hc.idle, hc.draining, hc.linger = false, false, false
	hc.canPark, hc.parkFor = false, 0
	// A buffer grown for a huge head is not kept in the pool.
	if len(hc.in.b) > httpBufSize {
		hc.in.b = make([]byte, httpBufSize)
	}
	if len(hc.upIn.b) > httpBufSize {
		hc.upIn.b = nil
	}
	if cap(hc.out) > 2*outFlushThresh {
		hc.out = make([]byte, 0, 2<<10)
	}
}

// idleWait is the rest (d) of a keep-alive client's idle wait after
// idleRelease when it cannot be parked (a handler serving without a
// Server's parker): the upstream connection and both buffers are given
// back and the wait holds neither, only the goroutine. It reports whether
// the client has something to read; false when the wait timed out, the
// server is draining or the connection was closed.
func (hc *httpConn) idleWait(d time.Duration) bool {
	hc.mu.Lock()
	if hc.draining {
		hc.mu.Unlock()
		return false
	}
	hc.io(hc.c).setDeadline(dlRead, time.Now(), d)
	hc.mu.Unlock()
	hc.releaseUpstream()
	hc.flushDown() // the client waits for it before it sends more
	if hc.up == nil && hc.upIn.b != nil {
		putHTTPBuf(hc.upIn.b)
		hc.upIn.b = nil
	}
	putHTTPBuf(hc.in.b)
	hc.in = connBuf{}
	ok := hc.io(hc.c).waitReadable()
	hc.in.b = getHTTPBuf()
	return ok
}

// drainWake runs when the server starts draining: a connection waiting for
// its next request is woken and closes; one serving a request finishes it.
func (hc *httpConn) drainWake() {
	defer hc.wakeDone.Done()
	hc.mu.Lock()
	hc.draining = true
	if hc.idle {
		hc.c.SetReadDeadline(time.Now())
	}
	hc.mu.Unlock()
}

func (hc *httpConn) closeUpstream() {
	hc.uio.bind(nil) // nothing pending (a request that failed is not sent again)
	if hc.up != nil {
		hc.up.Close()
		hc.up, hc.upAddr = nil, ""
		hc.upIn.r, hc.upIn.w = 0, 0
	}
	hc.upClean = false
}

// releaseUpstream lets go of the upstream connection: back into the shared
// pool when it is clean (its last response was complete and well framed,
// allowed keep-alive, and nothing from the upstream is buffered), else
// closed.
func (hc *httpConn) releaseUpstream() {
	if hc.up == nil {
		return
	}
	if p := hc.h.pool; p != nil && hc.upClean && len(hc.upIn.buffered()) == 0 {
		// Deadlines set while relaying must not fire on the next user.
		if hc.up.SetDeadline(time.Time{}) == nil {
			hc.uio.bind(nil)
			p.put(hc.upAddr, hc.up)
			hc.up, hc.upAddr, hc.upClean = nil, "", false
			hc.upIn.r, hc.upIn.w = 0, 0
			return
		}
	}
	hc.closeUpstream()
}

// refuse answers a request refused before any decision and counts it.
func (hc *httpConn) refuse(err error, head bool) {
	h := hc.h
	status, kind := 400, "bad_request"
	switch {
	case errors.Is(err, ErrHTTPHeaderTooLarge):
		status, kind = 431, "header_too_large"
		h.errTooLarge.Inc()
	case errors.Is(err, ErrHTTPMethodNotAllowed):
		status, kind = 405, "method_not_allowed"
		h.errMethod.Inc()
	case errors.Is(err, ErrHTTPVersion):
		status, kind = 505, "version_not_supported"
		h.errVersion.Inc()
	case errors.Is(err, ErrHTTPExpectation):
		status, kind = 417, "expectation_failed"
		h.errExpect.Inc()
	case errors.Is(err, os.ErrDeadlineExceeded):
		status, kind = 408, "request_timeout"
		h.errTimeout.Inc()
	default:
		h.errBadRequest.Inc()
	}
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.Debug("request refused", "client", hc.client.String(), "status", status, "error", err)
	}
	hc.writeError(status, kind, "", head)
}

// writeError writes a gateway error page (never a redirect) and the caller
// closes the connection.
func (hc *httpConn) writeError(status int, kind, host string, head bool) {
	h := hc.h
	hc.linger = true
	hc.io(hc.c).setDeadline(dlWrite, time.Now(), h.hello)
	err := WriteBlock(hc.io(hc.c), BlockRequest{
		Host: host, RequestID: string(hc.nextID()), Node: h.node, Status: status,
		Error: kind, HeadOnly: head, Page: h.page, Accept: hc.accept(),
	})
	if err != nil && h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.Debug("writing error response", "client", hc.client.String(), "error", err)
	}
}

func (hc *httpConn) nextID() []byte {
	hc.id = hc.h.ids.next(hc.id[:0])
	return hc.id
}

// accept returns the current request's Accept value (for choosing HTML or
// JSON error pages). It is copied out of the head by serveRequest because
// the body relay may reuse the buffer the head was in.
func (hc *httpConn) accept() string { return string(hc.acceptBuf) }

// readHead reads until the buffer holds a complete request head and returns
// its length. ok is false when the connection should close quietly (EOF,
// idle timeout or drain before the first byte); err is non-nil when the
// client must get an error response.
func (hc *httpConn) readHead(first bool) (n int, ok bool, err error) {
	h := hc.h
	in := &hc.in
	// Keep the head contiguous from in.r; compact when little room is left.
	if len(in.b)-in.r < h.maxHeaderBytes && in.r > 0 {
		in.compact()
	}
	waiting := len(in.buffered()) == 0
	var rest time.Duration // of the idle wait after idleRelease, when it applies
	if waiting {
		d := h.idle
		if first {
			d = h.hello
		} else if d > idleRelease {
			d, rest = idleRelease, d-idleRelease
		}
		hc.mu.Lock()
		if hc.draining {
			hc.mu.Unlock()
			return 0, false, nil
		}
		hc.idle = true
		hc.io(hc.c).setDeadline(dlRead, time.Now(), d)
		hc.mu.Unlock()
	} else {
		hc.io(hc.c).setDeadline(dlRead, time.Now(), h.hello)
	}
	scan := 0
	hello := false // the read deadline is the idle wait's: set Hello's before the next read
	for {
		buf := in.buffered()
		limit := buf
		if len(limit) > h.maxHeaderBytes {
			limit = limit[:h.maxHeaderBytes]
		}
		end, perr := headEnd(limit, scan)
		if perr != nil {
			return 0, true, perr
		}
		if end > 0 {
			return end, true, nil
		}
		if len(buf) >= h.maxHeaderBytes {
			return 0, true, fmt.Errorf("%w: head over %d bytes", ErrHTTPHeaderTooLarge, h.maxHeaderBytes)
		}
		scan = headScanFrom(len(buf))
		if in.w == len(in.b) {
			in.compact()
			if in.w == len(in.b) {
				in.grow(h.maxHeaderBytes + 1)
			}
		}
		if hello {
			// The rest of a head that has begun comes within Hello.
			hello = false
			hc.io(hc.c).setDeadline(dlRead, time.Now(), h.hello)
		}
		nr, rerr := in.fill(hc.io(hc.c))
		if nr > 0 && waiting {
			waiting = false
			hc.mu.Lock()
			hc.idle = false
			if hc.draining {
				hc.cio.forget() // drainWake moved the read deadline
			}
			hc.mu.Unlock()
			// A head that is complete now needs no further read: the
			// Hello deadline is set only before one (hello).
			hello = true
		}
		if rerr != nil && nr == 0 {
			if len(in.buffered()) == 0 {
				if rest > 0 && errors.Is(rerr, os.ErrDeadlineExceeded) {
					d := rest
					rest = 0
					if hc.canPark {
						hc.parkFor = d // run parks the connection
						return 0, false, nil
					}
					if hc.idleWait(d) {
						continue // the client sent something (or closed): read it
					}
				}
				return 0, false, nil // closed, idle timeout or drain between requests
			}
			if errors.Is(rerr, os.ErrDeadlineExceeded) {
				return 0, true, fmt.Errorf("reading request head: %w", rerr)
			}
			return 0, false, nil // client gone mid-head
		}
	}
}

// grow enlarges the buffer to at least n bytes (rare: heads over 16 KiB).
func (cb *connBuf) grow(n int) {
	if len(cb.b) >= n {
		return
	}
	nb := make([]byte, n)
	cb.w = copy(nb, cb.b[cb.r:cb.w])
	cb.r = 0
	cb.b = nb
}

// serveRequest handles one request and reports whether the connection may
// carry another.
func (hc *httpConn) serveRequest(first bool) bool {
	h := hc.h
	n, ok, err := hc.readHead(first)
	hc.req.reset(hc.reqF)
	hc.acceptBuf = hc.acceptBuf[:0]
	if !ok {
		return false
	}
	if err != nil {
		hc.refuse(err, false)
		return false
	}
	start := time.Now()
	hc.now = start
	in := &hc.in
	head := in.b[in.r : in.r+n]
	// Spans index head; they stay valid until the body relay refills the
	// buffer, by which time the forwarded head has been built.
	err = parseRequestHead(head, &hc.req, h.maxHeaders)
	hc.reqF = hc.req.fields[:0]
	hc.acceptBuf = append(hc.acceptBuf[:0], hc.req.accept.of(head)...)
	isHead := len(head) > 5 && string(head[:5]) == "HEAD "
	if err != nil {
		hc.refuse(err, isHead)
		return false
	}
	req := &hc.req
	in.r += n

	// Decide. The authority of an absolute-form target wins over Host;
	// HTTP/1.0 without Host is decided on "" (the ip_access policy).
	if req.hasAuthority {
		a := req.authority.of(head)
		if string(a) != hc.host {
			hc.host = string(a)
		}
	} else {
		hc.host = ""
	}
	dec := h.d.Decide(hc.host)
	if !dec.Pass {
		hc.block(&dec, isHead, start)
		return false
	}
	h.countDecision(&dec)
	hc.id = h.ids.next(hc.id[:0])

	if req.chunked {
		// Validate what is already buffered before the upstream is even
		// dialled, so a malformed chunked request sent in one piece never
		// reaches it.
		if err := prevalidateChunked(hc.in.buffered()); err != nil {
			hc.refuse(err, isHead)
			return false
		}
	}
	upstream := dec.Upstream
	if upstream == "" {
		upstream = h.l.Upstream
	}
	if hc.ci.upstream != "" {
		// Transparent mode: the server the client dialled, always.
		upstream = hc.ci.upstream
	}
	// A pooled upstream connection may have been closed by the upstream
	// while idle. Idempotent requests without a body are simply retried
	// once on a new connection when that happens (as net/http's Transport
	// does), which saves a syscall per request; anything else is sent
	// only after a non-blocking liveness peek.
	retryable := !req.chunked && req.contentLength <= 0 && !(req.hasUpgrade && req.conn&connUpgrade != 0) && idempotent(req.method.of(head))
	reused, err := hc.ensureUpstream(upstream, !retryable)
	hc.nUp, hc.nDown = 0, 0
	var keep bool
	if err == nil {
		keep, err = hc.forward(head, isHead, reused && retryable)
		if errors.Is(err, errStaleUpstream) {
			hc.closeUpstream()
			// A fresh connection: the pool's next one may be as stale.
			if err = hc.dialUpstream(upstream); err == nil {
				keep, err = hc.forward(head, isHead, false)
			}
		}
	}
	if err != nil && errors.Is(err, errDial) {
		kind, status := "upstream_unavailable", 502
		if errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
			kind, status = "upstream_timeout", 504
			h.upTimeout.Inc()
		} else {
			h.upDial.Inc()
		}
		if h.log.Enabled(context.Background(), slog.LevelDebug) {
			h.log.Debug("dialling upstream", "upstream", upstream, "error", err)
		}
		hc.writeErrorSameID(status, kind, hc.host, isHead)
		return false
	}
	h.bytesUp.Add(float64(hc.nUp))
	h.bytesDown.Add(float64(hc.nDown))
	h.durPass.Observe(time.Since(start).Seconds())
	if err != nil {
		if h.log.Enabled(context.Background(), slog.LevelDebug) {
			h.log.Debug("forwarding request", "client", hc.client.String(), "upstream", upstream, "error", err)
		}
		return false
	}
	if !keep {
		return false
	}
	hc.mu.Lock()
	d := hc.draining
	hc.mu.Unlock()
	return !d
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeErrorSameID is writeError keeping the current request's ID.
func (hc *httpConn) writeErrorSameID(status int, kind, host string, head bool) {
	h := hc.h
	hc.linger = true
	hc.io(hc.c).setDeadline(dlWrite, time.Now(), h.hello)
	WriteBlock(hc.io(hc.c), BlockRequest{
		Host: host, RequestID: string(hc.id), Node: h.node, Status: status,
		Error: kind, HeadOnly: head, Page: h.page, Accept: hc.accept(),
	})
}

// block answers a blocked request (answerBlock), under the write
// deadline. Nothing is sent upstream.
func (hc *httpConn) block(dec *Decision, isHead bool, start time.Time) {
	h := hc.h
	hc.linger = true
	hc.io(hc.c).setDeadline(dlWrite, time.Now(), h.hello)
	var err error
	hc.id, err = h.answerBlock(hc.io(hc.c), dec, hc.host, hc.id, hc.client, hc.ci.dst, hc.accept(), isHead, start)
	if err != nil && h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.Debug("writing block response", "client", hc.client.String(), "error", err)
	}
	// Linger only when the client may still be sending (nginx's
	// "lingering_close on" heuristic, with no system call): a body
	// follows the head, bytes are buffered, or the last read filled the
	// buffer, so more may be pending. A blocked GET, the common case, is
	// closed at once with a FIN: no shutdown, no read deadline, no wait
	// for the client's FIN.
	req := &hc.req
	hc.linger = err != nil || req.chunked || req.contentLength > 0 || len(hc.in.buffered()) > 0 || hc.in.full
}

// answerBlock is the one path of a blocked HTTP request, for the handler
// (httpConn.block) and the engine (blockFast): it counts the decision dec
// on host, makes the request's self-describing ID in id's array
// (blockid.go), logs and observes the block (dst: the original
// destination in transparent mode, else zero), writes the block response
// to w and records the time since start, when the request was read. It
// returns the ID and the write's error.
func (h *httpHandler) answerBlock(w io.Writer, dec *Decision, host string, id []byte, client, dst netip.AddrPort, accept string, isHead bool, start time.Time) ([]byte, error) {
	h.countDecision(dec)
	id = appendBlockID(id[:0], h.node, dec, host, start)
	h.blocks.LogID(h.l.Name, "http", host, dec.Reason, id, client)
	h.obs.observe(dec, h.l.Upstream, dst)
	err := WriteBlock(w, h.blockRequest(dec, host, string(id), accept, isHead, start))
	h.durBlock.Observe(time.Since(start).Seconds())
	return id, err
}

// blockRequest is the block response to a request for host decided dec.
func (h *httpHandler) blockRequest(dec *Decision, host, id, accept string, isHead bool, now time.Time) BlockRequest {
	status := h.status
	if h.redirect != "" {
		status = 0 // 302
	}
	return BlockRequest{
		Host: host, Decision: *dec, RequestID: id, Node: h.node,
		Accept: accept, Status: status, RedirectURL: h.redirect,
		HeadOnly: isHead, Page: h.page, Time: now,
	}
}

// peekOne peeks at one byte of c without blocking or consuming it, with a
// raw recvfrom(2): n bytes available (0 at EOF) or the errno, EAGAIN when
// nothing is pending. ok is false when c is closed.
func peekOne(c *net.TCPConn) (n int, errno syscall.Errno, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	rerr := rc.Read(func(fd uintptr) bool {
		n, errno = rawPeek(int(fd))
		return true
	})
	return n, errno, rerr == nil
}

// lingerClose lets a final response reach the client before the close: a
// close with unread request bytes pending sends a reset, which can destroy
// the response in flight. It half-closes, then discards what the client
// still sends for up to a second (at most 32 KiB).
func lingerClose(c stream) {
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(time.Second))
	var discard [512]byte
	for i := 0; i < 64; i++ {
		if _, err := c.Read(discard[:]); err != nil {
			return
		}
	}
}

// errDial marks a failure to dial the upstream.
var errDial = errors.New("dialling upstream")

// errStaleUpstream marks a reused upstream connection that turned out to be
// closed before it answered: the request may be retried on a new one.
var errStaleUpstream = errors.New("pooled upstream connection closed")

// idempotent reports methods that may be retried (RFC 9110 §9.2.2).
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// ensureUpstream makes hc.up a connection to addr: the one this client
// connection already holds when it is to addr and clean (check also peeks
// that it is still open), else an idle one from the shared pool (always
// peeked), else a new one. reused reports a connection that carried
// requests before, which the upstream may close at any moment.
func (hc *httpConn) ensureUpstream(addr string, check bool) (reused bool, err error) {
	if hc.up != nil && hc.upAddr == addr && len(hc.upIn.buffered()) == 0 && (!check || upstreamAlive(hc.up)) {
		return true, nil
	}
	if hc.up != nil && hc.upAddr == addr {
		hc.closeUpstream() // dead, or bytes the upstream should not have sent
	}
	hc.releaseUpstream() // another upstream's: back to the pool when clean
	if p := hc.h.pool; p != nil {
		if c := p.get(addr); c != nil {
			hc.allocUpstreamBuf()
			hc.up, hc.upAddr, hc.upClean = c, addr, false
			return true, nil
		}
	}
	return false, hc.dialUpstream(addr)
}

// dialUpstream makes hc.up a new connection to addr. hc.up must be nil.
func (hc *httpConn) dialUpstream(addr string) error {
	hc.allocUpstreamBuf()
	c, err := hc.h.dialer.dial(context.Background(), addr, &hc.ci)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errDial, addr, err)
	}
	hc.up, hc.upAddr, hc.upClean = c, addr, false
	return nil
}

// allocUpstreamBuf allocates the upstream read buffer on the first passing
// request: connections that are only ever blocked or refused never need it.
func (hc *httpConn) allocUpstreamBuf() {
	if hc.upIn.b == nil {
		hc.upIn.b = getHTTPBuf()
	}
}

// upstreamAlive checks a pooled upstream connection without blocking: a
// pending EOF, reset or stray byte means it must not be reused.
func upstreamAlive(c *net.TCPConn) bool {
	_, errno, ok := peekOne(c)
	return ok && errno == syscall.EAGAIN
}

// forward sends the passing request upstream, relays its body and the
// response, and reports whether the client connection stays open. With
// canRetry (a reused connection, a retryable request), a connection found
// closed before any response byte yields errStaleUpstream and nothing is
// written to the client.
func (hc *httpConn) forward(head []byte, isHead, canRetry bool) (bool, error) {
	h := hc.h
	req := &hc.req
	b := head
	upgrade := req.hasUpgrade && req.conn&connUpgrade != 0 && !req.h2c
	hc.upClean = false // until a complete response says otherwise
	req.markDropped(b, isHopByHop)

	// Request line: origin-form for an absolute-form target.
	o := hc.out[:0]
	o = append(o, req.method.of(b)...)
	o = append(o, ' ')
	if req.absolute {
		p := req.path.of(b)
		if len(p) == 0 || p[0] == '?' {
			o = append(o, '/')
		}
		o = append(o, p...)
	} else {
		o = append(o, req.target.of(b)...)
	}
	if req.minor == 1 {
		o = append(o, " HTTP/1.1\r\n"...)
	} else {
		o = append(o, " HTTP/1.0\r\n"...)
	}
	if req.hasAuthority {
		o = append(o, "Host: "...)
		o = append(o, req.authority.of(b)...)
		o = append(o, "\r\n"...)
	}
	for k := range req.fields {
		f := &req.fields[k]
		n := f.name.of(b)
		if f.drop || (len(n) == 4 && equalFold(n, "host")) || (req.h2c && equalFold(n, "http2-settings")) {
			continue
		}
		o = append(o, n...)
		o = append(o, ": "...)
		o = append(o, f.value.of(b)...)
		o = append(o, "\r\n"...)
	}
	// The body's framing is the gateway's: written from what it parsed
	// and relays below, whatever the client's own fields said.
	if req.chunked {
		o = append(o, "Transfer-Encoding: chunked\r\n"...)
	} else if req.contentLength >= 0 {
		o = append(o, "Content-Length: "...)
		o = strconv.AppendInt(o, req.contentLength, 10)
		o = append(o, "\r\n"...)
	}
	if upgrade {
		o = append(o, "Connection: upgrade\r\nUpgrade: "...)
		o = append(o, req.upgrade.of(b)...)
		o = append(o, "\r\n"...)
	}
	o = append(o, "X-Forwarded-For: "...)
	o = append(o, hc.ip...)
	o = append(o, "\r\nX-Forwarded-Proto: "...)
	o = append(o, h.proto...)
	o = append(o, "\r\nX-Request-Id: "...)
	o = append(o, hc.id...)
	o = append(o, "\r\n\r\n"...)
	hc.out = o

	hasBody := req.chunked || req.contentLength > 0
	if req.expect100 && hasBody && req.minor == 1 {
		hc.io(hc.c).setDeadline(dlWrite, time.Now(), h.idle)
		if _, err := hc.io(hc.c).Write(continueLine); err != nil {
			return false, fmt.Errorf("writing 100 continue: %w", err)
		}
	}

	// One deadline for the request's writes and the response head's
	// reads (readResponseHead).
	hc.io(hc.up).setDeadline(dlBoth, hc.now, h.idle)
	var err error
	if hasBody && h.minBodyRate > 0 {
		hc.bodyStart, hc.bodyBase = hc.now, hc.nUp+int64(len(hc.out))
	}
	switch {
	case req.chunked:
		var k chunkReader
		err = hc.relayChunked(&k, &hc.in, hc.c, hc.up, &hc.nUp, true)
	case req.contentLength > 0:
		err = hc.relayLength(req.contentLength, &hc.in, hc.c, hc.up, &hc.nUp)
	case hc.upIn.r == hc.upIn.w && len(hc.out) > 0:
		// No body: the head is written by the read of the response
		// head, inside its wait (rawIO.sendThenRead), which saves the
		// read that would find nothing yet. Write errors come back as
		// that read's and take the same paths (stale retry, 502).
		// hc.out stays untouched until then: only that read comes
		// before its next use.
		hc.io(hc.up).sendThenRead(hc.out)
		hc.nUp += int64(len(hc.out))
		hc.out = hc.out[:0]
	default:
		err = hc.flushOut(hc.up, &hc.nUp)
	}
	slow := hasBody && err != nil && hc.bodyTooSlow(time.Now())
	hc.bodyStart = time.Time{}
	if hasBody {
		hc.now = time.Now() // the response head's wait starts after the body
	}
	if err != nil {
		if canRetry && !isTimeout(err) {
			return false, fmt.Errorf("%w: %w", errStaleUpstream, err)
		}
		if errors.Is(err, ErrHTTPBadRequest) {
			hc.refuse(err, isHead)
		} else if hc.nDown == 0 && isTimeout(err) {
			// No progress for Timeouts.Idle, or less than
			// Limits.MinBodyRate, while relaying the request body:
			// almost always a slow (or slowloris) client.
			if slow {
				hc.h.errSlowBody.Inc()
			} else {
				hc.h.errTimeout.Inc()
			}
			hc.writeErrorSameID(408, "request_timeout", hc.host, isHead)
		} else if hc.nDown == 0 {
			// The upstream failed (or the client vanished) mid-body; a
			// 502 to a vanished client is harmless.
			hc.h.upReset.Inc()
			hc.writeErrorSameID(502, "upstream_unavailable", hc.host, isHead)
		}
		hc.closeUpstream()
		return false, fmt.Errorf("relaying request: %w", err)
	}
	return hc.relayResponse(isHead, upgrade, canRetry)
}

// flushOut writes hc.out to dst.
func (hc *httpConn) flushOut(dst stream, count *int64) error {
	if len(hc.out) == 0 {
		return nil
	}
	n, err := hc.io(dst).Write(hc.out)
	*count += int64(n)
	hc.out = hc.out[:0]
	return err
}

// relayLength sends hc.out, then n body bytes from src (buffered first) to
// dst. Large remainders move with splice(2) (hc.splice).
func (hc *httpConn) relayLength(n int64, src *connBuf, srcConn, dst stream, count *int64) error {
	buf := src.buffered()
	take := int64(len(buf))
	if take > n {
		take = n
	}
	if len(hc.out)+int(take) <= outFlushThresh {
		hc.out = append(hc.out, buf[:take]...)
		if err := hc.flushOut(dst, count); err != nil {
			return err
		}
	} else {
		if err := hc.flushOut(dst, count); err != nil {
			return err
		}
		w, err := hc.io(dst).Write(buf[:take])
		*count += int64(w)
		if err != nil {
			return err
		}
	}
	src.r += int(take)
	return hc.splice(n-take, srcConn, dst, count)
}

// splice copies exactly n bytes from src to dst, refreshing the idle
// deadlines every spliceStep bytes.
//
// A deadline that passes after the run moved some bytes is not the end:
// the run may have been long (a slow upload of spliceStep bytes), so the
// next run starts with fresh deadlines, unless the body is too slow.
func (hc *httpConn) splice(n int64, src, dst stream, count *int64) error {
	for n > 0 {
		step := min(n, spliceStep)
		now := time.Now()
		hc.io(src).setDeadline(dlRead, now, hc.readTimeout(src, now))
		hc.io(dst).setDeadline(dlWrite, now, hc.h.idle)
		w, eof, err := spliceRun(hc.h.splicers, dst, src, step)
		*count += w
		n -= w
		if err != nil {
			if w > 0 && isTimeout(err) && !hc.bodyTooSlow(time.Now()) {
				continue
			}
			return err
		}
		if eof {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// readTimeout is how long a read of src may wait at now: the idle timeout,
// or less while a request body is relayed from the client and the body's
// minimum data rate will be missed sooner.
func (hc *httpConn) readTimeout(src stream, now time.Time) time.Duration {
	d := hc.h.idle
	if src != hc.c || hc.bodyStart.IsZero() {
		return d
	}
	if due := hc.bodyDue().Sub(now); due < d {
		d = max(due, 0)
	}
	return d
}

// bodyDue is when the request body being relayed falls below the minimum
// data rate unless more of it arrives.
func (hc *httpConn) bodyDue() time.Time {
	sent := hc.nUp - hc.bodyBase
	return hc.bodyStart.Add(hc.h.bodyGrace + time.Duration(sent)*time.Second/time.Duration(hc.h.minBodyRate))
}

// bodyTooSlow reports whether the request body being relayed has fallen
// below the minimum data rate at now.
func (hc *httpConn) bodyTooSlow(now time.Time) bool {
	return !hc.bodyStart.IsZero() && !now.Before(hc.bodyDue())
}

// relayChunked relays a chunked body from src to dst after hc.out,
// validating its framing. request selects the error class.
func (hc *httpConn) relayChunked(k *chunkReader, src *connBuf, srcConn, dst stream, count *int64, request bool) error {
	for k.st != ckDone {
		p := src.buffered()
		if k.st == ckData && len(p) == 0 && k.rem > int64(len(src.b)) {
			if err := hc.flushOut(dst, count); err != nil {
				return err
			}
			if err := hc.splice(k.rem, srcConn, dst, count); err != nil {
				return err
			}
			k.rem = 0
			k.st = ckDataCRLF
			continue
		}
		prev := k.st
		n, err := k.step(p)
		if err != nil {
			if !request {
				return fmt.Errorf("%w: %w", ErrHTTPBadResponse, err)
			}
			return err
		}
		if n == 0 {
			if err := hc.flushOut(dst, count); err != nil {
				return err
			}
			if src.r == src.w {
				src.r, src.w = 0, 0
			}
			now := time.Now()
			hc.io(srcConn).setDeadline(dlRead, now, hc.readTimeout(srcConn, now))
			nr, rerr := src.fill(hc.io(srcConn))
			if rerr != nil && nr == 0 {
				if errors.Is(rerr, errBufferFull) {
					return badRequest("chunk line too long")
				}
				return fmt.Errorf("reading chunked body: %w", rerr)
			}
			continue
		}
		if request && prev == ckSize {
			// The size line goes upstream as the gateway writes it: the
			// size in hex, no extension (RFC 9112 §7.1.1 lets a recipient
			// ignore them), no whitespace; origins disagree on what they
			// accept there, so the client's spelling is not passed on.
			if len(hc.out)+18 > outFlushThresh {
				if err := hc.flushOut(dst, count); err != nil {
					return err
				}
			}
			hc.out = strconv.AppendInt(hc.out, k.rem, 16)
			hc.out = append(hc.out, "\r\n"...)
			src.r += n
			continue
		}
		if request && prev == ckTrailer && k.st == ckTrailer {
			// Request trailer fields are validated and dropped (RFC 9110
			// §6.5.1 lets a recipient discard them): some servers merge
			// trailers into the header fields, which would let a trailer
			// "Host" or "Content-Length" slip past the decision.
			src.r += n
			continue
		}
		if len(hc.out)+n > outFlushThresh {
			if err := hc.flushOut(dst, count); err != nil {
				return err
			}
		}
		if n > outFlushThresh {
			w, err := hc.io(dst).Write(p[:n])
			*count += int64(w)
			if err != nil {
				return err
			}
		} else {
			hc.out = append(hc.out, p[:n]...)
		}
		src.r += n
	}
	return hc.flushOut(dst, count)
}

// relayResponse reads the upstream's response (after any 1xx interim ones)
// and relays it to the client. upgrade says the request asked for a
// protocol upgrade: a 101 then turns the connection into a tunnel.
func (hc *httpConn) relayResponse(isHead, upgrade, canRetry bool) (bool, error) {
	h := hc.h
	up := &hc.upIn
	for {
		n, err := hc.readResponseHead()
		if err != nil && canRetry && hc.nDown == 0 && up.w == 0 && !isTimeout(err) {
			// Closed (EOF or reset) before a single response byte.
			return false, fmt.Errorf("%w: %w", errStaleUpstream, err)
		}
		if err != nil {
			hc.closeUpstream()
			if hc.nDown == 0 {
				if isTimeout(err) {
					h.upTimeout.Inc()
					hc.writeErrorSameID(504, "upstream_timeout", hc.host, isHead)
				} else {
					if errors.Is(err, ErrHTTPBadResponse) {
						h.upBad.Inc()
					} else {
						h.upReset.Inc()
					}
					hc.writeErrorSameID(502, "upstream_unavailable", hc.host, isHead)
				}
			}
			return false, err
		}
		b := up.b[up.r : up.r+n]
		resp := &hc.resp
		resp.reset(hc.respF)
		err = parseResponseHead(b, resp, h.maxHeaders)
		hc.respF = resp.fields[:0]
		if err != nil {
			h.upBad.Inc()
			hc.closeUpstream()
			if hc.nDown == 0 {
				hc.writeErrorSameID(502, "upstream_unavailable", hc.host, isHead)
			}
			return false, err
		}
		if resp.status == 101 {
			if !upgrade {
				h.upBad.Inc()
				hc.closeUpstream()
				hc.writeErrorSameID(502, "upstream_unavailable", hc.host, isHead)
				return false, fmt.Errorf("%w: 101 without an upgrade request", ErrHTTPBadResponse)
			}
			hc.out = append(hc.out[:0], b...)
			up.r += n
			hc.out = append(hc.out, up.buffered()...)
			up.r = up.w
			hc.io(hc.c).setDeadline(dlWrite, time.Now(), h.idle)
			if err := hc.flushOut(hc.c, &hc.nDown); err != nil {
				return false, err
			}
			hc.tunnel()
			return false, nil
		}
		if resp.status < 200 {
			// Interim response (100, 102, 103): relay as is, read on.
			hc.out = append(hc.out[:0], b...)
			up.r += n
			hc.io(hc.c).setDeadline(dlWrite, time.Now(), h.idle)
			if err := hc.flushOut(hc.c, &hc.nDown); err != nil {
				return false, err
			}
			hc.now = time.Now() // the final response's wait starts now
			continue
		}
		return hc.relayFinal(b, n, isHead)
	}
}

// readResponseHead reads until hc.upIn holds a complete response head.
func (hc *httpConn) readResponseHead() (int, error) {
	h := hc.h
	up := &hc.upIn
	if up.r == up.w {
		up.r, up.w = 0, 0
	} else if len(up.b)-up.r < h.maxHeaderBytes {
		up.compact()
	}
	hc.io(hc.up).setDeadline(dlRead, hc.now, h.idle)
	scan := 0
	for {
		buf := up.buffered()
		end, err := headEnd(buf, scan)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrHTTPBadResponse, err)
		}
		if end > 0 {
			return end, nil
		}
		if len(buf) >= h.maxHeaderBytes {
			return 0, fmt.Errorf("%w: response head too large", ErrHTTPBadResponse)
		}
		scan = headScanFrom(len(buf))
		if up.w == len(up.b) {
			up.grow(h.maxHeaderBytes + 1)
		}
		nr, err := up.fill(hc.io(hc.up))
		if err != nil && nr == 0 {
			return 0, fmt.Errorf("reading response head: %w", err)
		}
	}
}

// relayFinal relays a final response whose head is b (n bytes buffered).
func (hc *httpConn) relayFinal(b []byte, n int, isHead bool) (bool, error) {
	h := hc.h
	req, resp := &hc.req, &hc.resp
	up := &hc.upIn
	resp.markDropped(b, isResponseHopByHop)

	noBody := isHead || resp.status == 204 || resp.status == 304
	closeDelimited := !noBody && !resp.chunked && resp.contentLength < 0
	upKeep := resp.minor == 1 && resp.conn&connClose == 0 && !closeDelimited
	hc.mu.Lock()
	draining := hc.draining
	hc.mu.Unlock()
	clientKeep := upKeep && req.minor == 1 && req.conn&connClose == 0 && !draining

	o := hc.out[:0]
	// Status line as received.
	i := 0
	for b[i] != '\n' {
		i++
	}
	o = append(o, b[:i+1]...)
	for k := range resp.fields {
		f := &resp.fields[k]
		if f.drop {
			continue
		}
		// Transfer-Encoding overrides Content-Length (RFC 9112 §6.3); do
		// not pass the ambiguity on to the client.
		if (resp.chunked || resp.teOther) && len(f.name.of(b)) == 14 && equalFold(f.name.of(b), "content-length") {
			continue
		}
		o = append(o, f.name.of(b)...)
		o = append(o, ": "...)
		o = append(o, f.value.of(b)...)
		o = append(o, "\r\n"...)
	}
	if !clientKeep {
		o = append(o, "Connection: close\r\n"...)
	}
	o = append(o, "\r\n"...)
	hc.out = o
	up.r += n

	hc.io(hc.c).setDeadline(dlWrite, time.Now(), h.idle)
	var err error
	switch {
	case clientKeep && len(hc.in.buffered()) == 0 && (noBody ||
		!resp.chunked && resp.contentLength >= 0 &&
			resp.contentLength <= int64(min(len(up.buffered()), outFlushThresh-len(o)))):
		// The whole response is here and the client has sent nothing
		// more: it goes out inside the wait for the client's next
		// request (rawIO.sendThenRead), saving the read that would find
		// nothing yet. Errors come back as that read's. hc.out stays
		// untouched until then: the next use of it follows that read,
		// and run's exits send what is still pending (hc.flushDown).
		if !noBody {
			hc.out = append(hc.out, up.buffered()[:resp.contentLength]...)
			up.r += int(resp.contentLength)
		}
		hc.io(hc.c).sendThenRead(hc.out)
		hc.nDown += int64(len(hc.out))
		hc.out = hc.out[:0]
	case noBody:
		err = hc.flushOut(hc.c, &hc.nDown)
	case resp.chunked:
		var k chunkReader
		err = hc.relayChunked(&k, up, hc.up, hc.c, &hc.nDown, false)
	case resp.contentLength >= 0:
		err = hc.relayLength(resp.contentLength, up, hc.up, hc.c, &hc.nDown)
	default:
		err = hc.relayUntilEOF()
	}
	if err != nil {
		hc.closeUpstream()
		return false, fmt.Errorf("relaying response: %w", err)
	}
	switch {
	case !upKeep:
		hc.closeUpstream()
	case len(up.buffered()) > 0:
		// The origin sent more than the response it framed: whatever it
		// is, it answers no request of ours, and on a pooled connection
		// it would be read as the next client's response.
		h.upExcess.Inc()
		hc.closeUpstream()
		upKeep = false
	default:
		hc.upClean = true
	}
	return clientKeep, nil
}

// relayUntilEOF relays a close-delimited response body.
func (hc *httpConn) relayUntilEOF() error {
	up := &hc.upIn
	hc.out = append(hc.out, up.buffered()...)
	up.r = up.w
	if err := hc.flushOut(hc.c, &hc.nDown); err != nil {
		return err
	}
	for {
		now := time.Now()
		hc.io(hc.up).setDeadline(dlRead, now, hc.h.idle)
		hc.io(hc.c).setDeadline(dlWrite, now, hc.h.idle)
		w, eof, err := spliceRun(hc.h.splicers, hc.c, hc.up, spliceStep)
		hc.nDown += w
		if err != nil {
			return err
		}
		if eof {
			return nil
		}
	}
}

// tunnel relays bytes both ways after a 101 until both sides are done.
func (hc *httpConn) tunnel() {
	// Bytes the client pipelined behind the upgrade request belong to the
	// new protocol.
	if rest := hc.in.buffered(); len(rest) > 0 {
		w, err := hc.io(hc.up).Write(rest)
		hc.nUp += int64(w)
		hc.in.r = hc.in.w
		if err != nil {
			return
		}
	}
	var zero time.Time
	hc.c.SetDeadline(zero)
	hc.up.SetDeadline(zero)
	hc.cio.forget()
	hc.uio.forget()
	defer watchTunnel(hc.c, hc.up, hc.h.tunnelIdle, hc.h.tunnelIdleClosed)()
	done := make(chan int64, 1)
	go tunnelCopy(hc.h.splicers, hc.up, hc.c, done)
	down, _ := spliceCopy(hc.h.splicers, hc.c, hc.up, nil)
	hc.c.CloseWrite()
	hc.nDown += down
	hc.nUp += <-done
}

// watchTunnel ends the tunnel between c and up once neither has moved a
// byte for idle, by passing both sockets' deadlines so that both copies
// return; the closure is counted. It returns the function that stops
// watching. Like a TLS relay's idle check (connSet.checkIdle) it reads
// activity from the kernel, so the copies need no per-read deadlines: a
// timer wakes about once per idle period whatever the traffic.
func watchTunnel(c, up stream, idle time.Duration, closed prometheus.Counter) (stop func()) {
	var mu sync.Mutex // guards t and stopped
	var t *time.Timer
	stopped := false
	mu.Lock()
	t = time.AfterFunc(idle, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		ic, err := tcpInactive(c)
		if err != nil {
			return // closed meanwhile
		}
		iu, err := tcpInactive(up)
		if err != nil {
			return
		}
		if inactive := min(ic, iu); inactive < idle {
			t.Reset(idle - inactive)
			return
		}
		closed.Inc()
		now := time.Now()
		c.SetDeadline(now)
		up.SetDeadline(now)
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// tunnelCopy copies client to upstream for an upgraded connection.
func tunnelCopy(sc *splicerCache, dst, src stream, done chan<- int64) {
	n, _ := spliceCopy(sc, dst, src, nil)
	dst.CloseWrite()
	done <- n
}

// chunkReader validates chunked framing incrementally (RFC 9112 §7.1).
type chunkReader struct {
	st       uint8
	rem      int64
	trailers int
}

const (
	ckSize uint8 = iota
	ckData
	ckDataCRLF
	ckTrailer
	ckDone
)

// step consumes a validated prefix of p and returns its length; 0 with a
// nil error means more input is needed (a line or CRLF is incomplete).
func (k *chunkReader) step(p []byte) (int, error) {
	switch k.st {
	case ckSize, ckTrailer:
		j := -1
		for i, c := range p {
			if c == '\n' {
				j = i
				break
			}
		}
		if j < 0 {
			if len(p) >= maxChunkLine {
				return 0, badRequest("chunk line too long")
			}
			return 0, nil
		}
		if j == 0 || p[j-1] != '\r' {
			return 0, badRequest("bare LF in chunked body")
		}
		line := p[:j-1]
		if k.st == ckSize {
			n, err := chunkSize(line)
			if err != nil {
				return 0, err
			}
			if n == 0 {
				k.st = ckTrailer
			} else {
				k.st, k.rem = ckData, n
			}
			return j + 1, nil
		}
		if len(line) == 0 {
			k.st = ckDone
			return j + 1, nil
		}
		k.trailers++
		if k.trailers > maxTrailers {
			return 0, badRequest("too many trailer fields")
		}
		if err := validFieldLine(line); err != nil {
			return 0, err
		}
		return j + 1, nil
	case ckData:
		n := int64(len(p))
		if n > k.rem {
			n = k.rem
		}
		k.rem -= n
		if k.rem == 0 {
			k.st = ckDataCRLF
		}
		return int(n), nil
	case ckDataCRLF:
		if len(p) < 2 {
			if len(p) == 1 && p[0] != '\r' {
				return 0, badRequest("chunk data not followed by CRLF")
			}
			return 0, nil
		}
		if p[0] != '\r' || p[1] != '\n' {
			return 0, badRequest("chunk data not followed by CRLF")
		}
		k.st = ckSize
		return 2, nil
	}
	return 0, nil
}

// validFieldLine checks one trailer field line (without CRLF).
func validFieldLine(line []byte) error {
	i := 0
	for i < len(line) && tchar[line[i]] {
		i++
	}
	if i == 0 || i >= len(line) || line[i] != ':' {
		return badRequest("invalid trailer field")
	}
	for _, c := range line[i+1:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return badRequest("control character in trailer field")
		}
	}
	return nil
}

// prevalidateChunked runs the chunked validator over bytes already
// received; it reports only definite framing errors.
func prevalidateChunked(p []byte) error {
	var k chunkReader
	for k.st != ckDone {
		if k.st == ckData {
			n := min(int64(len(p)), k.rem)
			k.rem -= n
			p = p[n:]
			if k.rem > 0 {
				return nil
			}
			k.st = ckDataCRLF
			continue
		}
		n, err := k.step(p)
		if err != nil || n == 0 {
			return err
		}
		p = p[n:]
	}
	return nil
}
