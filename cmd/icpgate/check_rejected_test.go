package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/internal/pgtest"
)

// TestCheckPGRejectedRow: a database row whose filing number fails
// validation is visible, and decided alike, in the running gateway (an
// incremental sync over the record it had) and in `icpgate check` (a
// fresh full load): the same verdict, the same explanation with
// "database row rejected", and a gauge counting the row, present at 0
// from the start.
func TestCheckPGRejectedRow(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDB(t)
	if code, _, errOut := runCmd(t, dbCmd, "migrate", "-dsn", dsn); code != exitOK {
		t.Fatal(errOut)
	}
	if code, _, errOut := runCmd(t, importCmd, "-dsn", dsn, filepath.Join("testdata", "import.jsonl")); code != exitOK {
		t.Fatal(errOut)
	}
	o := startOrigin(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "icpgate.yaml")
	cfg := fmt.Sprintf(`node: edge-1
registry:
  postgres:
    dsn: %q
    poll_interval: 1s
    max_delete_fraction: 0.5 # one record of five
  store: icpgate.db
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
log:
  format: json
`, dsn, o.http.Addr().String())
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	g, _ := startServe(t, path)
	gauge := func(want int) {
		t.Helper()
		exp := fmt.Sprintf(`
# HELP icpgate_registry_rejected_rows %s
# TYPE icpgate_registry_rejected_rows gauge
icpgate_registry_rejected_rows %d
`, rejectedHelp(t, g), want)
		if err := testutil.GatherAndCompare(g.prom, strings.NewReader(exp), "icpgate_registry_rejected_rows"); err != nil {
			t.Error(err)
		}
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 15 s for %s", what)
			}
		}
	}
	wait("the first load", func() bool { return g.reg.Decide("filed.cn").Reason == "filed" })
	gauge(0)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE icpgate_records SET filing_number = '京ICP备123号' WHERE domain = 'filed.cn'"); err != nil {
		t.Fatal(err)
	}
	wait("the rejection", func() bool { return g.reg.Decide("www.filed.cn").Rejected != nil })
	gauge(1)

	d := g.reg.Decide("www.filed.cn")
	var gw bytes.Buffer
	json.NewEncoder(&gw).Encode(admin.Explain(&d)) // what /v1/explain answers
	code, out, errOut := runCmd(t, checkCmd, "-config", path, "--json", "www.filed.cn")
	if code != exitBlocked || out != gw.String() {
		t.Errorf("check --json: got exit %d, %s (stderr %q)\nthe running gateway explains: %s", code, out, errOut, gw.String())
	}
	var e admin.Explanation
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	if r := e.RejectedRow; e.Verdict != "block" || e.Reason != "unfiled" || e.Record != nil || r == nil ||
		r.Domain != "filed.cn" || r.Field != "filing_number" || r.Value != "京ICP备123号" ||
		!strings.HasPrefix(r.Error, `filing_number "京ICP备123号": `) {
		t.Errorf("check --json: got %+v (rejected row %+v), want a block as unfiled with the rejected row", e, r)
	}

	code, out, _ = runCmd(t, checkCmd, "-config", path, "www.filed.cn")
	for _, line := range []string{
		"record:     none\n",
		`rejected:   database row rejected: filing_number "京ICP备123号": `,
		"; the row is ignored (its domain has no record from it) until it is fixed in the filing database\n",
		"verdict:    block (unfiled)\n",
		`fix:        ask the filing team to correct filing_number "京ICP备123号" of the row for filed.cn in the filing database; the gateways use the row once it is valid` + "\n",
	} {
		if code != exitBlocked || !strings.Contains(out, line) {
			t.Errorf("check: got exit %d,\n%s\nwant exit %d and %q", code, out, exitBlocked, line)
		}
	}

	// Fixed: both pass again, the gauge is back to 0.
	if _, err := conn.Exec(ctx, "UPDATE icpgate_records SET filing_number = '京ICP备10206937号-1' WHERE domain = 'filed.cn'"); err != nil {
		t.Fatal(err)
	}
	wait("the fix", func() bool { return g.reg.Decide("www.filed.cn").Reason == "filed" })
	if d := g.reg.Decide("www.filed.cn"); d.Rejected != nil {
		t.Errorf("after the fix: still rejected: %+v", *d.Rejected)
	}
	gauge(0)
	if code, out, _ := runCmd(t, checkCmd, "-config", path, "www.filed.cn"); code != exitOK || strings.Contains(out, "rejected") {
		t.Errorf("check after the fix: got exit %d,\n%s", code, out)
	}
}

func checkCmd(ctx context.Context, args []string, out, errb *bytes.Buffer) int {
	return cmdCheck(ctx, args, out, errb)
}

// rejectedHelp returns the gauge's Help text as registered.
func rejectedHelp(t *testing.T, g *Gateway) string {
	t.Helper()
	mfs, err := g.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "icpgate_registry_rejected_rows" {
			return mf.GetHelp()
		}
	}
	t.Fatal("icpgate_registry_rejected_rows is not exported")
	return ""
}
