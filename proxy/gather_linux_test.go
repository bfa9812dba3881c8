package proxy

import (
	"testing"
	"time"
)

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
