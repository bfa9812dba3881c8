package proxy

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// napsAfter waits up to d for z to have napped more than from times, and
// reports how many naps it counted.
func napsAfter(z *idleNapper, from uint64, d time.Duration) uint64 {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := z.naps.Load(); n > from {
			return n
		}
	}
	return z.naps.Load()
}

// napsSettle waits, up to 10 s, until z has taken no nap for 200 ms,
// and reports whether it did.
func napsSettle(z *idleNapper) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		n := z.naps.Load()
		time.Sleep(200 * time.Millisecond)
		if z.naps.Load() == n {
			return true
		}
	}
	return false
}

// feedWork adds n to handlerWork every d until the returned stop is
// called: a stand-in for handler goroutines' reads.
func feedWork(d time.Duration, n uint64) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-quit:
				return
			case <-time.After(d):
				handlerWork.Add(n)
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// TestIdleNapper: with the handlers on one P, the napper naps while reads
// keep coming in numbers, stops once they stop, never naps with more Ps,
// and its goroutine ends when the last Server stops.
func TestIdleNapper(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	z := &idleNapper{}
	z.add(1)
	stopped := false
	defer func() {
		if !stopped {
			z.add(-1)
		}
	}()

	// Busy: a stand-in for handler goroutines, many reads a turn.
	stopFeed := feedWork(50*time.Microsecond, 40)
	if n := napsAfter(z, 0, 10*time.Second); n == 0 {
		t.Fatal("no nap while reads kept coming")
	}
	stopFeed()

	// Idle: the spell ends, and no nap follows.
	if !napsSettle(z) {
		t.Fatal("still napping 10 s after the reads stopped")
	}
	idle := z.naps.Load()
	time.Sleep(500 * time.Millisecond)
	if n := z.naps.Load(); n != idle {
		t.Fatalf("napped %d times with no reads", n-idle)
	}

	// A trickle: one read every 20 ms is too little to gather. Each look
	// costs at most a few blocks of napperBlock naps, and the looks back
	// off to napperIdleMax; naps that never stopped would number
	// thousands in 500 ms.
	stopFeed = feedWork(20*time.Millisecond, 1)
	time.Sleep(500 * time.Millisecond) // the looks back off
	trickle := z.naps.Load()
	time.Sleep(500 * time.Millisecond)
	stopFeed()
	if n := z.naps.Load() - trickle; n > 16*napperBlock {
		t.Fatalf("napped %d times in 500 ms of one read every 20 ms", n)
	}

	// More than one P: no naps, however busy.
	runtime.GOMAXPROCS(2)
	if !napsSettle(z) {
		t.Fatal("still napping 10 s after the trickle stopped")
	}
	before := z.naps.Load()
	handlerWork.Add(1000)
	for i := 0; i < 200; i++ {
		handlerWork.Add(40)
		time.Sleep(time.Millisecond)
	}
	if n := z.naps.Load(); n != before {
		t.Fatalf("napped %d times with two Ps", n-before)
	}

	// The last Server stopping ends the goroutine (add waits for it).
	z.add(-1)
	stopped = true
	if z.stop != nil || z.done != nil {
		t.Fatal("napper still set up after its last user stopped")
	}
}

// TestNapperWaitPass: pass returns once the poller has polled, turn after
// turn, past the point where the socket is read empty.
func TestNapperWaitPass(t *testing.T) {
	w, err := newNapperWait()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for i := 0; i < 3*napperDrain; i++ {
		done := make(chan error, 1)
		go func() { done <- w.pass() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("pass %d: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("pass %d did not return", i)
		}
	}
}

// TestNapTrial: naps are held when the windows with them moved more work,
// not when they moved as much or less, and a new trial follows each hold.
func TestNapTrial(t *testing.T) {
	const step = int64(time.Millisecond)
	// run drives a trial on a clock advancing a millisecond a step, work
	// growing by napped or plain a step depending on the trial's answer,
	// for d; it reports the share of steps that napped in the last hold.
	run := func(napped, plain uint64, d time.Duration) (held float64) {
		var tr napTrial
		now, work := int64(0), uint64(0)
		tr.start(now, work)
		var steps, naps int
		for ; now < int64(d); now += step {
			nap := tr.naps(now, work)
			if tr.win == trialWindows {
				steps++
				if nap {
					naps++
				}
			}
			if nap {
				work += napped
			} else {
				work += plain
			}
		}
		return float64(naps) / float64(steps)
	}
	if h := run(120, 100, trialWindows*trialLen+time.Second); h != 1 {
		t.Errorf("naps moving 20%% more: held with naps %.2f of the time, want 1", h)
	}
	if h := run(101, 100, trialWindows*trialLen+time.Second); h != 0 {
		t.Errorf("naps moving 1%% more: held with naps %.2f of the time, want 0", h)
	}
	if h := run(80, 100, trialWindows*trialLen+time.Second); h != 0 {
		t.Errorf("naps moving less: held with naps %.2f of the time, want 0", h)
	}
	// After holdLen a new trial begins: with naps, in its first window.
	var tr napTrial
	tr.start(0, 0)
	now := int64(0)
	for ; tr.win < trialWindows; now += step {
		tr.naps(now, uint64(now))
	}
	if tr.naps(now+int64(holdLen), uint64(now)) != true || tr.win != 0 {
		t.Errorf("after the hold: window %d, want a new trial's first (napping) window", tr.win)
	}
	if got := tr.left(now + int64(holdLen)); got != trialLen {
		t.Errorf("new window lasts %v, want %v", got, trialLen)
	}
}
