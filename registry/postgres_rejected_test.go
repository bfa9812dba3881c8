package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/internal/syncbuf"
	"github.com/icpgate/icpgate/registry"
)

// logged returns the JSON log records in log with message msg.
func logged(log *syncbuf.Buffer, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(log.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

const rejectedMsg = "database row rejected; its domain has no record from it until it is fixed"

// TestPostgresRejectedRows: a row that fails validation gives its domain
// no record, in a full load and in an incremental sync over a record it
// had, so a running source and a fresh load (icpgate check) decide alike;
// the decision, its explanation and the log name the field and value; the
// snapshot counts the rows; fixing the row brings the record back; a bulk
// write of bad rows is refused by the mass-deletion guard.
func TestPostgresRejectedRows(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	var logs syncbuf.Buffer
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	run(t, src)
	waitReason(t, reg, "filed1.cn", "filed")

	// The seed's four bad rows, from the full load.
	type rej struct{ host, domain, field, value, reason string }
	seed := []rej{
		{"bad-number.cn", "bad-number.cn", "filing_number", "京ICP备123号", `filing_number "京ICP备123号": `},
		{"www.subdomain.cn", "www.subdomain.cn", "domain", "www.subdomain.cn", `domain "www.subdomain.cn": not a registrable domain (its registrable domain is subdomain.cn)`},
		{"late.cn", "late.cn", "rectify_deadline", "", "rectify_deadline: required for state rectifying"},
	}
	checkRejected := func(reg *registry.Registry, tc rej) {
		t.Helper()
		d := reg.Decide(tc.host)
		r := d.Rejected
		if r == nil || r.Domain != tc.domain || r.Field != tc.field || r.Value != tc.value || !strings.HasPrefix(r.Reason, tc.reason) {
			t.Errorf("Decide(%q).Rejected: got %+v, want %s %s %q, reason %q...", tc.host, r, tc.domain, tc.field, tc.value, tc.reason)
			return
		}
		if d.Record != nil || d.Reason != registry.ReasonUnfiled {
			t.Errorf("Decide(%q): got %s with record %v, want unfiled without a record", tc.host, d.Reason, d.Record)
		}
		want := "rejected:   database row rejected: " + r.Reason + "; the row is ignored (its domain has no record from it) until it is fixed in the filing database\n"
		if ex := d.Explain(); !strings.Contains(ex, "record:     none\n"+want) {
			t.Errorf("Explain(%q): got\n%s\nwant the line %q", tc.host, ex, want)
		}
	}
	for _, tc := range seed {
		checkRejected(reg, tc)
	}
	if n := reg.Snapshot().RejectedCount(); n != 4 {
		t.Errorf("rejected rows after the full load: got %d, want 4 (%+v)", n, reg.Snapshot().Rejected())
	}
	rows := logged(&logs, rejectedMsg)
	if len(rows) != 4 {
		t.Fatalf("logged rejections: got %d, want 4: %v", len(rows), rows)
	}
	if m := rows[0]; m["domain"] != "bad-number.cn" || m["field"] != "filing_number" || m["value"] != "京ICP备123号" ||
		!strings.HasPrefix(m["error"].(string), `filing_number "京ICP备123号": `) || m["level"] != "WARN" {
		t.Errorf("log: got %v, want the domain, field, value and error", m)
	}

	// An incremental sync over a record the source has: the record goes.
	db.exec(t, "UPDATE icpgate_records SET filing_number = '京ICP备1020693号' WHERE domain = 'filed5.cn'")
	waitReason(t, reg, "www.filed5.cn", registry.ReasonUnfiled)
	bad5 := rej{"www.filed5.cn", "filed5.cn", "filing_number", "京ICP备1020693号", `filing_number "京ICP备1020693号": `}
	checkRejected(reg, bad5)
	if n := reg.Snapshot().RejectedCount(); n != 5 {
		t.Errorf("rejected rows: got %d, want 5", n)
	}
	rows = logged(&logs, rejectedMsg)
	if m := rows[len(rows)-1]; m["domain"] != "filed5.cn" || m["field"] != "filing_number" || m["value"] != "京ICP备1020693号" {
		t.Errorf("log of the incremental rejection: got %v", m)
	}

	// A fresh load (what icpgate check does) decides every host alike.
	fresh := registry.New(registry.Options{CacheSize: -1})
	if err := newSource(t, fresh, db.dsn, nil).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"www.filed5.cn", "bad-number.cn", "www.subdomain.cn", "late.cn", "filed1.cn", "no deadline.cn"} {
		a, b := reg.Decide(h), fresh.Decide(h)
		if a.Explain() != b.Explain() {
			t.Errorf("%s: the running source says\n%s\na fresh load says\n%s", h, a.Explain(), b.Explain())
		}
	}

	// Fixed: the record is back, the rejection gone.
	db.exec(t, "UPDATE icpgate_records SET filing_number = '京ICP备10206937号-5' WHERE domain = 'filed5.cn'")
	waitReason(t, reg, "www.filed5.cn", registry.ReasonFiled)
	if d := reg.Decide("www.filed5.cn"); d.Rejected != nil {
		t.Errorf("after the fix: got %+v", *d.Rejected)
	}
	if n := reg.Snapshot().RejectedCount(); n != 4 {
		t.Errorf("rejected rows after the fix: got %d, want 4", n)
	}

	// Most filed rows broken at once: refused as a mass deletion; the
	// registry keeps serving.
	errs := src.Stats().Errors[registry.SyncErrMassDelete]
	db.exec(t, "UPDATE icpgate_records SET filing_number = 'x' WHERE domain LIKE 'filed%'")
	for start := time.Now(); src.Stats().Errors[registry.SyncErrMassDelete] == errs; time.Sleep(2 * time.Millisecond) {
		if time.Since(start) > 15*time.Second {
			t.Fatal("waited 15 s for the refusal")
		}
	}
	if d := reg.Decide("filed1.cn"); d.Reason != registry.ReasonFiled || d.Rejected != nil {
		t.Errorf("after a refused bulk write: got %s, rejected %v; want the last good record", d.Reason, d.Rejected)
	}
	if err := src.Stats().LastError; !errors.Is(err, registry.ErrMassDelete) {
		t.Errorf("last error: got %v, want %v", err, registry.ErrMassDelete)
	}
}
