package proxy

import (
	"net/netip"
	"testing"
)

func TestConnLimiter(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	v6 := netip.MustParseAddr("2001:db8::1")
	type step struct {
		release bool
		ip      netip.Addr
		want    string // acquire's result
	}
	tests := []struct {
		name  string
		lim   Limits
		steps []step
	}{
		{"per-ip cap", Limits{MaxConns: 10, MaxConnsPerIP: 2}, []step{
			{ip: a}, {ip: a}, {ip: a, want: limitPerIP}, {ip: b}, {ip: v6}, {ip: v6},
			{ip: v6, want: limitPerIP},
		}},
		{"release frees the slot", Limits{MaxConns: 10, MaxConnsPerIP: 1}, []step{
			{ip: a}, {ip: a, want: limitPerIP}, {release: true, ip: a}, {ip: a},
		}},
		{"global cap", Limits{MaxConns: 3, MaxConnsPerIP: 10}, []step{
			{ip: a}, {ip: b}, {ip: v6}, {ip: a, want: limitGlobal}, {release: true, ip: b},
			{ip: a}, {ip: b, want: limitGlobal},
		}},
		{"defaults", Limits{}, []step{{ip: a}, {ip: b}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newConnLimiter()
			l.setLimits(tt.lim)
			for i, s := range tt.steps {
				if s.release {
					l.release(s.ip)
					continue
				}
				if got := l.acquire(s.ip); got != s.want {
					t.Fatalf("step %d acquire(%v): got %q, want %q", i, s.ip, got, s.want)
				}
			}
		})
	}
}

func TestConnLimiterReleaseDeletes(t *testing.T) {
	l := newConnLimiter()
	l.setLimits(Limits{})
	ip := netip.MustParseAddr("198.51.100.7")
	for range 3 {
		if got := l.acquire(ip); got != "" {
			t.Fatalf("acquire: got %q, want \"\"", got)
		}
	}
	for range 3 {
		l.release(ip)
	}
	if n := l.perIPCount(ip); n != 0 {
		t.Errorf("count after releases: got %d, want 0", n)
	}
	sh := l.shard(ip)
	sh.mu.Lock()
	_, present := sh.perIP[ip]
	sh.mu.Unlock()
	if present {
		t.Errorf("entry still present after the last release, want it deleted")
	}
	if n := l.open.Load(); n != 0 {
		t.Errorf("open count: got %d, want 0", n)
	}
}

func BenchmarkConnLimiter(b *testing.B) {
	l := newConnLimiter()
	l.setLimits(Limits{})
	ip := netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	for range b.N {
		l.acquire(ip)
		l.release(ip)
	}
}
