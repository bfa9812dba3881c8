package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pires/go-proxyproto"

	"github.com/icpgate/icpgate/sni"
)

// The passthrough engine: an event loop for plain TLS passthrough.
//
// A goroutine per connection (plus one per relay direction) costs a Go
// proxy most of its gap to nginx and HAProxy on short TLS connections, and
// not in Go code: in the kernel, switching threads. Every socket system
// call through package net enters the scheduler's system-call state, which
// wakes the runtime's monitor thread when it sleeps and lets it hand the P
// to a second thread when the call is slow (loopback sends run the
// receiver's TCP stack inline); on one core each of those is a context
// switch, and a short connection makes several (bench/results has the
// profiles).
//
// So tls listeners that need nothing but accept, read the hello, decide,
// dial, replay and relay are served by engines, nginx-style: each engine
// is one goroutine with its own epoll set holding the listening sockets
// (EPOLLEXCLUSIVE, so one engine wakes per connection) and every socket of
// its connections (edge-triggered, registered for reading, and for writing
// only once a write found a buffer full). All of its socket calls are raw,
// non-blocking system calls (rawsys_linux.go); with nothing to do it
// waits in the runtime's poller (run), so its P goes to the rest of the
// process (HTTP, QUIC, admin) as any goroutine's would. The listening sockets
// it accepts on are duplicates outside the runtime's poller (the
// listener's own descriptor is closed), which would otherwise wake a
// second thread for every connection. Connections have no goroutine, no
// per-connection allocation once warm (their state is a reused slot) and,
// idle, no buffer and no pipe.
//
// A direction relays through a read and a write of a shared scratch buffer
// while it is small (the handshake, a request, a response), two system
// calls a message, and switches to splice(2) through a pipe after
// spliceAfter bytes, so bulk transfers never enter user space. Bytes a
// slow receiver cannot take yet wait in a buffer of their own (copy mode)
// or in the pipe (splice mode) and the source is not read meanwhile.
//
// PROXY headers are part of the engine's hello phase: a trusted peer's is
// taken off the first bytes (proxyPrefix), and one sent upstream goes out
// in the hello's write. With the TLS block page, a blocked connection is
// handed to the page (a goroutine: it terminates TLS) with its socket, its
// hello bytes and its slots (pageHandOff); passing ones stay here. A
// listener in transparent mode (the only settings left that the engine
// does not serve need it) keeps the goroutine-per-connection path.

// Engine sizes.
const (
	engineEvents  = 256      // events collected per turn
	engineScratch = 16 << 10 // read buffer shared by an engine's connections (a TLS record)
	// engineHold holds the first part of a hello that is still arriving:
	// room for a whole post-quantum ClientHello (about 1.8 KB), grown
	// when a hello is longer. A client that stops partway through its
	// hello so costs 2 KiB, not a 16 KiB buffer.
	engineHold  = 2 << 10
	spliceAfter = 64 << 10 // bytes a direction copies before it switches to splice
	// bulkBurst: a splice run this large means a burst is streaming.
	// While it does, the destination socket runs with Nagle's algorithm
	// (TCP_NODELAY off), so the kernel sends full segments instead of
	// every fragment the moment the window opens. And the source socket
	// has SO_RCVLOWAT bulkLowat, so the kernel wakes the engine once per
	// bulkLowat bytes (or a nearly full window, or the peer's FIN) instead
	// of once per TLS record the sender writes: each wake-up is an
	// interrupt to this core sent from the sender's, paid on the sender's
	// core.
	//
	// A direction that has written nothing for tailPush ends its burst:
	// TCP_NODELAY goes back on, which sends a held tail at once, and
	// SO_RCVLOWAT back to 1, which reports bytes waiting below the mark.
	// The end of a burst so waits at most that long, never a delayed-ACK
	// timeout.
	bulkBurst        = 64 << 10
	tailPush         = 2 * time.Millisecond
	bulkLowat        = 256 << 10
	pumpBudget       = 1 << 20 // most bytes a direction moves per turn before others get theirs
	engineSweep      = 50 * time.Millisecond
	engineAcceptRun  = 64 // most accepts per listener event
	engineMaxBackoff = time.Second
	engineIdleBufs   = 64 // idle pending-bytes buffers kept per engine
)

// Connection states.
const (
	stHello   uint8 = iota // reading the ClientHello
	stResolve              // resolving an upstream name
	stDial                 // connecting to the upstream
	stRelay                // relaying
	stLinger               // blocked: alert sent, waiting for the client to close
)

// PROXY header phases of a connection's first bytes.
const (
	ppNone   uint8 = iota
	ppExpect       // a trusted peer: a PROXY header comes first
	ppRefuse       // listener accepts PROXY headers, peer untrusted: refuse one
)

// Event kinds, in the low bits of an event's Pad; the rest is the slot's
// generation.
const (
	evClient = iota
	evUpstream
	evListener
	evWake
)

// evPad is the Pad of an event of the given kind for a connection whose
// slot is at generation gen.
func evPad(gen, kind int32) int32 { return gen<<2 | kind }

// engineClock is the engines' monotonic clock: nanoseconds since start.
var engineStart = time.Now()

func engineNow() int64 { return int64(time.Since(engineStart)) }

// engine is one event loop. Its fields are owned by its goroutine, except
// the task queue and open.
type engine struct {
	s      *Server
	epfd   int
	ep     *os.File        // epfd, in the runtime poller (wait)
	rc     syscall.RawConn // ep's
	wakefd int
	naps   bool // Performance.GatherNaps

	// wait's state: the read deadline set on ep (engine clock, 0 for
	// none, -1 for one that expired), and the events its callback,
	// waitFn, collected.
	deadline int64
	got      int
	waitFn   func(uintptr) bool

	evs     []unix.EpollEvent
	scratch []byte
	scan    sni.Scanner
	hreq    msgHead // scratch for an http listener's first request head (enghttp.go)

	slots []*pconn
	free  []int32
	again []pconnRef // directions that used up their budget, pumped next turn
	// pushes are the connections with a direction in a burst (Nagle on);
	// at pushAt (engine clock, 0 for none) the quiet ones get TCP_NODELAY.
	pushes []pconnRef
	pushAt int64
	pipes  [][2]int // idle splice pipes
	bufs   [][]byte // idle pending buffers (engineScratch each)
	holds  [][]byte // idle hello buffers (engineHold each)

	lns    map[int32]*engListener
	nextLn int32

	now       int64
	nextSweep int64
	readied   bool     // a turn started handler goroutines (startHandler)
	work      uint64   // bytes read from sockets since the start
	trial     napTrial // whether a dense turn naps before its wait (gather_linux.go)

	open   atomic.Int64 // connections served, for the drain log and tests
	served atomic.Int64 // connections taken since the start, for tests
	// blocked first requests of http listeners answered by the engine
	// (enghttp.go), and those of them whose response a goroutine
	// finished; for tests
	httpBlocked, httpFinished atomic.Int64

	mu      sync.Mutex
	tasks   []func()    // guarded by mu
	stopped bool        // guarded by mu: no task is queued once it is set
	halt    atomic.Bool // stopped, for the loop's check each turn
	done    chan struct{}
}

// engListener is a listening socket in an engine's epoll set.
type engListener struct {
	id      int32
	l       *listener
	fd      int            // l.efd
	local   netip.AddrPort // the socket's address; invalid when unspecified (ask each connection's)
	backoff time.Duration
	paused  int64 // engine clock when a paused listener is watched again, 0 if not paused
}

type pconnRef struct {
	c   *pconn
	gen int32
}

// pconn is one connection of an engine, in a reused slot.
type pconn struct {
	slot, gen int32
	state     uint8
	pp        uint8 // PROXY header phase: ppNone, ppExpect, ppRefuse
	queued    bool  // in engine.again
	pushing   bool  // in engine.pushes
	cfd, ufd  int
	rt        *listenerRuntime
	ip        netip.Addr     // per-IP limit key; zero until a PROXY header names the client
	client    netip.AddrPort // the peer, or the client its PROXY header carries
	dst       netip.AddrPort // the destination a PROXY header carries, if any
	hdrLen    int            // bytes of a PROXY header sent ahead of the hello
	buf       []byte         // hello bytes read so far (stHello, stResolve, stDial)
	deadline  int64          // end of the hello, resolve, dial or linger phase
	last      int64          // last progress while relaying
	lingered  int            // bytes discarded while lingering
	upAddr    string         // upstream, for debug logs
	// retry is the HelloRetryRequest check of a passed connection
	// (hrr.go): retryWatch until the server's first bytes are classified
	// (the client's bytes wait), retryRead while the client's next hello
	// is read into buf (until deadline); retryOff once relaying freely.
	retry uint8
	// first is the passed hello's server name, for the retry check;
	// its array is kept when the slot is reused, so a warm slot copies
	// the name without allocating. firstSNI: the hello had an SNI.
	first    []byte
	firstSNI bool

	cr, cw, ur, uw bool // readiness: client readable/writable, upstream
	crHup, urHup   bool // the peer has closed its side (EPOLLRDHUP seen)
	cOut, uOut     bool // EPOLLOUT is in the socket's registration (watchOut)
	up, down       pdir
}

// pdir is one relay direction.
type pdir struct {
	pipe      [2]int // read, write end; pipe[0] < 0 in copy mode
	inPipe    int
	pend      []byte // copy mode: bytes read, not yet written
	pendOff   int
	moved     int64
	uncounted int64
	eof       bool  // the source ended
	shut      bool  // the destination's write side is shut
	nagle     bool  // TCP_NODELAY is off on the destination: a burst runs
	wrote     int64 // engine clock of the last write while nagle
	noPipe    bool  // no pipe could be made: copy mode to the end
}

func (d *pdir) reset() {
	*d = pdir{pipe: [2]int{-1, -1}}
}

func (d *pdir) done() bool { return d.shut }

// engineServes reports whether the engine can serve connections of rt.
// Every setting it refuses needs transparent mode, and a reload that
// changes a listener's transparent mode opens a new socket (Reload), so an
// engine's listener keeps configs it serves; accept's hand-off to the
// goroutine path is a fallback.
func (rt *listenerRuntime) engineServes() bool {
	e := rt.edge
	if rt.cfg.Protocol == "http" {
		return rt.engineServesHTTP()
	}
	return rt.cfg.Protocol == "tls" && e.transparent == "" && !rt.original && !e.dialer.spoof
}

// Server's side of the engines.

// closeEngineFD closes the engines' descriptor of l's socket, once no
// engine watches it.
func (l *listener) closeEngineFD() {
	if l.efd >= 0 {
		rawClose(l.efd)
		l.efd = -1
	}
}

// engineAccept makes every engine accept on l, starting the engines the
// first time. s.mu must be held.
func (s *Server) engineAccept(l *listener) error {
	if s.engines == nil {
		n := engineCount()
		for range n {
			e, err := newEngine(s)
			if err != nil {
				s.stopEngines()
				return err
			}
			s.engines = append(s.engines, e)
		}
	}
	fd, err := dupCloexec(l.ln)
	if err != nil {
		return err
	}
	l.efd = fd
	for _, e := range s.engines {
		var err error
		e.call(func() { err = e.addListener(l) })
		if err != nil {
			for _, added := range l.engines {
				added.call(func() { added.removeListener(l) })
			}
			l.engines = nil
			l.closeEngineFD()
			return err
		}
		l.engines = append(l.engines, e)
	}
	// Only the duplicate is left: closing a descriptor does not shut the
	// socket down while another refers to it. ln keeps its address.
	l.ln.Close()
	return nil
}

// dupCloexec duplicates c's descriptor, close-on-exec. The duplicate is
// the caller's alone: in no poller, and unaffected by c's Close.
func dupCloexec(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return nfd, derr
}

// stopEngines stops the passthrough engines. s.mu must be held.
func (s *Server) stopEngines() {
	for _, e := range s.engines {
		e.stop()
	}
	s.engines = nil
}

// engineConns reports the connections the engines serve.
func (s *Server) engineConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.engines {
		n += int(e.open.Load())
	}
	return n
}

// leaveEngines stops every engine accepting on l.
func (l *listener) leaveEngines() {
	for _, e := range l.engines {
		e.call(func() { e.removeListener(l) })
	}
}

// closeEngineConns closes every connection the engines serve: the drain
// deadline. It returns how many there were.
func (s *Server) closeEngineConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.engines {
		e.call(func() { n += e.closeAll() })
	}
	return n
}

// The oldest kernel the engines run on: 4.5 brought EPOLLEXCLUSIVE (one
// engine woken per new connection), and 4.18 the wake-up of a reader
// whose socket's SO_RCVLOWAT is lowered below what is queued, which the
// end of a burst relies on (pushTails). On an older kernel every listener
// is served by the goroutine path.
const engineKernelMajor, engineKernelMinor = 4, 18

// engineSupported reports why the engines cannot run on this kernel: nil
// on 4.18 or later (checked once, with uname).
var engineSupported = sync.OnceValue(func() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("passthrough engine: uname: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	major, minor, ok := kernelVersion(release)
	if !ok {
		return fmt.Errorf("passthrough engine: kernel release %q not understood", release)
	}
	if major < engineKernelMajor || major == engineKernelMajor && minor < engineKernelMinor {
		return fmt.Errorf("passthrough engine: kernel %s is older than %d.%d", release, engineKernelMajor, engineKernelMinor)
	}
	return nil
})

// kernelVersion reads the major and minor numbers of a kernel release
// such as "5.15.0-91-generic".
func kernelVersion(release string) (major, minor int, ok bool) {
	num := func(s string) (int, string, bool) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 6 {
			return 0, s, false
		}
		n, _ := strconv.Atoi(s[:i])
		return n, s[i:], true
	}
	major, rest, ok := num(release)
	if !ok || len(rest) == 0 || rest[0] != '.' {
		return 0, 0, false
	}
	minor, _, ok = num(rest[1:])
	return major, minor, ok
}

// engineCount is how many engines a Server starts: one per P, so that
// each core has an event loop while the listeners' connections are spread
// over them (EPOLLEXCLUSIVE). The count is read through runtime/metrics,
// which cannot change it: the Server never sets GOMAXPROCS, so the
// runtime keeps following the CPU limit.
func engineCount() int {
	sample := []metrics.Sample{{Name: "/sched/gomaxprocs:threads"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 1
	}
	return max(int(sample[0].Value.Uint64()), 1)
}

// newEngine creates an engine and starts its goroutine.
func newEngine(s *Server) (*engine, error) {
	epfd, ep, rc, err := newPolledEpoll("engine")
	if err != nil {
		return nil, fmt.Errorf("passthrough engine: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("passthrough engine: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Pad: evWake}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		ep.Close()
		unix.Close(wakefd)
		return nil, fmt.Errorf("passthrough engine: epoll_ctl: %w", err)
	}
	e := &engine{
		s: s, epfd: epfd, ep: ep, rc: rc, wakefd: wakefd, naps: s.cfg.Performance.GatherNaps,
		evs:     make([]unix.EpollEvent, engineEvents),
		scratch: make([]byte, engineScratch),
		lns:     make(map[int32]*engListener),
		done:    make(chan struct{}),
	}
	e.waitFn = func(uintptr) bool {
		e.got = e.poll()
		return e.got > 0
	}
	go e.run()
	return e, nil
}

// call runs f on the engine's goroutine and waits for it. It returns
// false, without running f, when the engine has stopped.
func (e *engine) call(f func()) bool {
	ran := make(chan struct{})
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return false
	}
	e.tasks = append(e.tasks, func() { f(); close(ran) })
	e.mu.Unlock()
	e.wake()
	<-ran
	return true
}

// run is the engine's goroutine: it waits for events of its epoll set,
// handles them and the timers that are due, and waits again.
//
// The wait is the runtime poller's, as a socket read's is: the epoll
// descriptor is readable while events are ready (newPolledEpoll), so the
// goroutine parks with its P free for other goroutines, and the next
// timer is the descriptor's read deadline. Each wait first collects
// without blocking (poll), so a busy engine finds events and never parks.
func (e *engine) run() {
	defer close(e.done)
	var turn int64 // when the last turn began
	e.trial.start(engineNow(), 0)
	more := false
	for !e.halt.Load() {
		var n int
		if more {
			n = e.poll()
		} else {
			n = e.wait()
		}
		e.now = engineNow()
		dense := e.now-turn < int64(gatherDense)
		turn = e.now
		for i := 0; i < n; i++ {
			e.dispatch(&e.evs[i])
		}
		if len(e.again) > 0 {
			e.pumpAgain()
		}
		e.timers()
		// A full batch may have left events behind; a queued direction
		// must not wait for an event.
		more = n == len(e.evs) || len(e.again) > 0
		if e.naps && n > 0 && !more {
			switch {
			case len(e.pushes) > 0:
				nap(burstNap)
			case dense && e.trial.naps(e.now, e.work):
				nap(gatherNap)
			}
		}
		if e.readied {
			// This turn gave connections to handler goroutines, queued
			// on this P: let them run now rather than after the turns
			// a busy engine takes without parking.
			e.readied = false
			runtime.Gosched()
		}
	}
	e.release()
}

// poll collects the ready events without waiting.
func (e *engine) poll() int {
	n, errno := rawEpollPoll(e.epfd, e.evs)
	if errno != 0 {
		return 0
	}
	return n
}

// wait collects the ready events, parked in the runtime poller until
// there are some or the next timer is due.
func (e *engine) wait() int {
	at := e.nextTimer()
	if at != 0 && at <= engineNow() {
		return e.poll()
	}
	if at != e.deadline {
		var t time.Time
		if at != 0 {
			t = engineStart.Add(time.Duration(at))
		}
		e.ep.SetReadDeadline(t)
		e.deadline = at
	}
	e.got = 0
	if err := e.rc.Read(e.waitFn); err != nil {
		// The deadline passed: the timers are due. An expired deadline
		// fails every wait until it is set again.
		e.deadline = -1
	}
	return e.got
}

// burstNap is how long a turn that handled events naps before its wait
// while a burst streams (e.pushes). Waking the moment a socket is ready
// moves a burst in small steps, each one a wake-up of the peers' threads
// too; in the pause bytes and buffer space gather, so each turn moves
// more. Other connections of the engine wait that much longer only while
// a burst runs. Only with Performance.GatherNaps (gather_linux.go).
const burstNap = 50 * time.Microsecond

// nextTimer is when the next timer is due on the engine clock: the sweep
// while connections are open or a listener is paused, the tail push while
// a burst runs; 0 for none.
func (e *engine) nextTimer() int64 {
	want := int64(0)
	if e.open.Load() > 0 || e.paused() {
		want = e.nextSweep
	}
	if e.pushAt != 0 && (want == 0 || e.pushAt < want) {
		want = e.pushAt
	}
	return want
}

// timers runs the tail push and the sweep when they are due.
func (e *engine) timers() {
	if e.pushAt != 0 && e.now >= e.pushAt {
		e.pushTails()
	}
	if e.now >= e.nextSweep {
		e.sweep()
		e.nextSweep = e.now + int64(engineSweep)
	}
}

func (e *engine) paused() bool {
	for _, el := range e.lns {
		if el.paused != 0 {
			return true
		}
	}
	return false
}

// dispatch handles one event.
func (e *engine) dispatch(ev *unix.EpollEvent) {
	kind := ev.Pad & 3
	switch kind {
	case evWake:
		e.runTasks()
		return
	case evListener:
		if el := e.lns[ev.Fd]; el != nil {
			e.accept(el)
		}
		return
	}
	if int(ev.Fd) >= len(e.slots) {
		return
	}
	c := e.slots[ev.Fd]
	if c == nil || c.gen != ev.Pad>>2 {
		return // closed earlier in this batch
	}
	e.handle(c, kind, ev.Events)
}

// handle runs a connection's event; a panic ends that connection only.
func (e *engine) handle(c *pconn, kind int32, events uint32) {
	defer func() {
		if p := recover(); p != nil {
			c.rt.log.Error("connection handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			e.finish(c)
		}
	}()
	in := events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	out := events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0
	hup := events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	if kind == evClient {
		c.cr, c.cw, c.crHup = c.cr || in, c.cw || out, c.crHup || hup
	} else {
		c.ur, c.uw, c.urHup = c.ur || in, c.uw || out, c.urHup || hup
	}
	switch c.state {
	case stHello:
		if c.cr {
			e.readHello(c)
		}
	case stDial:
		if c.uw {
			e.connected(c)
		}
	case stRelay:
		e.pump(c)
	case stLinger:
		if c.cr {
			e.linger(c)
		}
	}
}

func (e *engine) runTasks() {
	var b [8]byte
	rawRead(e.wakefd, b[:])
	e.mu.Lock()
	tasks := e.tasks
	e.tasks = nil
	e.mu.Unlock()
	for _, t := range tasks {
		t()
	}
}

// addListener starts accepting on l's engine descriptor (l.efd). Run on
// the engine goroutine.
func (e *engine) addListener(l *listener) error {
	el := &engListener{id: e.nextLn, l: l, fd: l.efd}
	if a, ok := l.ln.Addr().(*net.TCPAddr); ok {
		if ap := unmapAddrPort(a.AddrPort()); !ap.Addr().IsUnspecified() {
			el.local = ap
		}
	}
	e.nextLn++
	if err := e.watch(el); err != nil {
		return err
	}
	e.lns[el.id] = el
	return nil
}

// watch adds el's socket to the epoll set.
func (e *engine) watch(el *engListener) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: el.id, Pad: evListener}
	if errno := rawEpollCtl(e.epfd, unix.EPOLL_CTL_ADD, el.fd, &ev); errno != 0 {
		return errno
	}
	return nil
}

// removeListener stops accepting on l. Run on the engine goroutine, before
// l's engine descriptor is closed.
func (e *engine) removeListener(l *listener) {
	for id, el := range e.lns {
		if el.l == l {
			if el.paused == 0 {
				rawEpollCtl(e.epfd, unix.EPOLL_CTL_DEL, el.fd, nil)
			}
			delete(e.lns, id)
		}
	}
}

// accept accepts the connections waiting on el.
func (e *engine) accept(el *engListener) {
	s := e.s
	for range engineAcceptRun {
		// el.fd stays open while el is in e.lns: the listener closes it
		// only after every engine's removeListener.
		fd, peer, errno := rawAccept(el.fd)
		switch errno {
		case 0:
		case unix.EAGAIN, unix.ECONNABORTED:
			return
		default:
			// Out of descriptors and the like: stop watching the socket
			// for a while rather than spin on it, like acceptLoop.
			if el.backoff == 0 {
				el.backoff = 5 * time.Millisecond
				s.log.Warn("accept failed, backing off", "listener", el.l.name, "error", errno)
			} else {
				el.backoff = min(2*el.backoff, engineMaxBackoff)
			}
			rawEpollCtl(e.epfd, unix.EPOLL_CTL_DEL, el.fd, nil)
			el.paused = e.now + int64(el.backoff)
			return
		}
		el.backoff = 0
		rt := el.l.rt.Load()
		rt.connections.Inc()
		if !rt.engineServes() {
			e.handOff(el.l, rt, fd)
			continue
		}
		if rt.cfg.Protocol == "http" {
			e.acceptHTTP(el, rt, fd, peer)
			continue
		}
		ip := peer.Addr().Unmap()
		trusted, ok := s.admitPeer(rt, ip)
		if !ok {
			rawClose(fd)
			continue
		}
		rt.active.Inc()
		s.handlers.Add(1)
		e.open.Add(1)
		e.served.Add(1)
		c := e.newConn()
		c.cfd, c.rt, c.client = fd, rt, peer
		switch {
		case trusted:
			c.pp = ppExpect
		case len(rt.edge.acceptFrom) > 0:
			c.ip, c.pp = ip, ppRefuse
		default:
			c.ip = ip
		}
		c.state, c.deadline = stHello, e.now+int64(rt.hello)
		c.cw = true // a new socket is writable
		if !e.register(c, fd, evClient, false) {
			e.finish(c)
			continue
		}
		// The listener is TCP_DEFER_ACCEPT (deferAccept): the client's
		// first bytes are here already, so the hello is read, decided and
		// dialled in this turn rather than the next wake-up's. Only a
		// client silent past the kernel's deferral finds nothing (EAGAIN).
		c.cr = true
		e.readHello(c)
	}
}

// handOff gives a connection the engine cannot serve (its listener's
// config changed by a Reload) to the goroutine-per-connection path.
func (e *engine) handOff(l *listener, rt *listenerRuntime, fd int) {
	nc, err := fdConn(fd)
	if err != nil {
		rt.log.Warn("handing a connection to its handler failed", "error", err)
		return
	}
	e.s.admitConn(l, rt, nc)
}

// fdConn makes a *net.TCPConn of the socket fd (in the runtime poller);
// fd itself is closed either way.
func fdConn(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return nc.(*net.TCPConn), nil
}

// newConn takes a free slot.
func (e *engine) newConn() *pconn {
	var c *pconn
	if n := len(e.free); n > 0 {
		c = e.slots[e.free[n-1]]
		e.free = e.free[:n-1]
	} else {
		c = &pconn{slot: int32(len(e.slots))}
		e.slots = append(e.slots, c)
	}
	gen := c.gen
	*c = pconn{slot: c.slot, gen: gen, cfd: -1, ufd: -1, first: c.first[:0]}
	c.up.reset()
	c.down.reset()
	return c
}

// register adds fd of c to the epoll set, for reading and, with out, for
// writing.
//
// A socket is registered without EPOLLOUT while its writes go through: a
// writable socket added with it reports EPOLLOUT at once, and every
// connection would pay a wake-up of the loop for that report on each of
// its sockets. watchOut adds EPOLLOUT the first time a write finds the
// socket's buffer full.
func (e *engine) register(c *pconn, fd int, kind int32, out bool) bool {
	ev := unix.EpollEvent{Events: epollIn, Fd: c.slot, Pad: evPad(c.gen, kind)}
	if out {
		ev.Events = epollAll
	}
	return rawEpollCtl(e.epfd, unix.EPOLL_CTL_ADD, fd, &ev) == 0
}

// watchOut adds EPOLLOUT to the registration of each socket of c whose
// write found its buffer full (its writable flag is down), so the report
// that it drained comes. Edge-triggered, it stays for the connection's
// life. It reports false when the change failed: c must end.
func (e *engine) watchOut(c *pconn) bool {
	ev := unix.EpollEvent{Events: epollAll, Fd: c.slot}
	if !c.cw && !c.cOut && c.cfd >= 0 {
		c.cOut = true
		ev.Pad = evPad(c.gen, evClient)
		if rawEpollCtl(e.epfd, unix.EPOLL_CTL_MOD, c.cfd, &ev) != 0 {
			return false
		}
	}
	if !c.uw && !c.uOut && c.ufd >= 0 {
		c.uOut = true
		ev.Pad = evPad(c.gen, evUpstream)
		if rawEpollCtl(e.epfd, unix.EPOLL_CTL_MOD, c.ufd, &ev) != 0 {
			return false
		}
	}
	return true
}

// wake makes the engine goroutine run its tasks.
func (e *engine) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	rawWriteFD(e.wakefd, one[:])
}

// startHandler gives j to a handler goroutine.
func (e *engine) startHandler(j connJob) {
	e.s.startHandler(j)
	e.readied = true
}

// finish closes c and frees its slot.
func (e *engine) finish(c *pconn) {
	if c.rt == nil {
		return // already free
	}
	if c.cfd >= 0 {
		rawClose(c.cfd)
		c.cfd = -1
	}
	rt, ip := c.rt, c.ip
	if c.up.uncounted > 0 {
		rt.bytesUp.Add(float64(c.up.uncounted))
	}
	if c.down.uncounted > 0 {
		rt.bytesDown.Add(float64(c.down.uncounted))
	}
	e.detach(c)
	e.s.lim.releaseConn(ip)
	rt.active.Dec()
	e.s.handlers.Done()
}

// detach frees c's slot: it closes the upstream socket and the client's
// (unless it was taken out of c: a connection handed to a goroutine with
// its socket and its limit slots), and releases c's pipes and buffers.
// finish releases the rest.
func (e *engine) detach(c *pconn) {
	if c.cfd >= 0 {
		rawClose(c.cfd)
	}
	if c.ufd >= 0 {
		rawClose(c.ufd)
	}
	e.endDir(&c.up)
	e.endDir(&c.down)
	if c.buf != nil {
		e.putBuf(c.buf)
	}
	e.open.Add(-1)
	gen := (c.gen + 1) & (1<<29 - 1)
	*c = pconn{slot: c.slot, gen: gen, cfd: -1, ufd: -1, first: c.first[:0]}
	e.free = append(e.free, c.slot)
}

// endDir releases a direction's pipe and buffer.
func (e *engine) endDir(d *pdir) {
	if d.pipe[0] >= 0 {
		if d.inPipe == 0 && len(e.pipes) < maxIdleSplicers {
			e.pipes = append(e.pipes, d.pipe)
		} else {
			rawClose(d.pipe[0])
			rawClose(d.pipe[1])
		}
	}
	if d.pend != nil {
		e.putBuf(d.pend)
	}
}

func (e *engine) getBuf(n int) []byte {
	if n <= engineScratch {
		if k := len(e.bufs); k > 0 {
			b := e.bufs[k-1]
			e.bufs = e.bufs[:k-1]
			return b[:n]
		}
		return make([]byte, n, engineScratch)
	}
	return make([]byte, n)
}

// holdBuf returns a copy of got, the first part of a hello, in a buffer
// with room for the rest: an engineHold buffer when got fits one.
func (e *engine) holdBuf(got []byte) []byte {
	if len(got) >= engineHold {
		return append(e.getBuf(0), got...)
	}
	if k := len(e.holds); k > 0 {
		b := e.holds[k-1]
		e.holds = e.holds[:k-1]
		return append(b, got...)
	}
	return append(make([]byte, 0, engineHold), got...)
}

func (e *engine) putBuf(b []byte) {
	switch {
	case cap(b) == engineScratch && len(e.bufs) < engineIdleBufs:
		e.bufs = append(e.bufs, b[:0])
	case cap(b) == engineHold && len(e.holds) < engineIdleBufs:
		e.holds = append(e.holds, b[:0])
	}
}

// readHello reads what the client sent and, once the hello is complete,
// decides.
func (e *engine) readHello(c *pconn) {
	for c.cr {
		var dst []byte
		if c.buf == nil {
			dst = e.scratch
		} else {
			if len(c.buf) == cap(c.buf) {
				if len(c.buf) >= sni.DefaultMaxBytes {
					e.helloFailed(c, helloTooLarge, errHelloTooLarge)
					return
				}
				nb := make([]byte, len(c.buf), min(2*cap(c.buf), sni.DefaultMaxBytes))
				copy(nb, c.buf)
				e.putBuf(c.buf)
				c.buf = nb
			}
			dst = c.buf[len(c.buf):cap(c.buf)]
		}
		n, errno := rawRead(c.cfd, dst)
		e.work += uint64(max(n, 0))
		switch {
		case errno == unix.EAGAIN:
			c.cr = false
			return
		case errno != 0:
			e.helloFailed(c, helloClosed, errno)
			return
		case n == 0:
			e.helloFailed(c, helloClosed, errHelloEOF)
			return
		}
		if n < len(dst) && !c.crHup {
			c.cr = false // drained: TCP returns all it has
		}
		got := dst[:n]
		if c.buf != nil {
			c.buf = c.buf[:len(c.buf)+n]
			got = c.buf
		}
		if c.pp != ppNone {
			took, wait := e.proxyPrefix(c, got)
			switch {
			case c.rt == nil:
				return // refused and closed
			case wait:
				if c.buf == nil {
					c.buf = e.holdBuf(got)
				}
				continue
			case took > 0 && c.buf != nil:
				c.buf = c.buf[:copy(c.buf, c.buf[took:])]
				got = c.buf
			case took > 0:
				got = got[took:]
			}
			if len(got) == 0 {
				continue
			}
		}
		hello, err := e.scan.Scan(got, 0)
		if errors.Is(err, sni.ErrIncomplete) {
			if c.buf == nil {
				c.buf = e.holdBuf(got)
			}
			continue
		}
		if err != nil {
			e.helloFailed(c, helloErrorKind(err), err)
			return
		}
		if c.buf == nil {
			c.buf = append(e.getBuf(0), got...) // replayed to the upstream
		}
		e.decide(c, &hello)
		return
	}
}

// errHelloEOF: the client closed before its hello was complete.
var errHelloEOF = errors.New("client closed before its hello was complete")

func (e *engine) helloFailed(c *pconn, kind string, err error) {
	rt := c.rt
	if c.pp == ppExpect {
		// The PROXY header never came whole: counted as the goroutine
		// path counts it.
		var perr error = errNoProxyHeader
		switch kind {
		case helloTimeout:
			perr = os.ErrDeadlineExceeded
		case helloTooLarge:
			perr = errBadProxyHeader
		}
		rt.edge.countProxyError(rt, c.client, perr)
		e.finish(c)
		return
	}
	rt.helloErrs[kind].Inc()
	if rt.log.Enabled(context.Background(), slog.LevelDebug) {
		rt.log.Debug("client hello not read", "kind", kind, "client", c.client.Addr().String(), "error", err)
	}
	e.finish(c)
}

// proxyPrefix runs the PROXY header phase on got, the connection's first
// bytes so far. A trusted peer's header (ppExpect) is parsed, its client
// and destination replace the peer's, and the per-IP slot is taken for
// that client; took is the header's length. An untrusted peer's PROXY
// signature (ppRefuse) is refused. wait asks for more bytes first; a
// refusal closes c (c.rt is nil after).
func (e *engine) proxyPrefix(c *pconn, got []byte) (took int, wait bool) {
	rt := c.rt
	edge := rt.edge
	if c.pp == ppRefuse {
		if proxySigMore(got) {
			return 0, true
		}
		c.pp = ppNone
		if isProxySignature(got) {
			edge.ppUntrusted.Inc()
			if rt.log.Enabled(context.Background(), slog.LevelDebug) {
				rt.log.Debug("PROXY header from an untrusted peer refused", "peer", c.client.String())
			}
			e.finish(c)
		}
		return 0, false
	}
	if proxyHeaderMore(got) {
		return 0, true
	}
	size, err := proxyHeaderLen(got)
	if err == nil && len(got) < size {
		return 0, true
	}
	var h *proxyproto.Header
	if err == nil {
		h, err = parseProxyHeader(got[:size])
	}
	if err != nil {
		edge.countProxyError(rt, c.client, err)
		e.finish(c)
		return 0, false
	}
	if !edge.applyProxyHeader(rt, h, &c.client, &c.dst) {
		e.finish(c)
		return 0, false
	}
	ip := c.client.Addr()
	if limit := e.s.lim.acquirePerIP(ip); limit != "" {
		e.s.rejects[limit].Inc()
		e.finish(c)
		return 0, false
	}
	c.ip, c.pp = ip, ppNone
	return size, false
}

// dstOf is the address c's client connected to: the one its PROXY header
// carries, else the listening socket's.
func dstOf(c *pconn) netip.AddrPort {
	if c.dst.IsValid() {
		return c.dst
	}
	return rawLocalAddr(c.cfd)
}

// decide decides on the hello's server name: dial the upstream on a pass,
// refuse otherwise.
func (e *engine) decide(c *pconn, hello *sni.Hello) {
	s, rt := e.s, c.rt
	d := s.decideHello(rt, hello, c.client.Addr(), c.client, func() netip.AddrPort { return dstOf(c) })
	if !d.Pass {
		if p := s.blockPage(rt, hello.ServerName, &d); p != nil {
			e.pageHandOff(c, p, hello.RecordVersion, &d)
			return
		}
		e.block(c, hello.RecordVersion)
		return
	}
	addr := d.Upstream
	if addr == "" {
		addr = rt.cfg.Upstream
	}
	if addr == "" {
		rt.upNone.Inc()
		if !rt.warnedNoUpstream.Swap(true) {
			rt.log.Warn("passing connection has no upstream: the listener has none and the decision named none; closing such connections",
				"domain", d.Domain, "reason", d.Reason)
		}
		e.finish(c)
		return
	}
	c.upAddr = addr
	c.deadline = e.now + int64(rt.dial)
	// For the retry check (hello aliases the scanner: copied now).
	c.first, c.firstSNI, c.retry = append(c.first[:0], hello.ServerName...), hello.HasSNI, retryWatch
	if v := rt.edge.dialer.send; v != 0 {
		// The PROXY header goes out ahead of the hello, in its write.
		hdr, err := proxyHeaderBytes(v, c.client, dstOf(c))
		if err != nil {
			e.dialFailed(c, err, false)
			return
		}
		c.hdrLen = len(hdr)
		nb := append(hdr, c.buf...)
		e.putBuf(c.buf)
		c.buf = nb
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		e.dial(c, unmapAddrPort(ap))
		return
	}
	// A name: resolved off the loop, then dialled by it.
	c.state = stResolve
	ref := pconnRef{c, c.gen}
	go e.resolve(ref, addr, rt.dial)
}

// resolve looks up the upstream host of addr and posts the result back.
func (e *engine) resolve(ref pconnRef, addr string, timeout time.Duration) {
	var ap netip.AddrPort
	host, port, err := net.SplitHostPort(addr)
	var p uint64
	if err == nil {
		p, err = parsePort(port)
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(e.s.hardCtx, timeout)
		var ips []netip.Addr
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		if err == nil && len(ips) > 0 {
			ap = netip.AddrPortFrom(ips[0].Unmap(), uint16(p))
		} else if err == nil {
			err = fmt.Errorf("no address for %s", host)
		}
	}
	e.post(func() {
		c := ref.c
		if c.gen != ref.gen || c.state != stResolve {
			return // timed out or closed meanwhile
		}
		if err != nil {
			e.dialFailed(c, err, isDialTimeout(err))
			return
		}
		e.dial(c, ap)
	})
}

func parsePort(s string) (uint64, error) {
	var p uint64
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	for _, ch := range []byte(s) {
		if ch < '0' || ch > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
		p = p*10 + uint64(ch-'0')
	}
	if p > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return p, nil
}

// post queues f for the engine goroutine without waiting.
func (e *engine) post(f func()) {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	e.tasks = append(e.tasks, f)
	e.mu.Unlock()
	e.wake()
}

// dial starts connecting c to its upstream.
//
// The hello is written right after connect(2): to a nearby upstream (the
// usual case, loopback or the datacentre's network) the handshake is
// often done by then, and the write proves it, so the connection goes
// straight to relaying with no wait for the socket's first writable
// report. A connect still in progress fails the write with EAGAIN; then
// the socket is registered for writing too and connected runs on the
// report.
func (e *engine) dial(c *pconn, ap netip.AddrPort) {
	fd, errno := rawConnect(ap)
	if fd < 0 {
		e.dialFailed(c, errno, false)
		return
	}
	c.ufd = fd
	c.state = stDial
	n, errno := rawWriteFD(fd, c.buf)
	if errno != 0 && errno != unix.EAGAIN {
		e.dialFailed(c, errno, errno == unix.ETIMEDOUT)
		return
	}
	wait := errno == unix.EAGAIN
	c.uOut = wait
	if !e.register(c, fd, evUpstream, wait) {
		e.dialFailed(c, errRegister, false)
		return
	}
	if !wait {
		c.uw = true
		e.relayFrom(c, n)
	}
}

// connected runs when the upstream socket is writable: the connect ended.
// The hello (and whatever followed it) is written at once; the write
// fails with the connect's error if it failed, so no SO_ERROR query is
// needed.
func (e *engine) connected(c *pconn) {
	n, errno := rawWriteFD(c.ufd, c.buf)
	switch errno {
	case 0:
	case unix.EAGAIN:
		c.uw = false // not connected yet after all: wait for the next report
		return
	default:
		e.dialFailed(c, errno, errno == unix.ETIMEDOUT)
		return
	}
	e.relayFrom(c, n)
}

// relayFrom starts relaying c once n bytes of its hello reached the
// upstream.
func (e *engine) relayFrom(c *pconn, n int) {
	c.state, c.last = stRelay, e.now
	c.up.uncounted += int64(max(n-c.hdrLen, 0)) // a PROXY header sent is not relayed bytes
	if n < len(c.buf) {
		// The rest waits as pending bytes of the upstream direction.
		c.up.pend, c.up.pendOff = c.buf, n
	} else {
		e.putBuf(c.buf)
	}
	c.buf = nil
	e.pump(c)
}

func (e *engine) dialFailed(c *pconn, err error, timeout bool) {
	rt := c.rt
	if timeout {
		rt.upTimeout.Inc()
	} else {
		rt.upDial.Inc()
	}
	if rt.log.Enabled(context.Background(), slog.LevelDebug) {
		rt.log.Debug("upstream dial failed", "upstream", c.upAddr, "error", err)
	}
	e.finish(c) // a FIN: the client sees the connection end, not a hang
}

// block refuses c as the listener's TLS block mode says (blockTLS).
func (e *engine) block(c *pconn, recordVersion uint16) {
	if c.rt.tlsBlock == "reset" {
		rawResetClose(c.cfd)
		c.cfd = -1
		e.finish(c)
		return
	}
	alert := accessDeniedAlert(recordVersion)
	if n, errno := rawWriteFD(c.cfd, alert[:]); errno != 0 || n != len(alert) {
		e.finish(c)
		return
	}
	rawShutdownWrite(c.cfd)
	e.putBuf(c.buf)
	c.buf = nil
	c.state, c.deadline = stLinger, e.now+int64(tlsLingerTimeout)
	if c.cr {
		e.linger(c)
	}
}

// pageHandOff gives a blocked connection of a page-mode listener to the
// TLS block page (tlspage.go), which terminates TLS and so runs on a
// handler goroutine (a connJob, served and released like any other): the
// socket, the hello bytes read (replayed to the page's handshake) and the
// connection's slots move to it; the engine keeps serving the listener's
// passing connections.
func (e *engine) pageHandOff(c *pconn, p *tlsPage, rv uint16, d *Decision) {
	s, rt := e.s, c.rt
	// Out of the epoll set first: the socket lives on (in the dup below)
	// and must not wake the engine any more.
	rawEpollCtl(e.epfd, unix.EPOLL_CTL_DEL, c.cfd, nil)
	nc, err := fdConn(c.cfd)
	c.cfd = -1 // closed by fdConn
	if err != nil {
		rt.log.Warn("handing a blocked connection to the TLS block page failed", "error", err)
		e.finish(c)
		return
	}
	// The decision's names may alias the engine's read buffer, which the
	// next connection overwrites: the page gets copies.
	pj := &pageJob{p: p, hello: append([]byte(nil), c.buf...), rv: rv, d: *d}
	pj.d.Host, pj.d.Domain = strings.Clone(d.Host), strings.Clone(d.Domain)
	j := connJob{rt: rt, tc: &trackedConn{c: nc, tcp: nc, ip: c.ip, listener: rt.cfg.Name}, client: c.client, page: pj}
	e.detach(c) // the slots go with the connection
	s.conns.add(j.tc)
	e.startHandler(j)
}

// linger discards what a blocked client still sends until it closes.
func (e *engine) linger(c *pconn) {
	for {
		n, errno := rawRead(c.cfd, e.scratch)
		if errno == unix.EAGAIN {
			c.cr = false
			return
		}
		c.lingered += n
		if errno != 0 || n == 0 || c.lingered >= tlsLingerMaxBytes {
			e.finish(c)
			return
		}
	}
}

// pump moves what it can in both directions and closes c when both have
// ended or one failed.
func (e *engine) pump(c *pconn) {
	cr := &c.cr
	if c.retry != retryOff {
		if !e.pumpRetry(c) {
			return // ended
		}
		if c.retry != retryOff {
			// The client's bytes wait (c.cr keeps their readiness); what
			// of the hello is still pending goes on to the upstream.
			held := false
			cr = &held
		}
	}
	errUp := e.pumpDir(c, &c.up, &c.down, c.cfd, c.ufd, cr, &c.uw, c.crHup)
	if c.up.uncounted >= relayChunk {
		c.rt.bytesUp.Add(float64(c.up.uncounted))
		c.up.uncounted = 0
	}
	var errDown syscall.Errno
	if errUp == 0 {
		errDown = e.pumpDir(c, &c.down, &c.up, c.ufd, c.cfd, &c.ur, &c.cw, c.urHup)
		if c.down.uncounted >= relayChunk {
			c.rt.bytesDown.Add(float64(c.down.uncounted))
			c.down.uncounted = 0
		}
	}
	if errUp != 0 || errDown != 0 {
		if c.rt.log.Enabled(context.Background(), slog.LevelDebug) {
			what, err := "client to upstream", errUp
			if errUp == 0 {
				what, err = "upstream to client", errDown
			}
			c.rt.log.Debug("relay ended", "upstream", c.upAddr, "error", fmt.Errorf("relaying %s: %w", what, err))
		}
		e.finish(c)
		return
	}
	if c.up.done() && c.down.done() {
		e.finish(c)
		return
	}
	if !e.watchOut(c) {
		e.finish(c)
	}
}

// pumpDir moves bytes of direction d (other is the opposite one) from src to dst until src has nothing more, dst
// takes nothing more, or the turn's budget is spent (then c is queued for
// the next turn). sr and dw are the readiness flags of src and dst; hup
// says src's peer had closed before the read, so a short read is the end
// of the direction: no second read to see the EOF.
func (e *engine) pumpDir(c *pconn, d, other *pdir, src, dst int, sr, dw *bool, hup bool) syscall.Errno {
	budget := pumpBudget
	for {
		// First what is waiting for dst.
		if d.inPipe > 0 {
			if !*dw {
				return 0
			}
			n, errno := rawSplice(d.pipe[0], dst, d.inPipe)
			if errno == unix.EAGAIN {
				*dw = false
				return 0
			}
			if errno != 0 {
				return errno
			}
			d.inPipe -= n
			d.uncounted += int64(n)
			c.last = e.now
			if d.nagle {
				d.wrote = e.now
				e.armPush(c)
			}
			continue
		}
		if d.pend != nil {
			if !*dw {
				return 0
			}
			n, errno := rawWriteFD(dst, d.pend[d.pendOff:])
			if errno == unix.EAGAIN {
				*dw = false
				return 0
			}
			if errno != 0 {
				return errno
			}
			d.pendOff += n
			d.uncounted += int64(n)
			c.last = e.now
			if d.pendOff == len(d.pend) {
				e.putBuf(d.pend)
				d.pend, d.pendOff = nil, 0
			}
			continue
		}
		if d.eof {
			if !d.shut {
				d.shut = true
				// When the other direction has ended too, the close
				// that follows sends the FIN: no shutdown call.
				if !other.shut {
					if errno := rawShutdownWrite(dst); errno != 0 && errno != unix.ENOTCONN {
						return errno
					}
				}
			}
			return 0
		}
		if !*sr {
			return 0
		}
		if budget <= 0 {
			if !c.queued {
				c.queued = true
				e.again = append(e.again, pconnRef{c, c.gen})
			}
			return 0
		}
		if d.pipe[0] < 0 && d.moved >= spliceAfter && !d.noPipe {
			d.pipe = e.getPipe()
			d.noPipe = d.pipe[0] < 0 // out of descriptors: this direction copies on
		}
		// Fill: into the pipe in splice mode, the scratch buffer in copy mode.
		splicing := d.pipe[0] >= 0
		var n int
		var errno syscall.Errno
		if splicing {
			n, errno = rawSplice(src, d.pipe[1], maxSpliceRun)
		} else {
			n, errno = rawRead(src, e.scratch)
		}
		switch {
		case errno == unix.EAGAIN:
			*sr = false
			return 0
		case errno != 0:
			return errno
		case n == 0:
			d.eof = true
			continue
		}
		d.moved += int64(n)
		e.work += uint64(n)
		budget -= n
		c.last = e.now
		if splicing {
			d.inPipe = n
			if n >= bulkBurst && !d.nagle {
				rawSetNoDelay(dst, false) // a burst: see bulkBurst
				rawSetRcvLowat(src, bulkLowat)
				d.nagle = true
			}
			continue
		}
		if n < len(e.scratch) {
			// Drained: TCP returns all it has. If the peer's FIN had
			// come before this read (hup), nothing can follow what it
			// returned: that is the end, with no read to see it.
			if hup {
				d.eof = true
			} else {
				*sr = false
			}
		}
		w := 0
		if *dw {
			var werr syscall.Errno
			w, werr = rawWriteFD(dst, e.scratch[:n])
			switch {
			case werr == unix.EAGAIN:
				*dw, w = false, 0
			case werr != 0:
				return werr
			}
			d.uncounted += int64(w)
		}
		if w < n {
			d.pend = append(e.getBuf(0), e.scratch[w:n]...)
		}
	}
}

// getPipe returns an idle pipe or a new one; [-1 -1] when none can be
// made (the direction stays in copy mode).
func (e *engine) getPipe() [2]int {
	if n := len(e.pipes); n > 0 {
		p := e.pipes[n-1]
		e.pipes = e.pipes[:n-1]
		return p
	}
	p, err := newPipe()
	if err != nil {
		return [2]int{-1, -1}
	}
	return p
}

// armPush makes sure c's bursts are checked at the next tail push.
func (e *engine) armPush(c *pconn) {
	if !c.pushing {
		c.pushing = true
		e.pushes = append(e.pushes, pconnRef{c, c.gen})
	}
	if e.pushAt == 0 {
		e.pushAt = e.now + int64(tailPush)
	}
}

// pushTails ends the bursts that have written nothing for tailPush:
// TCP_NODELAY goes back on, which sends what Nagle held.
func (e *engine) pushTails() {
	next := int64(0)
	keep := e.pushes[:0]
	for _, r := range e.pushes {
		c := r.c
		if c.gen != r.gen || c.state != stRelay {
			continue
		}
		busy := false
		for _, x := range [2]struct {
			d        *pdir
			src, dst int
		}{{&c.up, c.cfd, c.ufd}, {&c.down, c.ufd, c.cfd}} {
			d := x.d
			if !d.nagle {
				continue
			}
			if at := d.wrote + int64(tailPush); d.inPipe > 0 || at > e.now {
				busy = true
				if next == 0 || at < next {
					next = at
				}
				continue
			}
			rawSetNoDelay(x.dst, true)
			rawSetRcvLowat(x.src, 1)
			d.nagle = false
		}
		if busy {
			keep = append(keep, r)
		} else {
			c.pushing = false
		}
	}
	clear(e.pushes[len(keep):])
	e.pushes = keep
	if next != 0 && next <= e.now {
		next = e.now + int64(tailPush)
	}
	e.pushAt = next
}

// pumpAgain gives the queued directions their next turn.
func (e *engine) pumpAgain() {
	q := e.again
	e.again = nil
	for _, r := range q {
		if r.c.gen == r.gen && r.c.state == stRelay {
			r.c.queued = false
			e.handle(r.c, evClient, 0)
		}
	}
	if e.again == nil {
		e.again = q[:0]
	}
}

// sweep ends the phases that ran out of time and the idle relays.
func (e *engine) sweep() {
	now := e.now
	for _, el := range e.lns {
		if el.paused != 0 && now >= el.paused {
			el.paused = 0
			if err := e.watch(el); err != nil {
				el.paused = now + int64(el.backoff)
			}
		}
	}
	if e.open.Load() == 0 {
		return
	}
	for _, c := range e.slots {
		if c.rt == nil {
			continue
		}
		switch c.state {
		case stHello:
			if now >= c.deadline {
				e.helloFailed(c, helloTimeout, sni.ErrTimeout)
			}
		case stResolve, stDial:
			if now >= c.deadline {
				e.dialFailed(c, errDialTimeout, true)
			}
		case stLinger:
			if now >= c.deadline {
				e.finish(c)
			}
		case stRelay:
			if c.retry == retryRead && now >= c.deadline {
				e.retryFailed(c, helloTimeout, sni.ErrTimeout)
				continue
			}
			if idle := int64(c.rt.idle); idle > 0 && now-c.last >= idle {
				e.s.countIdle(c.rt.cfg.Name)
				e.finish(c)
			}
		}
	}
}

var (
	errDialTimeout = errors.New("upstream connect timed out")
	errRegister    = errors.New("adding the upstream socket to the epoll set failed")
)

// closeAll closes every connection: the drain deadline.
func (e *engine) closeAll() int {
	n := 0
	for _, c := range e.slots {
		if c.rt != nil {
			e.finish(c)
			n++
		}
	}
	return n
}

// stop ends the engine goroutine (after the drain) and waits for it.
func (e *engine) stop() {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	e.stopped = true
	e.halt.Store(true)
	e.mu.Unlock()
	e.wake()
	<-e.done
}

// release closes what the engine holds. Run by its goroutine as it ends.
// Tasks queued before the stop still run, so no call waits forever.
func (e *engine) release() {
	e.runTasks()
	e.closeAll()
	for _, p := range e.pipes {
		rawClose(p[0])
		rawClose(p[1])
	}
	e.pipes = nil
	e.ep.Close() // closes epfd
	unix.Close(e.wakefd)
}
