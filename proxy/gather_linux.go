package proxy

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Gather naps: letting a busy gateway's events gather before it waits.
//
// A thread that sleeps in epoll_wait is woken by whoever makes one of its
// sockets ready, and the waker pays for it: on a loaded gateway that is
// the client or the backend, in the middle of sending, and in this VM a
// wake-up of a thread on another core is an inter-processor interrupt
// through the hypervisor. Under load the gateway's waits are short (tens
// of µs), so it sleeps and is woken about once per request: perf on
// bench/run's keep-alive workload counted 1.0 sleeps of the gateway's core
// per request against nginx's 0.66, and the load generator's and the
// origin's core, the saturated one, spent about 3 µs a request more
// behind the gateway than behind nginx (the origin 35 µs against 32.5),
// with the same system calls and segments: the difference was wake-ups.
//
// So while it pays, a thread that has run out of work first naps
// gatherNap (nanosleep: nobody has to wake it) and then collects what
// arrived meanwhile without blocking. Events that come during the nap
// cost their senders only the queueing, and the next turn handles them
// together. Whether it pays is measured (napTrial): a nap adds up to
// gatherNap to the round trip of what arrives during it, which costs a
// client with few requests in flight more than the saved wake-ups give.
//
//   - An engine (engine.run) naps after a turn that handled events and
//     began less than gatherDense after the one before, when its trial
//     says so, judging by the bytes it reads.
//   - The handler goroutines share the runtime's poller, which has no
//     such hook, so a goroutine of its own, the idle napper, naps for
//     them: it gets the P only when the scheduler has run every ready
//     goroutine and polled (it waits for a socket it readied itself), so
//     its naps fall where the thread would otherwise sleep in the poller.
//     Its trial judges by the handlers' reads (handlerWork). It naps only
//     while the handlers run on one P (a one-core unit, a container
//     limited to one CPU, bench/run's proxy): with more, a nap would hold
//     one P while the other threads sleep in the poller as before.
//
// Measured on the bench's keep-alive workload (wrk, 50 clients, the
// gateway on one core, interleaved 2 s runs): 23.5–23.7k requests/s
// against 19.6k without naps and nginx's 21.8–22.4k, at 36 µs of CPU a
// request against 40; with 1, 4 and 8 clients the rate is what it was
// without naps (the trials keep them off).

const (
	// gatherNap is one nap: long enough for a few events to arrive on a
	// loaded gateway, short against a request's round trip.
	gatherNap = 20 * time.Microsecond
	// gatherDense: an engine turn that began within this of the last one
	// means events arrive densely enough to be worth gathering.
	gatherDense = 200 * time.Microsecond
	// A napTrial: trialWindows windows of trialLen, with and without
	// naps in turn, then holdLen in the mode that moved more work. Naps
	// must move trialMargin more to be kept: they add to the round trip
	// of what arrives during them.
	trialLen     = 50 * time.Millisecond
	trialWindows = 6
	holdLen      = 3 * time.Second
	trialMargin  = 0.02
	// The idle napper checks handlerWork this often while the gateway is
	// idle, backing off from napperIdleMin to napperIdleMax.
	napperIdleMin = time.Millisecond
	napperIdleMax = 100 * time.Millisecond
	// A block of napperBlock naps of which napperEmpty gathered nothing
	// ends the napper's busy spell: the work is too sparse for naps to
	// gather any.
	napperBlock = 64
	napperEmpty = 48
	// napperDrain: the napper's socket is read empty every this many
	// turns (each turn writes a byte to it).
	napperDrain = 64
)

// napTrial decides by trial whether naps pay where they are taken:
// trialWindows windows of trialLen, with and without naps in turn, then
// holdLen with naps only if the windows with them moved more work per
// second, by trialMargin, than those without; and again. Work is
// whatever the caller counts (the handlers' reads, an engine's bytes);
// time is engineNow's. Alternating short windows keeps the comparison
// fair while the load or the machine drifts, and trials follow the
// load's changes within holdLen. The judge is throughput itself: how
// much a nap gathers says little, since naps pay when the peers' core is
// the busy one even if each gathers a few events, and cost with a
// handful of clients even if each gathers all of them.
type napTrial struct {
	win   int    // the trial's window, 0 to trialWindows-1; trialWindows: holding
	nap   bool   // the hold's mode
	since int64  // when the window (or hold) began
	from  uint64 // work when it began
	// work and time of the trial's windows with naps and without
	napWork, plainWork uint64
	napTime, plainTime int64
}

// start begins a trial at now, with work done so far.
func (t *napTrial) start(now int64, work uint64) {
	*t = napTrial{since: now, from: work}
}

// naps reports whether to nap at now, with work done so far, moving to
// the next window when the current one is over.
func (t *napTrial) naps(now int64, work uint64) bool {
	el := now - t.since
	if t.win == trialWindows {
		if el < int64(holdLen) {
			return t.nap
		}
		t.start(now, work)
		return true
	}
	if el < int64(trialLen) {
		return t.win%2 == 0
	}
	if t.win%2 == 0 {
		t.napWork += work - t.from
		t.napTime += el
	} else {
		t.plainWork += work - t.from
		t.plainTime += el
	}
	t.win++
	t.since, t.from = now, work
	if t.win < trialWindows {
		return t.win%2 == 0
	}
	t.nap = float64(t.napWork)*float64(t.plainTime) > float64(t.plainWork)*float64(t.napTime)*(1+trialMargin)
	return t.nap
}

// left is how long the current window (or hold) still lasts at now.
func (t *napTrial) left(now int64) time.Duration {
	d := trialLen
	if t.win == trialWindows {
		d = holdLen
	}
	return max(time.Duration(t.since+int64(d)-now), 0)
}

// handlerWork counts the handler goroutines' socket reads (rawIO.Read)
// while napperCounts is set: the idle napper's measure of their work.
// The napper sets napperCounts only while it may nap, so that with more
// than one P the handlers on every core do not share a counter for
// nothing.
var (
	handlerWork  atomic.Uint64
	napperCounts atomic.Bool
)

// napperBusy is set while the napper's busy spell runs. An idle P steals
// runnable goroutines from the other Ps only when the poller has nothing
// for it, and while the napper naps the poller always has its socket: so
// goroutines queued on the P an engine holds in its raw epoll_wait
// (engine.run) would wait for the end of that wait, up to engineWaitMax,
// and longer when the wait ends for nothing (it yields its P only after
// handing out connections or on a signal). Measured: a keep-alive
// request's worst latency went from 9–15 ms to 22–26 ms. So while this
// is set an engine yields its P after every turn and waits at most 1 ms.
var napperBusy atomic.Bool

// idleNapper is the handler goroutines' gather nap (see above). It runs
// while a Server serves, and naps only while the process runs its handler
// goroutines on one P: with more, a nap would hold one P while the others
// sleep in the poller as before.
type idleNapper struct {
	mu    sync.Mutex
	users int           // serving Servers
	stop  chan struct{} // closed to stop the running napper
	done  chan struct{} // closed when it has stopped

	naps atomic.Uint64 // naps taken
}

var napper idleNapper

// startNapper counts s as serving, so the napper runs, until the returned
// stop is called.
func (s *Server) startNapper() (stop func()) {
	napper.add(1)
	return func() { napper.add(-1) }
}

// add counts delta Servers starting (or, negative, stopping) to serve: the
// napper runs while one does.
func (z *idleNapper) add(delta int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.users += delta
	switch {
	case z.users > 0 && z.stop == nil:
		z.stop, z.done = make(chan struct{}), make(chan struct{})
		go z.run(z.stop, z.done)
	case z.users == 0 && z.stop != nil:
		close(z.stop)
		<-z.done
		z.stop, z.done = nil, nil
	}
}

// run is the napper's goroutine: idle, it looks at handlerWork with a
// backing-off timer; once reads come, it runs napTrials, napping at every
// point where the scheduler has run out of goroutines whenever the trial
// says to, until most naps gather nothing (napperEmpty) or a window
// without naps sees no read.
func (z *idleNapper) run(stop, done chan struct{}) {
	defer close(done)
	defer napperCounts.Store(false)
	defer napperBusy.Store(false)
	w, err := newNapperWait()
	if err != nil {
		return // no naps: the process works as it would without them
	}
	defer w.close()
	backoff := napperIdleMin
	idle := time.NewTimer(backoff)
	defer idle.Stop()
	plain := time.NewTimer(time.Hour)
	defer plain.Stop()
	seen := handlerWork.Load()
	for {
		select {
		case <-stop:
			return
		case <-idle.C:
		}
		one := engineProcs.cores() == 1
		napperCounts.Store(one)
		if work := handlerWork.Load(); work == seen || !one {
			seen = work
			backoff = min(2*backoff, napperIdleMax)
			idle.Reset(backoff)
			continue
		}
		// Busy: trials and holds (napTrial) until the work stops.
		napperBusy.Store(true)
		var t napTrial
		began := engineNow()
		t.start(began, handlerWork.Load())
		naps, empty := 0, 0 // naps of this block of napperBlock, and those that gathered nothing
		for !stopping(stop) {
			now, work := engineNow(), handlerWork.Load()
			if !t.naps(now, work) {
				plain.Reset(t.left(now))
				select {
				case <-stop:
					return
				case <-plain.C:
				}
				if handlerWork.Load() == work {
					break
				}
				continue
			}
			rawNap(gatherNap)
			z.naps.Add(1)
			if w.pass() != nil {
				return
			}
			// The poll that readied this goroutine readied what arrived
			// during the nap too: let that run.
			runtime.Gosched()
			if handlerWork.Load() == work {
				empty++
			}
			if naps++; naps == napperBlock {
				if empty >= napperEmpty {
					break
				}
				naps, empty = 0, 0
			}
		}
		napperBusy.Store(false)
		// A spell shorter than a trial window was a trickle: look again
		// later, as when idle.
		if engineNow()-began < int64(trialLen) {
			backoff = min(2*backoff, napperIdleMax)
		} else {
			backoff = napperIdleMin
		}
		seen = handlerWork.Load()
		idle.Reset(backoff)
	}
}

// stopping reports whether stop is closed.
func stopping(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// napperWait is the napper's way to the point where the scheduler polls:
// a socket pair whose reading end is in the runtime's poller. pass writes
// a byte to it and waits for the poller to report it, which it does at
// its next poll, that is when the P has run every ready goroutine.
type napperWait struct {
	f      *os.File // the reading end, in the poller
	rc     syscall.RawConn
	wfd    int // the writing end, raw
	turns  int // bytes written since the socket was last read empty
	first  bool
	werr   error
	buf    [napperDrain]byte
	waitFn func(uintptr) bool
}

func newNapperWait() (*napperWait, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	w := &napperWait{f: os.NewFile(uintptr(fds[0]), "gather-napper"), wfd: fds[1]}
	if w.rc, err = w.f.SyscallConn(); err != nil {
		w.close()
		return nil, err
	}
	w.waitFn = w.step
	return w, nil
}

// pass returns once the runtime's poller has polled after it was called.
func (w *napperWait) pass() error {
	w.first, w.werr = true, nil
	if err := w.rc.Read(w.waitFn); err != nil {
		return err
	}
	return w.werr
}

// step is pass's RawConn.Read callback. Its first call comes after the
// poller's readiness was reset, so the byte it writes is reported at the
// next poll (an edge for every byte: the descriptor is edge-triggered);
// the second call, after that report, ends the wait.
func (w *napperWait) step(fd uintptr) bool {
	if w.first {
		w.first = false
		w.turns++
		if w.turns >= napperDrain {
			for {
				n, err := unix.Read(int(fd), w.buf[:])
				if n <= 0 || err != nil {
					break
				}
			}
			w.turns = 0
		}
		if _, err := unix.Write(w.wfd, w.buf[:1]); err != nil {
			w.werr = err
			return true
		}
		return false
	}
	return true
}

func (w *napperWait) close() {
	w.f.Close()
	unix.Close(w.wfd)
}
