package proxy

import (
	"net"
	"sync"
	"time"
)

// Limits of the shared upstream pool. nginx's "keepalive 256" per upstream
// block is the model: enough idle connections per upstream to carry the
// concurrency of new client connections without a dial each, and a total
// cap so that many upstreams cannot pin many sockets.
const (
	poolMaxIdlePerUpstream = 256
	poolMaxIdleTotal       = 4096
	// poolIdleTimeout is how long an idle upstream connection is kept. It
	// is below the keep-alive timeouts of common servers (nginx 60-75 s)
	// so that the gateway, not the upstream, usually closes idle ones; a
	// connection the upstream closed first is caught by the liveness peek
	// in get (or, for a retryable request, by the retry on a new one).
	poolIdleTimeout = 30 * time.Second
)

// upstreamPool is the HTTP listeners' shared pool of idle upstream
// connections, one LIFO stack per upstream address, so that a new client
// connection reuses a warm upstream connection instead of dialling (socket,
// connect, seven more syscalls and a TCP handshake, then a FIN exchange at
// close): what nginx's upstream keepalive does.
//
// Safety. A connection is put back only by httpConn.releaseUpstream, after
// a complete response whose framing (Content-Length, chunked, no body)
// was validated and relayed, when the response allowed keep-alive and no
// byte from the upstream is buffered; get peeks (non-blocking MSG_PEEK)
// that nothing arrived since, no EOF or reset either. So a response is
// always relayed to the client whose request it answers: stray bytes from
// an upstream never become the start of another client's response.
// Connections that carry client-specific state are never pooled: the
// listener's dialer must neither spoof the client's source address nor send
// a PROXY header (see Server.newRuntime).
type upstreamPool struct {
	mu     sync.Mutex
	idle   map[string][]pooledConn // guarded by mu; newest last
	total  int                     // guarded by mu
	closed bool                    // guarded by mu

	maxPer, maxTotal int
	timeout          time.Duration
	now              func() time.Time // time.Now; tests move it
}

// pooledConn is one idle connection and when it was put back.
type pooledConn struct {
	c     *net.TCPConn
	since time.Time
}

// newUpstreamPool returns an empty pool with the default limits.
func newUpstreamPool() *upstreamPool {
	return &upstreamPool{
		idle:     make(map[string][]pooledConn),
		maxPer:   poolMaxIdlePerUpstream,
		maxTotal: poolMaxIdleTotal,
		timeout:  poolIdleTimeout,
		now:      time.Now,
	}
}

// get returns an idle connection to addr that is still open and has
// nothing pending, or nil. The newest is tried first (LIFO: the warmest,
// and the least likely to have been closed by the upstream); expired or
// dead ones met on the way are closed.
func (p *upstreamPool) get(addr string) *net.TCPConn {
	for {
		p.mu.Lock()
		s := p.idle[addr]
		if len(s) == 0 {
			p.mu.Unlock()
			return nil
		}
		pc := s[len(s)-1]
		s[len(s)-1] = pooledConn{}
		p.idle[addr] = s[:len(s)-1]
		p.total--
		expired := p.now().Sub(pc.since) >= p.timeout
		var stale []pooledConn
		if expired {
			// Everything below is older still.
			stale = append(stale, s[:len(s)-1]...)
			clear(s[:len(s)-1])
			p.total -= len(s) - 1
			delete(p.idle, addr)
		}
		p.mu.Unlock()
		if expired {
			pc.c.Close()
			for _, o := range stale {
				o.c.Close()
			}
			return nil
		}
		if upstreamAlive(pc.c) {
			return pc.c
		}
		pc.c.Close() // closed by the upstream, or stray bytes: never reused
	}
}

// put offers a clean idle connection to addr to the pool. When addr's
// stack is full its oldest connection is closed to make room; when the
// pool is full or closed, c itself is closed.
func (p *upstreamPool) put(addr string, c *net.TCPConn) {
	p.mu.Lock()
	if p.closed || (p.total >= p.maxTotal && len(p.idle[addr]) == 0) {
		p.mu.Unlock()
		c.Close()
		return
	}
	s := p.idle[addr]
	var evict *net.TCPConn
	if len(s) >= p.maxPer || p.total >= p.maxTotal {
		evict = s[0].c
		copy(s, s[1:])
		s = s[:len(s)-1]
		p.total--
	}
	p.idle[addr] = append(s, pooledConn{c: c, since: p.now()})
	p.total++
	p.mu.Unlock()
	if evict != nil {
		evict.Close()
	}
}

// evictExpired closes the connections idle for longer than the pool's
// timeout and returns how many; the Server's watchdog calls it every tick,
// so idle sockets do not outlive the timeout when traffic stops.
func (p *upstreamPool) evictExpired() int {
	now := p.now()
	var stale []*net.TCPConn
	p.mu.Lock()
	for addr, s := range p.idle {
		n := 0
		for n < len(s) && now.Sub(s[n].since) >= p.timeout {
			stale = append(stale, s[n].c)
			n++
		}
		if n == 0 {
			continue
		}
		rest := copy(s, s[n:])
		clear(s[rest:])
		p.total -= n
		if rest == 0 {
			delete(p.idle, addr)
		} else {
			p.idle[addr] = s[:rest]
		}
	}
	p.mu.Unlock()
	for _, c := range stale {
		c.Close()
	}
	return len(stale)
}

// close closes every idle connection; later puts close theirs. Called once
// the Server has drained.
func (p *upstreamPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = make(map[string][]pooledConn)
	p.total = 0
	p.mu.Unlock()
	for _, s := range idle {
		for _, pc := range s {
			pc.c.Close()
		}
	}
}

// len reports the number of idle connections.
func (p *upstreamPool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}
