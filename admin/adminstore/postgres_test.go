package adminstore_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/registry"
	"github.com/icpgate/icpgate/registry/pgschema"
)

// filingDB returns a migrated database, a connection to it and the store
// on it.
func filingDB(t *testing.T) (string, *pgx.Conn, *adminstore.Postgres) {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.Shared(t).NewDB(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := pgschema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	p, err := adminstore.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.Check(ctx); err != nil {
		t.Fatal(err)
	}
	return dsn, conn, p
}

func TestPostgresBackend(t *testing.T) {
	_, _, p := filingDB(t)
	testBackend(t, p)
}

func TestPostgresTokenStore(t *testing.T) {
	_, _, p := filingDB(t)
	testTokenStore(t, p)
}

// TestPostgresAuditAppendOnly: the database itself refuses to change or
// remove audit entries.
func TestPostgresAuditAppendOnly(t *testing.T) {
	_, conn, p := filingDB(t)
	ctx := context.Background()
	if err := p.AppendAudit(ctx, admin.AuditEntry{Who: "li.wei", Action: "login", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"UPDATE icpgate_audit SET who = 'someone else'",
		"UPDATE icpgate_audit SET who = 'x' WHERE false",
		"DELETE FROM icpgate_audit",
		"DELETE FROM icpgate_audit WHERE id = -1",
		"TRUNCATE icpgate_audit",
	} {
		_, err := conn.Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only refusal", sql, err)
		}
	}
	es, err := p.ListAudit(ctx, admin.AuditFilter{})
	if err != nil || len(es) != 1 || es[0].Who != "li.wei" {
		t.Fatalf("after the refused statements: got %+v, %v", es, err)
	}
}

// TestPostgresAuditInTransaction: when the audit entry cannot be written,
// the change is not made either.
func TestPostgresAuditInTransaction(t *testing.T) {
	_, conn, p := filingDB(t)
	ctx := context.Background()
	// A real failure inside the transaction, after the override's row:
	// the database refuses this one audit entry.
	if _, err := conn.Exec(ctx, `CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.who = 'boom' THEN RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_boom BEFORE INSERT ON icpgate_audit FOR EACH ROW EXECUTE FUNCTION refuse_boom();`); err != nil {
		t.Fatal(err)
	}
	var seq0 int64
	conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&seq0)
	o := registry.Override{Host: "example.cn", Scope: registry.ScopeDomain, Action: registry.ActionDeny, Reason: "r", Who: "boom"}
	if _, err := p.CreateOverride(ctx, o, admin.AuditEntry{Who: "boom", Action: "override.create"}); err == nil || !strings.Contains(err.Error(), "audit refused") {
		t.Fatalf("create with a refused audit entry: got %v", err)
	}
	created, err := p.CreateOverride(ctx, o, admin.AuditEntry{Who: "ops", Action: "override.create"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpdateOverride(ctx, created.ID, 1, func(r *registry.Override) error { r.Reason = "changed"; return nil },
		admin.AuditEntry{Who: "boom", Action: "override.update"}); err == nil {
		t.Fatal("update with a refused audit entry: got no error")
	}
	if _, err := p.DeleteOverride(ctx, created.ID, 1, admin.AuditEntry{Who: "boom", Action: "override.delete"}); err == nil {
		t.Fatal("delete with a refused audit entry: got no error")
	}
	os, err := p.ListOverrides(ctx, admin.OverrideFilter{})
	if err != nil || len(os) != 1 || os[0].Reason != "r" || os[0].Version != 1 {
		t.Fatalf("overrides: got %+v, %v, want only the audited create, unchanged", os, err)
	}
	es, _ := p.ListAudit(ctx, admin.AuditFilter{})
	if len(es) != 1 || es[0].Who != "ops" {
		t.Fatalf("audit: got %+v, want the one audited create", es)
	}
	// Rolled back changes leave no change row either (one for the create).
	var seq1 int64
	conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&seq1)
	if seq1 != seq0+1 {
		t.Fatalf("change sequence: went from %d to %d, want one change", seq0, seq1)
	}
}

// TestPostgresOtherAuditRows: rows other tools write (icpgate import, db
// confirm-deletes) list with their jsonb detail.
func TestPostgresOtherAuditRows(t *testing.T) {
	_, conn, p := filingDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `INSERT INTO icpgate_audit (who, action, target, detail)
		VALUES ('root', 'import', 'registry.csv', '{"rows": 3}')`); err != nil {
		t.Fatal(err)
	}
	es, err := p.ListAudit(ctx, admin.AuditFilter{Action: "import"})
	if err != nil || len(es) != 1 || es[0].Detail != `{"rows": 3}` || es[0].Outcome != "ok" || es[0].Target != "registry.csv" {
		t.Fatalf("import row: got %+v, %v", es, err)
	}
}

// TestPostgresUnavailable: a database that does not answer is
// ErrUnavailable (the API's 503), from every method.
func TestPostgresUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p, err := adminstore.OpenPostgres(ctx, "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatalf("open with the database down: %v (a gateway must start)", err)
	}
	defer p.Close()
	o := registry.Override{Host: "example.cn", Scope: registry.ScopeDomain, Action: registry.ActionDeny, Reason: "r"}
	a := admin.AuditEntry{Who: "x", Action: "override.create", Outcome: "ok"}
	calls := map[string]func() error{
		"Check":          func() error { return p.Check(ctx) },
		"ListOverrides":  func() error { _, err := p.ListOverrides(ctx, admin.OverrideFilter{}); return err },
		"GetOverride":    func() error { _, err := p.GetOverride(ctx, "1"); return err },
		"CreateOverride": func() error { _, err := p.CreateOverride(ctx, o, a); return err },
		"UpdateOverride": func() error { _, err := p.UpdateOverride(ctx, "1", 1, nil, a); return err },
		"DeleteOverride": func() error { _, err := p.DeleteOverride(ctx, "1", 1, a); return err },
		"Overrides":      func() error { _, err := p.Overrides(ctx); return err },
		"AppendAudit":    func() error { return p.AppendAudit(ctx, a) },
		"ListAudit":      func() error { _, err := p.ListAudit(ctx, admin.AuditFilter{}); return err },
		"Lookup":         func() error { _, err := p.Lookup(ctx, [32]byte{1}); return err },
		"Create":         func() error { _, tok := newToken(t, "x", admin.RoleViewer, t0); return p.Create(ctx, tok) },
		"List":           func() error { _, err := p.List(ctx); return err },
		"Revoke":         func() error { return p.Revoke(ctx, "x") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, adminstore.ErrUnavailable) {
			t.Errorf("%s: got %v, want ErrUnavailable", name, err)
		}
	}

	// A database that is up but not migrated is unavailable too, and
	// says so.
	dsn := pgtest.Shared(t).NewDB(t)
	q, err := adminstore.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Check(ctx); !errors.Is(err, adminstore.ErrUnavailable) || !errors.Is(err, pgschema.ErrNotMigrated) {
		t.Errorf("Check on an unmigrated database: got %v, want ErrUnavailable and ErrNotMigrated", err)
	}
	if _, err := q.ListOverrides(ctx, admin.OverrideFilter{}); !errors.Is(err, adminstore.ErrUnavailable) || !strings.Contains(err.Error(), "db migrate") {
		t.Errorf("ListOverrides on an unmigrated database: got %v, want ErrUnavailable saying to migrate", err)
	}
	if _, err := adminstore.OpenPostgres(ctx, "postgres://%zz"); err == nil || errors.Is(err, adminstore.ErrUnavailable) {
		t.Errorf("a malformed DSN: got %v, want a configuration error", err)
	}
}

// TestPostgresPropagation is the cross-gateway proof: an override stored
// through one gateway's admin store reaches another gateway's registry
// (registry.PostgresSource on the same database) by NOTIFY, polling being
// an hour away.
func TestPostgresPropagation(t *testing.T) {
	dsn, conn, p := filingDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `INSERT INTO icpgate_records (domain, state) VALUES ('pending.cn', 'filing_pending')`); err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{})
	src, err := registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: dsn, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(runCtx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	wait := func(host string, want registry.Reason) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 15*time.Second {
			if d := reg.Decide(host); d.Reason == want {
				return time.Since(start)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("Decide(%s): got %s, want %s (waited 15 s)", host, reg.Decide(host).Reason, want)
		return 0
	}
	wait("www.pending.cn", registry.ReasonFilingPending)

	o, err := p.CreateOverride(ctx, registry.Override{Host: "pending.cn", Scope: registry.ScopeDomain, Action: registry.ActionAllow,
		Expires: time.Now().Add(24 * time.Hour), Reason: "接入备案初审通过", Ticket: "SR-1", Who: "li.wei"},
		admin.AuditEntry{Who: "li.wei", Action: "override.create"})
	if err != nil {
		t.Fatal(err)
	}
	created := wait("www.pending.cn", registry.ReasonOverrideAllow)
	d := reg.Decide("www.pending.cn")
	if d.Override == nil || d.Override.ID != o.ID || d.Override.Ticket != "SR-1" {
		t.Fatalf("decision: got override %+v, want %s", d.Override, o.ID)
	}
	if _, err := p.UpdateOverride(ctx, o.ID, 1, func(r *registry.Override) error {
		r.Expires = time.Now().Add(-time.Second) // expire it now
		return nil
	}, admin.AuditEntry{Who: "li.wei", Action: "override.update"}); err != nil {
		t.Fatal(err)
	}
	updated := wait("www.pending.cn", registry.ReasonFilingPending)
	st := src.Stats()
	if st.FullLoads != 1 || st.Incremental < 2 {
		t.Errorf("sync stats: %d full loads, %d incremental, want 1 and at least 2 (NOTIFY)", st.FullLoads, st.Incremental)
	}
	t.Logf("override visible on the other gateway after %v, its expiry after %v", created, updated)
}
