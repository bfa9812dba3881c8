package proxy

import (
	"errors"
	"testing"
)

// skipWithoutEngines skips a test of the engines themselves when the
// Server s would not start them (ICPGATE_ENGINE=off, the second test run
// of .ci/run, or a system without them).
func skipWithoutEngines(t *testing.T, s *Server) {
	t.Helper()
	if !s.engineOn {
		t.Skip("the passthrough engines are off")
	}
}

// servedByEngines waits, when the engines are on, until they serve g's tls
// listener: a test of behaviour both paths share, which runs on the
// goroutine path when they are off.
func servedByEngines(t *testing.T, g *gateway) {
	t.Helper()
	if !g.srv.engineOn {
		return
	}
	waitFor(t, "the passthrough engine to serve the tls listener", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		return len(g.srv.engines) > 0 && len(g.srv.lns["tls"].engines) == len(g.srv.engines)
	})
}

// TestPerformanceEngineSwitch: Performance.Engine "off" serves every
// listener with a goroutine per connection, "on" the ones the engine can
// serve, and anything else is refused by name.
func TestPerformanceEngineSwitch(t *testing.T) {
	up := newTLSUpstream(t, "A", nil)
	for _, mode := range []string{EngineOn, EngineOff} {
		t.Run(mode, func(t *testing.T) {
			cfg := tlsListener(up.addr())
			cfg.Performance.Engine = mode
			g := startGateway(t, cfg, filedOnly)
			want := "handlers"
			if mode == EngineOn && engineSupported() == nil {
				want = "engine"
			}
			if got := g.srv.ServedBy("tls"); got != want {
				t.Fatalf("ServedBy: got %q, want %q", got, want)
			}
			c, err := dialTLS(g.addr("tls"), "filed.cn")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if body, err := httpGetTLS(c, "filed.cn"); err != nil || body != "hello filed.cn from A" {
				t.Fatalf("got %q, %v", body, err)
			}
		})
	}
	cfg := tlsListener(up.addr())
	cfg.Performance.Engine = "yes"
	if _, err := NewServer(cfg, filedOnly, nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("engine %q: got %v, want ErrInvalidConfig", cfg.Performance.Engine, err)
	}
}
