package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// logLines decodes JSON log lines.
func logLines(t testing.TB, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// fakeClockBlockLog returns a block log on a settable clock whose summary
// timer only fires when the test calls fire.
func fakeClockBlockLog(w io.Writer, rate float64, burst int) (b *blockLog, now *int64, fire func() bool) {
	b = newBlockLog(slog.New(slog.NewJSONHandler(w, nil)), rate, burst)
	now = new(int64)
	b.now = func() int64 { return *now }
	var pending func()
	b.after = func(_ time.Duration, f func()) { pending = f }
	fire = func() bool {
		if pending == nil {
			return false
		}
		f := pending
		pending = nil
		f()
		return true
	}
	return b, now, fire
}

func TestBlockLogBucket(t *testing.T) {
	ms := int64(time.Millisecond)
	tests := []struct {
		name  string
		rate  float64
		burst int
		at    []int64 // event times in ms
		want  string  // w: written, s: left out
	}{
		{"burst then refuse", 10, 3, []int64{0, 0, 0, 0, 0}, "wwwss"},
		{"one token per 100ms", 10, 1, []int64{0, 50, 99, 100, 150, 200}, "wsswsw"},
		{"bucket refills to the burst only", 10, 2, []int64{0, 0, 0, 1000, 1000, 1000}, "wwswws"},
		{"steady rate below the limit", 10, 1, []int64{0, 100, 200, 300, 400}, "wwwww"},
		{"flood at 1000/s keeps 10/s", 10, 1, func() []int64 {
			var at []int64
			for i := int64(0); i < 300; i++ {
				at = append(at, i) // 300 events in 300 ms
			}
			return at
		}(), "w" + strings.Repeat("s", 99) + "w" + strings.Repeat("s", 99) + "w" + strings.Repeat("s", 99)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			b, now, _ := fakeClockBlockLog(&buf, tt.rate, tt.burst)
			var got strings.Builder
			for _, at := range tt.at {
				*now = at * ms
				before := buf.Len()
				b.Log("tls", "tls", "x.cn", "unfiled", netip.MustParseAddrPort("192.0.2.1:1234"))
				if buf.Len() > before {
					got.WriteByte('w')
				} else {
					got.WriteByte('s')
				}
			}
			if got.String() != tt.want {
				t.Errorf("got %q, want %q", got.String(), tt.want)
			}
		})
	}
}

func TestBlockLogLineAndSummary(t *testing.T) {
	var buf bytes.Buffer
	b, now, fire := fakeClockBlockLog(&buf, 10, 1)
	client := netip.MustParseAddrPort("[2001:db8::7]:443")
	b.Log("edge", "http", "Unfiled.CN", "unfiled", client) // written
	b.Log("edge", "http", "a.cn", "unfiled", client)       // left out
	b.Log("edge", "http", "b.cn", "unfiled", client)       // left out
	*now = int64(100 * time.Millisecond)
	b.Log("tls", "tls", "c.cn", "cancelled", client) // written, carries 2
	b.Log("tls", "tls", "d.cn", "cancelled", client) // left out
	*now = int64(1100 * time.Millisecond)
	if !fire() { // the summary timer armed by the first left-out line
		t.Fatal("no summary scheduled")
	}
	if fire() {
		t.Error("a second summary was scheduled, want one")
	}

	lines := logLines(t, buf.Bytes())
	want := []map[string]any{
		{"level": "INFO", "msg": "blocked", "listener": "edge", "protocol": "http", "host": "Unfiled.CN", "reason": "unfiled", "client": "[2001:db8::7]:443"},
		{"level": "INFO", "msg": "blocked", "listener": "tls", "protocol": "tls", "host": "c.cn", "reason": "cancelled", "client": "[2001:db8::7]:443", "suppressed": 2.0},
		{"level": "INFO", "msg": "block log lines suppressed", "suppressed": 1.0, "interval_seconds": 1.0},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		delete(lines[i], "time")
		got, _ := json.Marshal(lines[i])
		exp, _ := json.Marshal(w)
		if string(got) != string(exp) {
			t.Errorf("line %d: got %s, want %s", i, got, exp)
		}
	}

	// Nothing left out since: a later summary writes nothing.
	buf.Reset()
	b.summary()
	if buf.Len() != 0 {
		t.Errorf("got %q, want no summary without left-out lines", buf.String())
	}
}

func TestBlockLogDisabled(t *testing.T) {
	var buf bytes.Buffer
	warn := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for _, b := range []*blockLog{nil, newBlockLog(nil, 10, 1), newBlockLog(warn, 0, 1), newBlockLog(warn, 10, 1)} {
		b.Log("tls", "tls", "x.cn", "unfiled", netip.AddrPort{})
	}
	if buf.Len() != 0 {
		t.Errorf("got %q, want nothing below the logger's level", buf.String())
	}
}

func TestClipHost(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"filed.cn", "filed.cn"},
		{strings.Repeat("a", 253), strings.Repeat("a", 253)},
		{long, strings.Repeat("a", 253) + "…"},
		// 251 ASCII bytes then 3-byte runes: the cut keeps whole runes.
		{strings.Repeat("a", 251) + strings.Repeat("例", 5), strings.Repeat("a", 251) + "…"},
		{strings.Repeat("a", 250) + strings.Repeat("例", 5), strings.Repeat("a", 250) + "例…"},
		// Not UTF-8: cut at the cap.
		{strings.Repeat("\xff", 300), strings.Repeat("\xff", 253) + "…"},
	}
	for _, tt := range tests {
		if got := clipHost(tt.in); got != tt.want {
			t.Errorf("clipHost(%d bytes): got %q, want %q", len(tt.in), got, tt.want)
		}
	}
}

// TestBlockLogConcurrent has every left-out line accounted for, under the
// race detector, with many goroutines logging at once.
func TestBlockLogConcurrent(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	b, _, fire := fakeClockBlockLog(w, 10, 5) // the clock stands still: 5 tokens in all
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				b.Log("tls", "tls", "x.cn", "unfiled", netip.AddrPort{})
			}
		}()
	}
	wg.Wait()
	fire()
	written, suppressed := 0, 0.0
	for _, l := range logLines(t, buf.Bytes()) {
		if l["msg"] == "blocked" {
			written++
		}
		if n, ok := l["suppressed"].(float64); ok {
			suppressed += n
		}
	}
	if written != 5 || written+int(suppressed) != workers*each {
		t.Errorf("got %d written + %v left out, want 5 + %d", written, suppressed, workers*each-5)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestBlockLogSuppressedAllocs: a left-out line allocates nothing, so a
// flood of blocks costs the log no garbage.
func TestBlockLogSuppressedAllocs(t *testing.T) {
	b := newBlockLog(slog.New(slog.NewJSONHandler(io.Discard, nil)), 1, 1)
	client := netip.MustParseAddrPort("192.0.2.1:1")
	b.Log("tls", "tls", "x.cn", "unfiled", client) // takes the only token
	b.armed.Store(true)                            // no real timer in the measurement
	if n := testing.AllocsPerRun(1000, func() {
		b.Log("tls", "tls", "x.cn", "unfiled", client)
	}); n != 0 {
		t.Errorf("got %v allocations per left-out line, want 0", n)
	}
}

func BenchmarkBlockLogSuppressed(b *testing.B) {
	bl := newBlockLog(slog.New(slog.NewJSONHandler(io.Discard, nil)), 1, 1)
	client := netip.MustParseAddrPort("192.0.2.1:1")
	bl.Log("tls", "tls", "x.cn", "unfiled", client)
	bl.armed.Store(true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bl.Log("tls", "tls", "x.cn", "unfiled", client)
		}
	})
}

func BenchmarkBlockLogWritten(b *testing.B) {
	bl := newBlockLog(slog.New(slog.NewJSONHandler(io.Discard, nil)), 1e12, 1)
	client := netip.MustParseAddrPort("192.0.2.1:1")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bl.Log("tls", "tls", "www.unfiled-example.cn", "unfiled", client)
	}
}

// syncWriter is a bytes.Buffer safe for the server's goroutines and the
// test.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.b.Bytes())
}

// startLoggingGateway runs a Server for cfg logging JSON at Info into the
// returned writer.
func startLoggingGateway(t *testing.T, cfg Config, d Decider) (*Server, *syncWriter) {
	t.Helper()
	w := &syncWriter{}
	srv, err := NewServer(cfg, d, nil, slog.New(slog.NewJSONHandler(w, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return srv, w
}

// blockLines returns the "blocked" lines of a JSON log and the left-out
// count its lines and summaries report.
func blockLines(t *testing.T, b []byte) (lines []map[string]any, suppressed int) {
	t.Helper()
	for _, l := range logLines(t, b) {
		switch l["msg"] {
		case "blocked":
			lines = append(lines, l)
		case "block log lines suppressed":
		default:
			continue
		}
		if n, ok := l["suppressed"].(float64); ok {
			suppressed += int(n)
		}
	}
	return lines, suppressed
}

// waitAccounted waits until the log accounts for want blocks (written or
// left out), or fails.
func waitAccounted(t *testing.T, w *syncWriter, want int) ([]map[string]any, int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines, suppressed := blockLines(t, w.bytes())
		if len(lines)+suppressed >= want || time.Now().After(deadline) {
			if len(lines)+suppressed != want {
				t.Errorf("got %d lines + %d left out, want %d blocks accounted for; log:\n%s", len(lines), suppressed, want, w.bytes())
			}
			return lines, suppressed
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBlockLogTLS sends blocked and passing TLS handshakes from a real Go
// client through a real Server: each block is logged or counted as left
// out, with host, reason, client address and listener; a pass logs
// nothing at Info.
func TestBlockLogTLS(t *testing.T) {
	up := newTLSUpstream(t, "origin", nil)
	srv, w := startLoggingGateway(t, tlsListener(up.addr()), mapDecider{filed: map[string]string{"filed.cn": ""}})
	addr := srv.Addr("tls").String()

	c, err := dialTLS(addr, "filed.cn")
	if err != nil {
		t.Fatalf("filed.cn: %v", err)
	}
	c.Close()
	const blocks = blockLogBurst + 10
	for i := 0; i < blocks; i++ {
		if c, err := dialTLS(addr, "unfiled.cn"); err == nil {
			c.Close()
			t.Fatal("unfiled.cn: got a handshake, want a block")
		}
	}
	lines, suppressed := waitAccounted(t, w, blocks)
	if len(lines) < blockLogBurst || suppressed == 0 {
		t.Errorf("got %d lines and %d left out, want at least the burst (%d) written and some left out", len(lines), suppressed, blockLogBurst)
	}
	for _, l := range lines {
		client, _ := l["client"].(string)
		ap, err := netip.ParseAddrPort(client)
		if got := fmt.Sprintf("%v %v %v %v %v %v", l["level"], l["component"], l["listener"], l["protocol"], l["host"], l["reason"]); got != "INFO proxy tls tls unfiled.cn unfiled" ||
			err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") || ap.Port() == 0 {
			t.Errorf("got %q client %q, want %q from 127.0.0.1:port", got, client, "INFO proxy tls tls unfiled.cn unfiled")
			break
		}
	}
	for _, l := range logLines(t, w.bytes()) {
		if l["level"] == "INFO" && strings.Contains(fmt.Sprint(l), "filed.cn") && l["host"] != "unfiled.cn" {
			t.Errorf("got an Info line for a passing connection: %v", l)
		}
	}
}

// TestBlockLogHTTP sends blocked and passing requests from Go's net/http
// client through a real http listener: each blocked request is logged or
// counted, with the Host as sent (cut when absurdly long); a passing
// request logs nothing at Info.
func TestBlockLogHTTP(t *testing.T) {
	upstream := newHTTPTestUpstream(t)
	cfg := Config{Listeners: []ListenerConfig{{Name: "web", Protocol: "http", Address: "127.0.0.1:0", Upstream: upstream}}}
	srv, w := startLoggingGateway(t, cfg, mapDecider{filed: map[string]string{"filed.cn": ""}})
	addr := srv.Addr("web").String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func(host string) int {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET Host %.40s: %v", host, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("www.filed.cn"); code != 200 {
		t.Fatalf("filed: got %d, want 200", code)
	}
	long := strings.Repeat("a", 400) + ".cn"
	hosts := []string{"Unfiled.CN", long}
	for len(hosts) < blockLogBurst+10 {
		hosts = append(hosts, "unfiled.cn")
	}
	for _, h := range hosts {
		if code := get(h); code != 403 {
			t.Fatalf("%.40s: got %d, want 403", h, code)
		}
	}
	lines, _ := waitAccounted(t, w, len(hosts))
	if len(lines) < 2 {
		t.Fatalf("got %d lines, want at least 2", len(lines))
	}
	want := []string{"INFO proxy web http Unfiled.CN unfiled", "INFO proxy web http " + strings.Repeat("a", 253) + "… unfiled"}
	for i, w := range want {
		l := lines[i]
		got := fmt.Sprintf("%v %v %v %v %v %v", l["level"], l["component"], l["listener"], l["protocol"], l["host"], l["reason"])
		client, _ := l["client"].(string)
		ap, err := netip.ParseAddrPort(client)
		if got != w || err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("line %d: got %q client %q, want %q from 127.0.0.1", i, got, client, w)
		}
	}
	for _, l := range logLines(t, w.bytes()) {
		if l["level"] == "INFO" && strings.Contains(fmt.Sprint(l), "www.filed.cn") {
			t.Errorf("got an Info line for a passing request: %v", l)
		}
	}
}
