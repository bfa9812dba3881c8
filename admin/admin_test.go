package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/icpgate/icpgate/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testNow = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

// newTestRegistry loads testdata/registry.jsonl plus two overrides.
func newTestRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	snap, err := registry.LoadSnapshot("testdata/registry.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	snap, err = snap.WithOverrides([]registry.Override{
		{ID: "o1", Host: "deny.filed.cn", Scope: registry.ScopeExact, Action: registry.ActionDeny,
			Reason: "phishing report", Ticket: "OPS-7", Who: "ops", Created: testNow},
		{ID: "o2", Host: "blacklisted.cn", Scope: registry.ScopeDomain, Action: registry.ActionAllow,
			Expires: testNow.Add(24 * time.Hour), Reason: "preliminary review passed", Ticket: "SUP-1", Who: "support", Created: testNow},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{Clock: func() time.Time { return testNow }})
	reg.Swap(snap)
	return reg
}

// startServer starts an admin server on a free loopback port.
func startServer(t *testing.T, reg *registry.Registry, ready func() (bool, string)) (*Server, string) {
	t.Helper()
	pr := prometheus.NewRegistry()
	pr.MustRegister(NewRegistryCollector(reg, func() registry.ReloadStats {
		return registry.ReloadStats{Successes: 3, Failures: 1, LastSuccess: testNow}
	}))
	s := New(Config{Address: "127.0.0.1:0"}, reg, pr, ready, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, "http://" + s.Addr().String()
}

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	_, base := startServer(t, newTestRegistry(t), func() (bool, string) {
		if !ready.Load() {
			return false, "registry not loaded yet"
		}
		return true, ""
	})
	tests := []struct {
		name       string
		method     string
		path       string
		ready      bool
		wantStatus int
		wantType   string
		wantBody   []string // substrings
	}{
		{"healthz", "GET", "/healthz", false, 200, "text/plain", []string{"ok\n"}},
		{"healthz head", "HEAD", "/healthz", false, 200, "text/plain", nil},
		{"readyz not ready", "GET", "/readyz", false, 503, "application/json", []string{`"ready": false`, `"detail": "registry not loaded yet"`}},
		{"readyz ready", "GET", "/readyz", true, 200, "application/json", []string{`"ready": true`}},
		// The API needs a token (api_test.go covers it with a real token store).
		{"explain needs a token", "GET", "/v1/explain?host=filed.cn", true, 401, "application/json", []string{`"error": "unauthenticated"`}},
		{"post refused", "POST", "/v1/explain?host=filed.cn", true, 405, "application/json", []string{`"error": "method_not_allowed"`}},
		{"unknown path", "GET", "/nope", true, 404, "", nil},
		{"metrics", "GET", "/metrics", true, 200, "text/plain", []string{
			`icpgate_registry_records{state="filed"} 1`, `icpgate_registry_records{state="blacklisted"} 1`,
			`icpgate_registry_loaded 1`, `icpgate_registry_reloads_total{result="failure"} 1`,
			`icpgate_registry_cache_requests_total{result="miss"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			resp, body := get(t, tt.method, base+tt.path)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d; body %q", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.wantType) {
				t.Errorf("Content-Type: got %q, want prefix %q", got, tt.wantType)
			}
			for _, w := range tt.wantBody {
				if !strings.Contains(body, w) {
					t.Errorf("body: got %q, want it to contain %q", body, w)
				}
			}
			if tt.method == "POST" {
				if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow: got %q, want %q", got, "GET, HEAD")
				}
			}
		})
	}
}

func TestStartTwiceAndShutdown(t *testing.T) {
	s := New(Config{Address: "127.0.0.1:0"}, newTestRegistry(t), prometheus.NewRegistry(), nil, nil)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown before start: got %v, want nil", err)
	}
	if s.Addr() != nil {
		t.Fatalf("addr before start: got %v, want nil", s.Addr())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second start: got %v, want ErrStarted", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("dial after shutdown: got a connection, want refused")
	}
}

func TestStartPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := New(Config{Address: ln.Addr().String()}, newTestRegistry(t), prometheus.NewRegistry(), nil, nil)
	err = s.Start()
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("got nil, want an address-in-use error")
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("got %q, want the address in the error", err)
	}
}

func TestRegistryCollectorLint(t *testing.T) {
	c := NewRegistryCollector(newTestRegistry(t), nil)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	// records by state, rejected rows, loaded, last success, reloads by
	// result, cache requests by result, evictions, invalidations, entries.
	if got := testutil.CollectAndCount(c); got != 9+1+1+1+2+2+1+1+1 {
		t.Errorf("got %d series, want %d", got, 19)
	}
}

// TestStartBesideOldProcess: a second admin server binds the address of a
// running one (SO_REUSEPORT), as a new process does during an upgrade.
func TestStartBesideOldProcess(t *testing.T) {
	old := New(Config{Address: "127.0.0.1:0"}, newTestRegistry(t), prometheus.NewRegistry(), nil, nil)
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	defer old.Shutdown(context.Background())
	next := New(Config{Address: old.Addr().String()}, newTestRegistry(t), prometheus.NewRegistry(), nil, nil)
	if err := next.Start(); err != nil {
		t.Fatalf("second Start on %s: got %v, want nil", old.Addr(), err)
	}
	defer next.Shutdown(context.Background())
	resp, err := http.Get("http://" + old.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: got %d, want 200", resp.StatusCode)
	}
}
