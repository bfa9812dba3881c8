package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/internal/pgtest"
)

// TestDBMergedUnfiledReport runs the control planes of two gateways on one
// filing database: each pushes its report when it stops, and the admin
// API's report on either is the sum, with the node count, in JSON and CSV.
func TestDBMergedUnfiledReport(t *testing.T) {
	dsn := pgtest.New(t).NewDB(t)
	if code, _, errOut := runCmd(t, dbCmd, "migrate", "-dsn", dsn); code != exitOK {
		t.Fatalf("migrate: %s", errOut)
	}
	ctx := context.Background()
	open := func(node string) (*controlPlane, admin.Reporter) {
		t.Helper()
		cfg := &Config{Node: node}
		cfg.Registry.Postgres.DSN = dsn
		cfg.Policy.TimeZone = "Asia/Shanghai"
		cp, err := openControlPlane(ctx, cfg, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cp.close() })
		return cp, cp.adminConfig(cfg, admin.Config{}).Report
	}
	stop := func(cp *controlPlane) {
		t.Helper()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			cp.runReport(rctx)
			close(done)
		}()
		cancel() // the data plane has drained: the report is pushed
		<-done
	}

	a, rep := open("edge-a")
	b, _ := open("edge-b")
	for range 3 {
		a.report.ObserveUpstream("unfiled", "unfiled.cn", "10.0.0.5:443")
	}
	b.report.ObserveUpstream("unfiled", "unfiled.cn", "10.0.0.6:443")
	b.report.ObserveUpstream("cancelled", "cancelled.cn", "10.0.0.6:443")
	stop(a)
	stop(b)
	stop(a) // pushed again: absolute counts, nothing doubles

	rows := rep.Top(10, "")
	if len(rows) != 2 || rows[0].Domain != "unfiled.cn" || rows[0].Hits != 4 || rows[0].Nodes != 2 ||
		strings.Join(rows[0].Destinations, " ") != "10.0.0.5:443 10.0.0.6:443" ||
		rows[1].Domain != "cancelled.cn" || rows[1].Hits != 1 || rows[1].Nodes != 1 {
		t.Errorf("merged report: got %+v, want unfiled.cn 4 hits on 2 nodes at both upstreams, cancelled.cn 1 on 1", rows)
	}
	var csv bytes.Buffer
	if err := rep.WriteCSV(&csv, "cancelled"); err != nil {
		t.Fatal(err)
	}
	if want := "domain,reason,hits,hits_error,first_seen,last_seen,destinations,nodes\ncancelled.cn,cancelled,1,0,"; !strings.HasPrefix(csv.String(), want) ||
		!strings.Contains(csv.String(), "+08:00,10.0.0.6:443,1\n") {
		t.Errorf("merged CSV: got %q, want it to start %q and end in +08:00, the upstream and 1 node", csv.String(), want)
	}
}
