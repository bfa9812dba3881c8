package proxy

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parkSweep is how often the parker looks for expired idle timeouts: the
// timeout of a parked connection is kept to within this much.
const parkSweep = 250 * time.Millisecond

// parker is the Server's set of parked connections; it starts with the
// first connection parked.
type parker struct {
	s      *Server
	once   sync.Once
	err    error // from starting
	epfd   int
	ep     *os.File
	rc     syscall.RawConn
	evs    []unix.EpollEvent
	ready  []*parkedConn // a turn's resumed connections, reused
	turnFn func(uintptr) bool

	mu       sync.Mutex
	conns    map[uint64]*parkedConn // guarded by mu
	next     uint64                 // guarded by mu: the next token
	draining bool                   // guarded by mu: park no more
	done     chan struct{}
}

// enabled reports whether p parks connections: a nil parker does not.
func (p *parker) enabled() bool { return p != nil }

// start creates the epoll set and the parker's goroutine. Called with mu
// held.
func (p *parker) start() error {
	p.once.Do(func() {
		var err error
		p.epfd, p.ep, p.rc, err = newPolledEpoll("parker")
		if err != nil {
			p.err = fmt.Errorf("parker: %w", err)
			return
		}
		p.evs = make([]unix.EpollEvent, 64)
		p.turnFn = func(uintptr) bool { return p.turn() }
		p.conns = make(map[uint64]*parkedConn)
		p.done = make(chan struct{})
		go p.run()
	})
	return p.err
}

// park parks pc, whose socket is fd. It reports false, leaving pc to its
// caller, when the parker cannot take it: the Server is draining, or the
// epoll set refused the socket. From a true return on, pc belongs to the
// parker and another goroutine may be serving its connection.
func (p *parker) park(pc *parkedConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.draining || p.start() != nil {
		return false
	}
	p.next++
	pc.token = p.next
	// The token fills the event's 64 bits of user data (Fd and Pad).
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(pc.token)), Pad: int32(uint32(pc.token >> 32))}
	if rawEpollCtl(p.epfd, unix.EPOLL_CTL_ADD, pc.fd, &ev) != 0 {
		return false
	}
	p.conns[pc.token] = pc
	if len(p.conns) == 1 {
		p.ep.SetReadDeadline(time.Now().Add(parkSweep)) // sweep while any is parked
	}
	return true
}

// eventToken is the token park put in ev.
func eventToken(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// parked reports how many connections are parked.
func (p *parker) parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// take removes the connection of token from the set, nil if it is gone.
// Called with mu held.
func (p *parker) take(token uint64) *parkedConn {
	pc := p.conns[token]
	if pc != nil {
		delete(p.conns, token)
		rawEpollCtl(p.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
	}
	return pc
}

// resume hands pc to a handler goroutine.
func (p *parker) resume(pc *parkedConn) {
	j := pc.job
	j.resume = pc
	p.s.startHandler(j)
}

// run is the parker's goroutine: it waits in the runtime poller on the
// epoll descriptor, with a deadline for the sweep, until drain.
func (p *parker) run() {
	defer close(p.done)
	for {
		err := p.rc.Read(p.turnFn)
		p.mu.Lock()
		draining, n := p.draining, len(p.conns)
		p.mu.Unlock()
		if draining {
			return
		}
		if err != nil {
			p.sweep()
			// The next sweep, or none until a connection is parked.
			p.mu.Lock()
			var t time.Time
			if n > 0 || len(p.conns) > 0 {
				t = time.Now().Add(parkSweep)
			}
			p.ep.SetReadDeadline(t)
			p.mu.Unlock()
		}
	}
}

// turn resumes the connections whose sockets became readable. It reports
// whether run must leave the poller: the parker is draining.
func (p *parker) turn() bool {
	for {
		n, errno := rawEpollPoll(p.epfd, p.evs)
		if errno != 0 {
			n = 0
		}
		ready := p.ready[:0]
		p.mu.Lock()
		if p.draining {
			p.mu.Unlock()
			return true
		}
		for i := 0; i < n; i++ {
			if pc := p.take(eventToken(&p.evs[i])); pc != nil {
				ready = append(ready, pc)
			}
		}
		p.mu.Unlock()
		for _, pc := range ready {
			p.resume(pc)
		}
		clear(ready)
		p.ready = ready
		if n < len(p.evs) {
			return false
		}
	}
}

// sweep resumes the connections whose idle timeout has passed; their
// handlers close them.
func (p *parker) sweep() {
	now := time.Now().UnixNano()
	var due []*parkedConn
	p.mu.Lock()
	for token, pc := range p.conns {
		if now >= pc.expires {
			p.take(token)
			pc.expired = true
			due = append(due, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range due {
		p.resume(pc)
	}
}

// drain parks no more connections and resumes the parked ones: draining,
// their handlers close them. Run when the Server starts draining.
func (p *parker) drain() {
	p.mu.Lock()
	p.draining = true
	var all []*parkedConn
	for token := range p.conns {
		all = append(all, p.take(token))
	}
	p.mu.Unlock()
	for _, pc := range all {
		p.resume(pc)
	}
}

// close ends the parker's goroutine and closes its epoll set, after drain.
func (p *parker) close() {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return // never started
	}
	p.ep.SetReadDeadline(time.Now()) // wake the goroutine: it sees draining
	<-done
	p.ep.Close()
}

// newPolledEpoll creates an epoll set that waits in the runtime's poller:
// the epoll descriptor itself is readable while events are ready, so,
// non-blocking, it can be read-waited (with deadlines) like a socket
// through rc. Closing f closes epfd.
func newPolledEpoll(name string) (epfd int, f *os.File, rc syscall.RawConn, err error) {
	epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, nil, nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err = unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return -1, nil, nil, err
	}
	f = os.NewFile(uintptr(epfd), name)
	rc, err = f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails unless the runtime poller took it
	}
	if err != nil {
		f.Close()
		return -1, nil, nil, err
	}
	return epfd, f, rc, nil
}
