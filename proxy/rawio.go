package proxy

import (
	"syscall"
	"time"
)

// rawIO reads and writes one socket of package net for the HTTP
// handler's small messages. On Linux it does so with RawSyscall
// (rawio_linux.go): like net.Conn's Read and Write (the runtime poller
// waits, deadlines and a Close from another goroutine work the same) but
// without entering the scheduler's system-call state for each call (see
// the top of splice_linux.go). An httpConn keeps one per socket, with its
// callbacks, so a call allocates nothing. Elsewhere it is the socket's own
// Read and Write (rawio_other.go).
type rawIO struct {
	c     stream
	rc    syscall.RawConn
	b     []byte
	n     int
	errno syscall.Errno

	// lead is written at the start of the next Read, inside its wait
	// (leadFn): a request whose answer that Read waits for.
	lead  []byte
	leadN int

	readFn, writeFn, peekFn, leadFn func(uintptr) bool // Linux's (bind)

	// rdl and wdl are the read and write deadlines last set through
	// setDeadline, as offsets from monoBase; 0 when not known (none set
	// through it since bind, or forgotten).
	rdl, wdl int64
}

// Which deadlines setDeadline sets.
const (
	dlRead = 1 << iota
	dlWrite
	dlBoth = dlRead | dlWrite
)

// lazySlack is the most by which a deadline set through rawIO.setDeadline
// may differ from the one asked for (nginx leaves its timers alone within
// 300 ms the same way: NGX_TIMER_LAZY_DELAY).
const lazySlack = 250 * time.Millisecond

// monoBase is the origin of the monotonic offsets rawIO keeps.
var monoBase = time.Now()

// setDeadline sets the read, write or both deadlines (which) of the
// socket to now+d, as net.Conn's SetDeadline does, except one already
// within d/8, and never more than lazySlack, of it. Each request of a
// keep-alive connection moves its deadlines on by a few milliseconds;
// setting them costs three clock reads and a timer update under the
// runtime's lock every time, which this keeps out of the request path at
// the price of a timeout that may fire that little early or late.
// Whoever sets a deadline of the socket some other way calls forget.
func (r *rawIO) setDeadline(which int, now time.Time, d time.Duration) {
	t := now.Add(d)
	off := int64(t.Sub(monoBase))
	slack := int64(min(d/8, lazySlack))
	if which&dlRead != 0 && r.rdl != 0 && abs64(off-r.rdl) < slack {
		which &^= dlRead
	}
	if which&dlWrite != 0 && r.wdl != 0 && abs64(off-r.wdl) < slack {
		which &^= dlWrite
	}
	switch which {
	case dlRead:
		if r.c.SetReadDeadline(t) == nil {
			r.rdl = off
		}
	case dlWrite:
		if r.c.SetWriteDeadline(t) == nil {
			r.wdl = off
		}
	case dlBoth:
		if r.c.SetDeadline(t) == nil {
			r.rdl, r.wdl = off, off
		}
	}
}

// forget drops what setDeadline knows of the socket's deadlines: the next
// call sets them.
func (r *rawIO) forget() { r.rdl, r.wdl = 0, 0 }

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// sendThenRead makes the next Read write b first: inside the same poller
// wait, so that Read does not begin with a read that finds nothing (the
// readiness the wait needs is armed before the write, and an answer that
// comes after it is reported). b must stay unchanged until it is sent:
// by that Read, by the next Write (which sends it first) or by
// flushLead. A Read that fails before it could write (its deadline had
// passed, the socket was closed) keeps b pending.
func (r *rawIO) sendThenRead(b []byte) {
	r.lead, r.leadN = b, 0
}

// flushLead writes what sendThenRead left pending, waiting for room.
func (r *rawIO) flushLead() error {
	if r.lead == nil {
		return nil
	}
	rest := r.lead[r.leadN:]
	r.lead = nil
	_, err := r.Write(rest)
	return err
}
