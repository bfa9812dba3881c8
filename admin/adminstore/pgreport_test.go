package adminstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/icpgate/icpgate/admin"
)

// TestPostgresUnfiledReport pushes two nodes' reports and checks the sum:
// a push repeated counts once, a node's new count of a domain (pushed out
// and back, or a restart without report.file) adds to its old one, and
// the reason, times, destinations and node count are merged.
func TestPostgresUnfiledReport(t *testing.T) {
	_, _, p := filingDB(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	row := func(domain, reason string, hits, hitsErr uint64, first, last int, dests ...string) admin.ReportRow {
		return admin.ReportRow{Domain: domain, Reason: reason, Hits: hits, HitsError: hitsErr,
			FirstSeen: at(first), LastSeen: at(last), Destinations: dests}
	}
	push := func(node string, rows ...admin.ReportRow) {
		t.Helper()
		if err := p.PushUnfiled(ctx, node, rows); err != nil {
			t.Fatalf("push %s: %v", node, err)
		}
	}
	check := func(step string, n int, reason string, want ...admin.ReportRow) {
		t.Helper()
		got, err := p.UnfiledTop(ctx, n, reason)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if len(got) == 0 && len(want) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got\n%+v\nwant\n%+v", step, got, want)
		}
	}
	merged := func(r admin.ReportRow, nodes int) admin.ReportRow {
		if r.Destinations == nil {
			r.Destinations = []string{}
		}
		r.Nodes = nodes
		return r
	}

	check("empty", 0, "")
	a1 := row("x.cn", "unfiled", 5, 0, 0, 1, "10.0.0.5:443")
	a2 := row("y.cn", "cancelled", 2, 0, 0, 2)
	push("a", a1, a2)
	push("a", a1, a2) // a retry: absolute counts, nothing doubles
	check("one node", 0, "", merged(a1, 1), merged(a2, 1))

	b1 := row("x.cn", "no_access", 3, 1, 2, 3, "10.0.0.6:443", "10.0.0.5:443")
	push("b", b1)
	x := row("x.cn", "no_access", 8, 1, 0, 3, "10.0.0.5:443", "10.0.0.6:443")
	check("two nodes", 0, "", merged(x, 2), merged(a2, 1))
	check("top 1", 1, "", merged(x, 2))
	check("by reason", 0, "cancelled", merged(a2, 1))
	check("by the reason one node saw first", 0, "unfiled")

	// x.cn came back into a's report (a later first_seen): a new count,
	// with an inherited error, added to a's 5; then it grows.
	push("a", row("x.cn", "unfiled", 4, 3, 4, 5, "10.0.0.7:443"))
	push("a", row("x.cn", "unfiled", 6, 3, 4, 6, "10.0.0.7:443"))
	x = row("x.cn", "unfiled", 5+6+3, 3+1, 0, 6, "10.0.0.5:443", "10.0.0.6:443", "10.0.0.7:443")
	check("new count", 0, "unfiled", merged(x, 2))
	// A push of the old count, late, changes nothing.
	push("a", a1)
	check("stale push", 0, "unfiled", merged(x, 2))
}
