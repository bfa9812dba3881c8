package proxy

import (
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Why the relay does its own splice(2) instead of TCPConn.ReadFrom.
//
// The runtime's network I/O enters each system call through
// syscall.Syscall, which marks the goroutine's P as in a system call and,
// when the scheduler's monitor thread (sysmon) is in its deep sleep because
// every P was idle, wakes it. sysmon then polls every 20 µs until it sees
// every P idle again. A passthrough gateway pinned to one core is exactly
// that case: its P goes idle between the few messages of every connection
// (ClientHello, server flight, client Finished, request, response, FIN), so
// each message woke sysmon, a futex wake and then context switches on the
// same core: a large share of such a gateway's CPU went to runtime.sysmon.
//
// splice with SPLICE_F_NONBLOCK on non-blocking sockets and a non-blocking
// pipe never blocks, so it is issued with RawSyscall, which does not enter
// the scheduler's system-call state; waiting for readiness still goes
// through the runtime poller (syscall.RawConn Read/Write), so deadlines,
// Close from another goroutine and the drain work as with net.Conn. The
// pipe and the callbacks are cached with their splicer, so a relay
// allocates nothing per chunk (Go's own splice path takes a pipe from a
// sync.Pool with a finalizer, and its pipes are closed when the GC drops
// them).

// Limits of the splicer cache: idle pipes kept for the next relays. Each
// is two descriptors; 256 covers 128 busy relays' worth of churn.
const maxIdleSplicers = 256

// maxSpliceRun is the most bytes one splice(2) call is asked to move: a
// pipe's capacity after growPipe.
const maxSpliceRun = 1 << 20

// growPipe asks for a 1 MiB pipe (the default is 64 KiB), as Go's own
// splice does: bulk transfers then move in runs of up to 1 MiB, which
// halves the system calls per byte and lets the receiver read in large
// bursts. Pages are only allocated as data fills the pipe. When the
// kernel refuses (an unprivileged user over pipe-user-pages-soft) the
// pipe keeps its default size.
func growPipe(fd int) {
	unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, maxSpliceRun)
}

// newPipe makes a non-blocking splice pipe (read end, write end), grown.
func newPipe() ([2]int, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return p, fmt.Errorf("creating splice pipe: %w", err)
	}
	growPipe(p[1])
	return p, nil
}

// splicer moves bytes from one socket to another through its pipe.
type splicer struct {
	r, w   int // pipe ends
	inPipe int // bytes in the pipe, not yet written to dst
	want   int // most bytes the next fill takes from src

	n     int           // result of the last splice call
	errno syscall.Errno // its error

	fill  func(fd uintptr) bool // src -> pipe, for RawConn.Read
	drain func(fd uintptr) bool // pipe -> dst, for RawConn.Write
}

// splicerCache keeps a Server's idle splicers for its next relays: a
// relay takes one (get) and gives it back (put) when it ends. The zero
// value is an empty cache.
type splicerCache struct {
	mu     sync.Mutex
	idle   []*splicer // guarded by mu
	closed bool       // guarded by mu: close ran, put keeps nothing
}

// get returns an idle splicer or a new one with a new pipe.
func (c *splicerCache) get() (*splicer, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		s := c.idle[n-1]
		c.idle[n-1] = nil
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()
	p, err := newPipe()
	if err != nil {
		return nil, err
	}
	s := &splicer{r: p[0], w: p[1]}
	s.fill = func(fd uintptr) bool {
		s.n, s.errno = rawSplice(int(fd), s.w, s.want)
		return s.errno != unix.EAGAIN
	}
	s.drain = func(fd uintptr) bool {
		s.n, s.errno = rawSplice(s.r, int(fd), s.inPipe)
		return s.errno != unix.EAGAIN
	}
	return s, nil
}

// put caches s for another relay, or closes its pipe when the cache is
// full or closed, or bytes are stranded in it (an error in mid-run): those
// must never reach another connection.
func (c *splicerCache) put(s *splicer) {
	if s.inPipe == 0 {
		c.mu.Lock()
		if !c.closed && len(c.idle) < maxIdleSplicers {
			c.idle = append(c.idle, s)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	s.close()
}

// close closes the idle pipes and keeps none from now on: the Server has
// drained.
func (c *splicerCache) close() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, s := range idle {
		s.close()
	}
}

func (s *splicer) close() {
	unix.Close(s.r)
	unix.Close(s.w)
}

// rawSplice is one non-blocking splice(2), retried on EINTR.
func rawSplice(in, out, n int) (int, syscall.Errno) {
	r, e := rawCall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	return int(r), e
}

// copyRun moves bytes from src to dst until EOF on src (done true), an
// error, or at least limit bytes moved; with exact, never more than limit
// (a framed body: what follows it is not this relay's). It returns the
// bytes moved.
func (s *splicer) copyRun(dst, src syscall.RawConn, limit int64, exact bool) (moved int64, done bool, err error) {
	for moved < limit {
		s.want = maxSpliceRun
		if exact && limit-moved < maxSpliceRun {
			s.want = int(limit - moved)
		}
		if err := src.Read(s.fill); err != nil {
			return moved, false, err // closed or past a deadline
		}
		if s.errno != 0 {
			return moved, false, &net.OpError{Op: "splice", Net: "tcp", Err: s.errno}
		}
		if s.n == 0 {
			return moved, true, nil // EOF: the pipe was empty, so only EOF reads nothing
		}
		s.inPipe = s.n
		for s.inPipe > 0 {
			if err := dst.Write(s.drain); err != nil {
				return moved, false, err
			}
			if s.errno != 0 {
				return moved, false, &net.OpError{Op: "splice", Net: "tcp", Err: s.errno}
			}
			if s.n == 0 {
				return moved, false, io.ErrShortWrite // never seen: the pipe has data
			}
			s.inPipe -= s.n
			moved += int64(s.n)
		}
	}
	return moved, false, nil
}

// rawCloseWrite is c.CloseWrite with RawSyscall: shutdown(2) never blocks.
func rawCloseWrite(c syscall.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) { errno = rawShutdownWrite(int(fd)) }); err != nil {
		return err
	}
	if errno != 0 {
		return &net.OpError{Op: "shutdown", Net: "tcp", Err: errno}
	}
	return nil
}

// spliceCopy copies src to dst until EOF on src (nil error) or an error,
// with splice(2) through a cached pipe (below), adding the bytes moved
// to count (if any) every relayChunk bytes and at the end.
func spliceCopy(sc *splicerCache, dst, src stream, count prometheus.Counter) (int64, error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	s, err := sc.get()
	if err != nil {
		return 0, err
	}
	defer sc.put(s)
	var total int64
	for {
		n, done, err := s.copyRun(dstRC, srcRC, relayChunk, false)
		if n > 0 {
			total += n
			if count != nil {
				count.Add(float64(n))
			}
		}
		if err != nil || done {
			return total, err
		}
	}
}

// spliceRun moves up to n bytes from src to dst with splice(2) through a
// cached pipe, never more; eof reports that src ended first.
func spliceRun(sc *splicerCache, dst, src stream, n int64) (moved int64, eof bool, err error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	s, err := sc.get()
	if err != nil {
		return 0, false, err
	}
	defer sc.put(s)
	return s.copyRun(dstRC, srcRC, n, true)
}
