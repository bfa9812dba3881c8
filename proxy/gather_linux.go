package proxy

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Gather naps: letting a busy engine's events gather before it waits.
// They are off unless Performance.GatherNaps turns them on.
//
// A thread that sleeps in epoll_wait is woken by whoever makes one of its
// sockets ready, and the waker pays for it: on a loaded gateway that is
// the client or the backend, in the middle of sending, and the cost of a
// wake-up on another core depends on the machine (a virtual machine's
// inter-processor interrupts go through the hypervisor). Under load an
// engine's waits are short, so it sleeps and is woken about once per
// request.
//
// With naps on, an engine that ran out of work sleeps briefly before its
// wait and then collects what arrived meanwhile: events that come during
// the nap cost their senders only the queueing, and the next turn handles
// them together. An engine naps:
//
//   - burstNap after a turn while a burst streams (engine.pushes), so that
//     each turn moves more bytes;
//   - gatherNap after a turn that began less than gatherDense after the
//     one before, when its trial (napTrial, judging by the bytes the
//     engine reads) says naps move more work than no naps.
//
// A nap adds to the round trip of whatever arrives during it, and what it
// saves depends on the cost of a cross-core wake-up on the machine at
// hand, so it is a setting to measure (docs/performance.md), not a
// default. A nap is a nanosleep in the scheduler's system-call state: the
// runtime may hand the engine's P to another thread meanwhile.

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

// nap sleeps d (under a second) in the system-call state.
func nap(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	syscall.Syscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}
