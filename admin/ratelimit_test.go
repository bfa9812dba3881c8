package admin

import (
	"fmt"
	"testing"
	"time"
)

// TestLimiterSetBounded: a flood of distinct clients cannot grow the set
// past its size, and a client that keeps failing stays limited through
// the flood (it is recently used, so not the one evicted).
func TestLimiterSetBounded(t *testing.T) {
	const size = 100
	l := newLimiterSet[string](size, 10, 10)
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for range 10 {
		l.take("attacker", now)
	}
	if wait := l.empty("attacker", now); wait != 6*time.Second {
		t.Fatalf("after 10 failures at 10 a minute: wait %v, want 6s", wait)
	}
	for i := range 10 * size {
		l.take(fmt.Sprintf("10.0.%d.%d", i/256, i%256), now)
		if i%10 == 0 {
			l.take("attacker", now) // still trying
		}
		if n := l.len(); n > size {
			t.Fatalf("after %d keys: %d held, want at most %d", i+1, n, size)
		}
	}
	if wait := l.empty("attacker", now); wait == 0 {
		t.Errorf("the persistent client was let go by the flood")
	}
	if wait := l.empty("never-seen", now); wait != 0 {
		t.Errorf("unknown key: wait %v, want 0", wait)
	}
	if l.len() != size {
		t.Errorf("len: got %d, want %d (empty does not add)", l.len(), size)
	}
}

func TestClientKey(t *testing.T) {
	for _, tt := range []struct{ remote, want string }{
		{"192.0.2.1:5000", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:5000", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:1", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
		{"@", "@"},
	} {
		if got := clientKey(tt.remote); got != tt.want {
			t.Errorf("clientKey(%q): got %q, want %q", tt.remote, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		want int
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {20 * time.Second, 20}} {
		if got := retryAfter(tt.wait); got != tt.want {
			t.Errorf("retryAfter(%v): got %d, want %d", tt.wait, got, tt.want)
		}
	}
}
