package unfiled

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/icpgate/icpgate/admin"
)

func TestSince(t *testing.T) {
	c := newClock()
	r := New(Options{Now: c.Now})
	start := c.Now()
	r.Observe("unfiled", "a.cn", dstA)
	r.Observe("unfiled", "a.cn", dstA)
	c.advance(time.Minute)
	r.Observe("cancelled", "b.cn", dstB)
	tests := []struct {
		since time.Time
		max   int
		want  []string
	}{
		{start, 0, []string{"a.cn", "b.cn"}},
		{start, 1, []string{"a.cn"}},
		{start.Add(time.Second), 0, []string{"b.cn"}},
		{c.Now().Add(time.Nanosecond), 0, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, row := range r.Since(tt.since, tt.max) {
			got = append(got, row.Domain)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Since(%s, %d): got %q, want %q", tt.since.Format(time.RFC3339Nano), tt.max, got, tt.want)
		}
	}
}

// pushRecorder is a Pusher that keeps what it was given.
type pushRecorder struct {
	mu     sync.Mutex
	pushes []pushed
}

type pushed struct {
	node string
	rows []admin.ReportRow
}

func (p *pushRecorder) PushUnfiled(_ context.Context, node string, rows []admin.ReportRow) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pushes = append(p.pushes, pushed{node, rows})
	return nil
}

// TestRunPushAtExit checks that RunPush pushes the report, as the node,
// when its context ends (the data plane has drained).
func TestRunPushAtExit(t *testing.T) {
	c := newClock()
	r := New(Options{Now: c.Now, SaveInterval: time.Hour})
	r.ObserveUpstream("unfiled", "a.cn", "10.0.0.5:443")
	var p pushRecorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.RunPush(ctx, &p, "gw-1")
		close(done)
	}()
	cancel()
	<-done
	if len(p.pushes) != 1 || p.pushes[0].node != "gw-1" || len(p.pushes[0].rows) != 1 ||
		p.pushes[0].rows[0].Domain != "a.cn" || p.pushes[0].rows[0].Destinations[0] != "10.0.0.5:443" {
		t.Errorf("got pushes %+v, want one of a.cn by gw-1 at 10.0.0.5:443", p.pushes)
	}
}

func TestWriteRowsCSV(t *testing.T) {
	first := time.Date(2026, 1, 30, 16, 0, 0, 0, time.UTC)
	rows := []admin.ReportRow{
		{Domain: "a.cn", Reason: "unfiled", Hits: 14, HitsError: 4, FirstSeen: first, LastSeen: first.Add(time.Hour),
			Destinations: []string{"10.0.0.5:443", "10.0.0.6:443"}, Nodes: 2},
		{Domain: "=b.cn", Reason: "cancelled", Hits: 1, FirstSeen: first, LastSeen: first, Destinations: []string{}, Nodes: 1},
	}
	var b bytes.Buffer
	if err := WriteRowsCSV(&b, rows, time.FixedZone("CST", 8*3600)); err != nil {
		t.Fatal(err)
	}
	want := "domain,reason,hits,hits_error,first_seen,last_seen,destinations,nodes\n" +
		"a.cn,unfiled,14,4,2026-01-31T00:00:00+08:00,2026-01-31T01:00:00+08:00,10.0.0.5:443 10.0.0.6:443,2\n" +
		"'=b.cn,cancelled,1,0,2026-01-31T00:00:00+08:00,2026-01-31T00:00:00+08:00,,1\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
