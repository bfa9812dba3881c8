package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// relayChunk is how many bytes one splice run moves before the byte
// counters are updated. Bulk transfers show up in Metrics.Bytes every MiB;
// the run itself stays in the kernel (splice(2) through a pipe).
const relayChunk = 1 << 20

// relay moves bytes between client and up in both directions until both
// have ended, counting them in bytesUp (client to upstream) and bytesDown.
//
// Both ends are *net.TCPConn, so on Linux each direction is splice(2)
// through a pipe from sc (spliceCopy): the payload never enters user
// space. When one side ends its stream (EOF), relay half-closes the other
// side with CloseWrite and keeps the opposite direction running, so a
// client can send a request, shut its write side and still read the whole
// response. Any error in one direction (reset, a close by the idle
// watchdog or by the drain deadline) closes both connections, which ends
// the other direction too. relay does not close the
// connections on the normal path; the caller does.
//
// The downstream direction runs in a second goroutine; relay returns when
// both have.
func relay(sc *splicerCache, client, up *net.TCPConn, bytesUp, bytesDown prometheus.Counter) (nUp, nDown int64, err error) {
	var wg sync.WaitGroup
	var errDown error
	wg.Add(1)
	go func() {
		defer wg.Done()
		nDown, errDown = relayDownstream(sc, client, up, bytesDown)
	}()
	nUp, errUp := spliceCopy(sc, up, client, bytesUp)
	if errUp != nil {
		client.Close()
		up.Close()
	} else {
		rawCloseWrite(up) // the upstream sees EOF and may still answer
	}
	wg.Wait()
	if errUp != nil {
		return nUp, nDown, fmt.Errorf("relaying client to upstream: %w", errUp)
	}
	if errDown != nil {
		return nUp, nDown, fmt.Errorf("relaying upstream to client: %w", errDown)
	}
	return nUp, nDown, nil
}

// relayDownstream copies upstream to client: relay's second goroutine,
// named so that it reads well in a stack dump.
func relayDownstream(sc *splicerCache, client, up *net.TCPConn, bytesDown prometheus.Counter) (int64, error) {
	n, err := spliceCopy(sc, client, up, bytesDown)
	if err != nil {
		client.Close()
		up.Close()
		return n, err
	}
	rawCloseWrite(client)
	return n, nil
}

// stream is a connected TCP socket as the HTTP handler and the connection
// set use it: a *net.TCPConn (accepted by an accept loop, or dialled), or a
// client connection the engine hands over (a sockConn, enghttp.go). Paths
// that need a *net.TCPConn (TLS, auto, transparent, PROXY) only ever get
// one: see trackedConn.tcp.
type stream interface {
	net.Conn
	syscall.Conn
	CloseWrite() error
}

// trackedConn is one admitted client connection, registered in a connSet so
// that the drain deadline can close it and, once it relays, so that the idle
// watchdog can check it.
type trackedConn struct {
	c        stream
	tcp      *net.TCPConn // c, unless the engine handed it over (a sockConn, HTTP only)
	ip       netip.Addr   // unmapped client IP, the per-IP limit key
	listener string       // listener name, for logs
	shard    *connShard

	// The fields below are guarded by shard.mu.
	prev, next *trackedConn
	up         *net.TCPConn  // non-nil while relaying
	idle       time.Duration // idle timeout of the relay
	nextCheck  int64         // unix nanoseconds of the next idle check
}

// connSet is the set of open client connections, sharded so that accepts on
// both cores rarely contend. Each shard is an intrusive list: adding and
// removing a connection allocates nothing.
type connSet struct {
	next   atomic.Uint32
	shards [connShards]connShard
}

const connShards = 16

type connShard struct {
	mu    sync.Mutex
	head  *trackedConn // guarded by mu
	count int          // guarded by mu
	_     [40]byte
}

// add registers tc.
func (s *connSet) add(tc *trackedConn) {
	sh := &s.shards[s.next.Add(1)%connShards]
	tc.shard = sh
	sh.mu.Lock()
	tc.next = sh.head
	if sh.head != nil {
		sh.head.prev = tc
	}
	sh.head = tc
	sh.count++
	sh.mu.Unlock()
}

// remove unregisters tc.
func (s *connSet) remove(tc *trackedConn) {
	sh := tc.shard
	sh.mu.Lock()
	if tc.prev != nil {
		tc.prev.next = tc.next
	} else {
		sh.head = tc.next
	}
	if tc.next != nil {
		tc.next.prev = tc.prev
	}
	tc.prev, tc.next, tc.up = nil, nil, nil
	sh.count--
	sh.mu.Unlock()
}

// startRelay marks tc as relaying to up with the given idle timeout, so the
// watchdog starts checking it.
func (s *connSet) startRelay(tc *trackedConn, up *net.TCPConn, idle time.Duration) {
	sh := tc.shard
	sh.mu.Lock()
	tc.up, tc.idle = up, idle
	tc.nextCheck = time.Now().Add(idle).UnixNano()
	sh.mu.Unlock()
}

// len reports the number of open connections.
func (s *connSet) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.count
		sh.mu.Unlock()
	}
	return n
}

// closeAll closes every open client connection and every upstream
// connection being relayed to: the drain deadline.
func (s *connSet) closeAll() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for tc := sh.head; tc != nil; tc = tc.next {
			tc.c.Close()
			if tc.up != nil {
				tc.up.Close()
			}
			n++
		}
		sh.mu.Unlock()
	}
	return n
}

// idleCheck is a relay due for an idle check, copied out of the set so that
// the getsockopt calls run without holding a shard lock.
type idleCheck struct {
	tc       *trackedConn
	c, up    *net.TCPConn
	idle     time.Duration
	listener string
}

// due appends the relays whose next idle check is at or before now.
func (s *connSet) due(now int64, dst []idleCheck) []idleCheck {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for tc := sh.head; tc != nil; tc = tc.next {
			if tc.up != nil && tc.nextCheck <= now {
				dst = append(dst, idleCheck{tc: tc, c: tc.tcp, up: tc.up, idle: tc.idle, listener: tc.listener})
			}
		}
		sh.mu.Unlock()
	}
	return dst
}

// reschedule sets the next idle check of tc; a no-op once tc stopped
// relaying.
func (s *connSet) reschedule(tc *trackedConn, at int64) {
	sh := tc.shard
	sh.mu.Lock()
	if tc.up != nil {
		tc.nextCheck = at
	}
	sh.mu.Unlock()
}

// checkIdle checks the due relays: a relay whose two sockets have both been
// inactive for its idle timeout is closed; the others are rescheduled for
// the earliest moment they could become idle. It returns the number of
// relays closed. onClose, if not nil, is called with the listener name of
// each relay closed.
//
// Activity comes from the kernel (TCP_INFO), not from the relay loop: the
// relay splices without per-read deadlines or timestamps, so the kernel's
// "milliseconds since data was last received" on each socket is the
// activity clock. A relay moving data is checked about once per idle
// period, one getsockopt per socket, whatever its traffic.
func (s *connSet) checkIdle(now time.Time, due []idleCheck, onClose func(listener string)) int {
	closed := 0
	for _, d := range due {
		ic, err := tcpInactive(d.c)
		if err != nil {
			continue // closed meanwhile
		}
		iu, err := tcpInactive(d.up)
		if err != nil {
			continue
		}
		inactive := min(ic, iu)
		if inactive >= d.idle {
			d.c.Close()
			d.up.Close()
			closed++
			if onClose != nil {
				onClose(d.listener)
			}
			continue
		}
		s.reschedule(d.tc, now.Add(d.idle-inactive).UnixNano())
	}
	return closed
}
