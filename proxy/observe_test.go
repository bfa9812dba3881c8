package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// observed is one ObserveBlock call.
type observed struct {
	reason, domain string
	dst            Destination
}

// recordingObserver records every ObserveBlock call: this file tests the
// hook itself, so what it was told is the result.
type recordingObserver struct {
	mu    sync.Mutex
	calls []observed
}

func (o *recordingObserver) ObserveBlock(reason, domain string, dst Destination) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, observed{reason, strings.Clone(domain), dst})
}

// take returns the calls so far and forgets them.
func (o *recordingObserver) take() []observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

// observeDecider blocks everything but filed.cn and its subdomains:
// no name and IP literals as ip_access, names with '_' as invalid_host
// (both without a domain), anything else as unfiled with the last two
// labels as its registrable domain; routed.cn's decisions name the
// upstream routedUpstream.
type observeDecider struct{}

func (observeDecider) Decide(host string) Decision {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if ap, err := netip.ParseAddrPort(h); err == nil {
		h = ap.Addr().String()
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h, "]") {
		h = h[:i]
	}
	if h == "" {
		return Decision{Reason: "ip_access"}
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return Decision{Reason: "ip_access", Host: h}
	}
	if strings.Contains(h, "_") {
		return Decision{Reason: "invalid_host"}
	}
	labels := strings.Split(h, ".")
	dom := h
	if len(labels) > 2 {
		dom = strings.Join(labels[len(labels)-2:], ".")
	}
	if dom == "filed.cn" {
		return Decision{Pass: true, Reason: "filed", Host: h, Domain: dom, FilingNumber: "京ICP备10206937号-1"}
	}
	if dom == "routed.cn" {
		return Decision{Reason: "unfiled", Host: h, Domain: dom, Upstream: routedUpstream}
	}
	return Decision{Reason: "unfiled", Host: h, Domain: dom}
}

// routedUpstream is the upstream observeDecider names for routed.cn.
const routedUpstream = "origin.routed.example:8443"

// startObservedGateway runs a Server for cfg deciding with observeDecider,
// with o set as its block observer before Start.
func startObservedGateway(t *testing.T, cfg Config, o BlockObserver) *Server {
	t.Helper()
	srv, err := NewServer(cfg, observeDecider{}, NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetBlockObserver(o)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

// checkObserved compares calls with want, each call expected at dst
// unless it names its own.
func checkObserved(t *testing.T, got []observed, dst Destination, want ...observed) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d observations %v, want %d %v", len(got), got, len(want), want)
	}
	for i, w := range want {
		if w.dst == (Destination{}) {
			w.dst = dst
		}
		if got[i] != w {
			t.Errorf("observation %d: got %+v, want %+v", i, got[i], w)
		}
	}
}

// TestObserveTLS blocks TLS handshakes from Go's crypto/tls client: each
// block with a domain reaches the observer with the listener's upstream as
// the destination (the decision's when it names one) before the client
// sees the refusal; passes and blocks without a domain (no SNI) do not.
func TestObserveTLS(t *testing.T) {
	up := newTLSUpstream(t, "origin", nil)
	o := &recordingObserver{}
	srv := startObservedGateway(t, tlsListener(up.addr()), o)
	addr := srv.Addr("tls").String()
	dst := Destination{Upstream: up.addr()}

	c, err := dialTLS(addr, "www.filed.cn")
	if err != nil {
		t.Fatalf("www.filed.cn: %v", err)
	}
	c.Close()
	for _, name := range []string{"www.unfiled.cn", "Unfiled.CN", "", "other.cn", "www.routed.cn"} {
		if c, err := dialTLS(addr, name); err == nil {
			c.Close()
			t.Fatalf("%q: got a handshake, want a block", name)
		}
	}
	checkObserved(t, o.take(), dst,
		observed{reason: "unfiled", domain: "unfiled.cn"},
		observed{reason: "unfiled", domain: "unfiled.cn"},
		observed{reason: "unfiled", domain: "other.cn"},
		observed{reason: "unfiled", domain: "routed.cn", dst: Destination{Upstream: routedUpstream}})
}

// TestObserveHTTP blocks requests from Go's net/http client on an http
// listener: each block with a domain reaches the observer with the
// upstream the request would have gone to; passes and blocks without a
// domain (an IP literal, an invalid name) do not.
func TestObserveHTTP(t *testing.T) {
	upstream := newHTTPTestUpstream(t)
	cfg := Config{Listeners: []ListenerConfig{{Name: "web", Protocol: "http", Address: "127.0.0.1:0", Upstream: upstream}}}
	o := &recordingObserver{}
	srv := startObservedGateway(t, cfg, o)
	port := srv.Addr("web").(*net.TCPAddr).Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	for _, tt := range []struct {
		host string
		code int
	}{
		{"www.filed.cn", 200},
		{"a.b.unfiled.cn:80", 403},
		{"10.0.0.1", 403}, // ip_access blocked, no domain
		{"bad_name.cn", 403},
		{"other.cn", 403},
		{"routed.cn", 403},
	} {
		req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tt.host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET Host %s: %v", tt.host, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Fatalf("Host %s: got %d, want %d", tt.host, resp.StatusCode, tt.code)
		}
	}
	checkObserved(t, o.take(), Destination{Upstream: upstream},
		observed{reason: "unfiled", domain: "unfiled.cn"},
		observed{reason: "unfiled", domain: "other.cn"},
		observed{reason: "unfiled", domain: "routed.cn", dst: Destination{Upstream: routedUpstream}})
}

// TestObserveQUIC refuses an HTTP/3 connection from quic-go: the flow's
// block reaches the observer with the quic listener's upstream.
func TestObserveQUIC(t *testing.T) {
	up := newH3Upstream(t)
	o := &recordingObserver{}
	srv := startObservedGateway(t, Config{
		Listeners: []ListenerConfig{{Name: "quic", Protocol: "quic", Address: "127.0.0.1:0", Upstream: up.pc.LocalAddr().String()}},
		Timeouts:  Timeouts{Hello: 2 * time.Second, Drain: time.Second},
	}, o)
	addr := srv.Addr("quic").String()
	if _, err := h3Get(t, addr, "www.unfiled.cn", 20*time.Second); err == nil {
		t.Fatal("www.unfiled.cn: got a response, want a refusal")
	}
	if body, err := h3Get(t, addr, "www.filed.cn", 5*time.Second); err != nil || body == "" {
		t.Fatalf("www.filed.cn: got %q, %v; want the page", body, err)
	}
	checkObserved(t, o.take(), Destination{Upstream: up.pc.LocalAddr().String()},
		observed{reason: "unfiled", domain: "unfiled.cn"})
}

// TestObserverReplace swaps the observer while connections are being
// blocked (the race detector checks the swap) and then removes it.
func TestObserverReplace(t *testing.T) {
	first, second := &recordingObserver{}, &recordingObserver{}
	srv := startObservedGateway(t, tlsListener("127.0.0.1:1"), first)
	addr := srv.Addr("tls").String()
	block := func() {
		if c, err := dialTLS(addr, "unfiled.cn"); err == nil {
			c.Close()
			t.Error("got a handshake, want a block")
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				block()
			}
		}()
	}
	srv.SetBlockObserver(second)
	wg.Wait()
	if n := len(first.take()) + len(second.take()); n != 20 {
		t.Errorf("got %d observations across both observers, want 20", n)
	}
	block()
	if n := len(second.take()); n != 1 {
		t.Errorf("after the swap: got %d observations, want 1", n)
	}
	srv.SetBlockObserver(nil)
	block()
	if n := len(first.take()) + len(second.take()); n != 0 {
		t.Errorf("after removing the observer: got %d observations, want 0", n)
	}
}

// countingObserver counts without allocating.
type countingObserver struct{ n int }

func (o *countingObserver) ObserveBlock(string, string, Destination) { o.n++ }

// TestObserveAllocs checks the hot path: no allocation with no observer,
// and none added by the hook with one that allocates nothing itself.
func TestObserveAllocs(t *testing.T) {
	var s observerSlot
	d := Decision{Reason: "unfiled", Domain: "unfiled.cn"}
	dst := netip.MustParseAddrPort("192.0.2.1:443")
	if a := testing.AllocsPerRun(100, func() { s.observe(&d, "origin:443", dst) }); a != 0 {
		t.Errorf("no observer: got %v allocations, want 0", a)
	}
	o := &countingObserver{}
	s.p.Store(&observerBox{o})
	if a := testing.AllocsPerRun(100, func() { s.observe(&d, "origin:443", dst) }); a != 0 {
		t.Errorf("with an observer: got %v allocations, want 0", a)
	}
	if o.n == 0 {
		t.Error("the observer was never called")
	}
	var nilSlot *observerSlot
	nilSlot.observe(&d, "origin:443", dst) // http handlers built outside a Server
}

// TestBlockDestination: a blocked connection is reported at the upstream
// it would have gone to, never at the gateway's own listener.
func TestBlockDestination(t *testing.T) {
	orig := netip.MustParseAddrPort("198.51.100.7:443")
	for _, tt := range []struct {
		name, decided, listener string
		want                    Destination
	}{
		{"listener upstream", "", "10.0.0.5:443", Destination{Upstream: "10.0.0.5:443"}},
		{"decision upstream", "origin.example:8443", "10.0.0.5:443", Destination{Upstream: "origin.example:8443"}},
		{"no upstream", "", "", Destination{}},
		{"transparent", "", UpstreamOriginal, Destination{Original: orig}},
		{"transparent ignores the decision", "origin.example:8443", UpstreamOriginal, Destination{Original: orig}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Decision{Reason: "unfiled", Domain: "unfiled.cn", Upstream: tt.decided}
			if got := blockDestination(&d, tt.listener, orig); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func BenchmarkObserveNone(b *testing.B) {
	var s observerSlot
	d := Decision{Reason: "unfiled", Domain: "unfiled.cn"}
	dst := netip.MustParseAddrPort("192.0.2.1:443")
	b.ReportAllocs()
	for b.Loop() {
		s.observe(&d, "origin:443", dst)
	}
}

func BenchmarkObserve(b *testing.B) {
	var s observerSlot
	s.p.Store(&observerBox{&countingObserver{}})
	d := Decision{Reason: "unfiled", Domain: "unfiled.cn"}
	dst := netip.MustParseAddrPort("192.0.2.1:443")
	b.ReportAllocs()
	for b.Loop() {
		s.observe(&d, "origin:443", dst)
	}
}
