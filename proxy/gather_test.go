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
	stopFeed := feedWork(50*time.Microsecond, 4*napperGather)
	if n := napsAfter(z, 0, 10*time.Second); n == 0 {
		t.Fatal("no nap while reads kept coming")
	}
	stopFeed()

	// Idle: after the run ends, no more naps.
	time.Sleep(300 * time.Millisecond)
	idle := z.naps.Load()
	time.Sleep(500 * time.Millisecond)
	if n := z.naps.Load(); n != idle {
		t.Fatalf("napped %d times with no reads", n-idle)
	}

	// A trickle: one read a millisecond is too little to gather.
	stopFeed = feedWork(time.Millisecond, 1)
	time.Sleep(500 * time.Millisecond) // the probes back off
	trickle := z.naps.Load()
	time.Sleep(500 * time.Millisecond)
	stopFeed()
	// Probing goes on, backing off to napperIdleMax: a run of at most
	// about 8 naps every 100 ms.
	if n := z.naps.Load() - trickle; n > 60 {
		t.Fatalf("napped %d times in 500 ms of one read a millisecond", n)
	}

	// More than one P: no naps, however busy.
	runtime.GOMAXPROCS(2)
	time.Sleep(200 * time.Millisecond)
	before := z.naps.Load()
	handlerWork.Add(1000)
	for i := 0; i < 200; i++ {
		handlerWork.Add(4 * napperGather)
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
