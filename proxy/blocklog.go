package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Block log defaults: at most blockLogRate lines a second on average, in
// bursts of up to blockLogBurst, per Server.
const (
	blockLogRate  = 10
	blockLogBurst = 20
	// blockLogSummaryDelay is how long after the first left-out line a
	// summary of the left-out count is written, if no block line has
	// carried it by then.
	blockLogSummaryDelay = time.Second
	// blockLogMaxHost caps the host written per line: a name is at most
	// 253 bytes, and an invalid one may be as long as a request head.
	blockLogMaxHost = 253
)

// blockLog writes one Info line per blocked connection or request (host,
// reason, client address, listener) for as long as a token bucket allows,
// and counts the lines it leaves out. The count rides on the next line
// written ("suppressed") or, when blocks stop, on a summary line written
// blockLogSummaryDelay after the first left-out line. Metrics count every
// block; the log is a sample to find examples in, and a flood of blocked
// names (a scan, an attack) cannot turn into a flood of log lines.
//
// The bucket is a GCRA (generic cell rate algorithm) on one atomic: a
// left-out line costs a clock read and a few atomic operations, with no
// lock and no allocation.
type blockLog struct {
	log      *slog.Logger
	interval int64                       // nanoseconds per token
	tau      int64                       // burst tolerance: (burst-1) * interval
	start    time.Time                   // monotonic base of the clock
	now      func() int64                // nanoseconds since start; replaced in tests
	after    func(time.Duration, func()) // time.AfterFunc; replaced in tests

	tat        atomic.Int64 // theoretical arrival time of the next line
	suppressed atomic.Int64 // lines left out since the last one written
	lastLine   atomic.Int64 // when the last line (or summary) was written
	armed      atomic.Bool  // a summary is scheduled
}

// newBlockLog returns a block log writing to log at most rate lines a
// second with bursts of burst. A nil log or a rate <= 0 disables it.
func newBlockLog(log *slog.Logger, rate float64, burst int) *blockLog {
	if log == nil || rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	b := &blockLog{
		log:      log,
		interval: int64(float64(time.Second) / rate),
		start:    time.Now(),
		after:    func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
	b.tau = int64(burst-1) * b.interval
	b.now = func() int64 { return int64(time.Since(b.start)) }
	return b
}

// allow takes a token if one is available.
func (b *blockLog) allow(now int64) bool {
	for {
		tat := b.tat.Load()
		t := max(tat, now)
		if t-now > b.tau {
			return false
		}
		if b.tat.CompareAndSwap(tat, t+b.interval) {
			return true
		}
	}
}

// Log records one blocked connection (protocol tls) or request (http) on
// listener from client (an IPv4-mapped address is written as IPv4). host
// is the name the client asked for, as sent; it is written
// before Log returns and not retained, so it may alias a pooled buffer. A
// nil blockLog does nothing.
func (b *blockLog) Log(listener, protocol, host, reason string, client netip.AddrPort) {
	b.LogID(listener, protocol, host, reason, nil, client)
}

// LogID is Log with the block's request ID (request_id), when it has one
// the visitor sees (HTTP block pages); id, like host, is not retained.
func (b *blockLog) LogID(listener, protocol, host, reason string, id []byte, client netip.AddrPort) {
	if b == nil || !b.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	now := b.now()
	if !b.allow(now) {
		b.suppressed.Add(1)
		if b.armed.CompareAndSwap(false, true) {
			b.after(blockLogSummaryDelay, b.summary)
		}
		return
	}
	n := b.suppressed.Swap(0)
	b.lastLine.Store(now)
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	attrs := [8]slog.Attr{
		slog.String("listener", listener),
		slog.String("protocol", protocol),
		// A copy: host may alias a pooled buffer, and a handler may keep
		// the record (an async one would then see the buffer reused).
		slog.String("host", strings.Clone(clipHost(host))),
		slog.String("reason", reason),
		slog.String("client", client.String()),
	}
	k := 5
	if len(id) > 0 {
		attrs[k] = slog.String("request_id", string(id))
		k++
	}
	if n > 0 {
		attrs[k] = slog.Int64("suppressed", n)
		k++
	}
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "blocked", attrs[:k]...)
}

// summary writes the count of lines left out since the last line, if a
// block line has not carried it already.
func (b *blockLog) summary() {
	b.armed.Store(false)
	n := b.suppressed.Swap(0)
	if n == 0 {
		return
	}
	now := b.now()
	since := now - b.lastLine.Swap(now)
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "block log lines suppressed",
		slog.Int64("suppressed", n),
		slog.Float64("interval_seconds", time.Duration(since).Seconds()))
}

// clipHost cuts host to blockLogMaxHost bytes (on a UTF-8 boundary when it
// is UTF-8) and marks the cut with "…".
func clipHost(host string) string {
	if len(host) <= blockLogMaxHost {
		return host
	}
	cut := blockLogMaxHost
	for cut > blockLogMaxHost-utf8.UTFMax && !utf8.RuneStart(host[cut]) {
		cut--
	}
	return host[:cut] + "…"
}

// addrPort returns a TCP or UDP address as a netip.AddrPort (zero for
// other kinds), without allocating.
func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
