package registry_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/registry"
	"github.com/icpgate/icpgate/registry/pgschema"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// filingDB is a migrated, seeded database and a connection to change it.
type filingDB struct {
	dsn  string
	conn *pgx.Conn
}

func newFilingDB(t testing.TB, srv *pgtest.Server) *filingDB {
	t.Helper()
	dsn := srv.NewDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := pgschema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join("testdata", "postgres", "seed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(seed)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return &filingDB{dsn: dsn, conn: conn}
}

// exec runs sql, reconnecting once when the server restarted since.
func (db *filingDB) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	_, err := db.conn.Exec(ctx, sql, args...)
	if err != nil && db.conn.IsClosed() {
		c, cerr := pgx.Connect(ctx, db.dsn)
		if cerr != nil {
			t.Fatal(cerr)
		}
		db.conn = c
		t.Cleanup(func() { c.Close(context.Background()) })
		_, err = db.conn.Exec(ctx, sql, args...)
	}
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func newSource(t *testing.T, reg *registry.Registry, dsn string, mod func(*registry.PostgresOptions)) *registry.PostgresSource {
	t.Helper()
	opts := registry.PostgresOptions{DSN: dsn, PollInterval: time.Minute, MaxDeleteFraction: 0.5}
	if mod != nil {
		mod(&opts)
	}
	src, err := registry.NewPostgresSource(reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// run starts src.Run and stops it when the test ends.
func run(t *testing.T, src *registry.PostgresSource) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitReason waits until host decides with reason want, and returns how
// long that took.
func waitReason(t *testing.T, reg *registry.Registry, host string, want registry.Reason) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		d := reg.Decide(host)
		if d.Reason == want {
			return time.Since(start)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("Decide(%q): got %q, want %q (waited 15 s)", host, d.Reason, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestPostgresFullLoad(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, nil)
	if err := src.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := reg.Snapshot().Len(), 20; got != want {
		t.Errorf("records: got %d, want %d", got, want)
	}
	st := src.Stats()
	if st.InvalidRows != 4 || st.Errors[registry.SyncErrInvalidRow] != 4 {
		t.Errorf("invalid rows: got %d (errors %v), want 4", st.InvalidRows, st.Errors)
	}
	if st.FullLoads != 1 || st.Cursor == 0 || st.LastSuccess.IsZero() {
		t.Errorf("stats: got %+v, want one full load, a cursor, a success time", st)
	}
	for _, tc := range []struct{ host, want string }{
		{"www.filed3.cn", "filed"},
		{"例子.中国", "filed"},
		{"rectifying.com.cn", "rectifying"},
		{"noaccess.cn", "no_access"},
		{"black.cn", "blacklisted"},
		{"bad-number.cn", "unfiled"},
		{"late.cn", "unfiled"},
		{"denied.filed1.cn", "override_deny"},
		{"filed1.cn", "filed"},
	} {
		if got := reg.Decide(tc.host).Reason; string(got) != tc.want {
			t.Errorf("Decide(%q): got %q, want %q", tc.host, got, tc.want)
		}
	}
}

func TestPostgresNotConfigured(t *testing.T) {
	srv := pgtest.Shared(t)
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, srv.NewDB(t), nil) // not migrated
	err := src.Sync(context.Background())
	if !errors.Is(err, pgschema.ErrNotMigrated) {
		t.Fatalf("Sync on an unmigrated database: got %v, want ErrNotMigrated", err)
	}
	if got := src.Stats().Errors[registry.SyncErrSchema]; got != 1 {
		t.Errorf("schema errors: got %d, want 1", got)
	}
	if reg.Loaded() {
		t.Error("registry loaded from an unmigrated database")
	}
}

// TestPostgresIncremental: insert, update and delete reach decisions by
// NOTIFY (the poll interval is a minute), and the lag is reported.
func TestPostgresIncremental(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	reg := registry.New(registry.Options{})
	var mu sync.Mutex
	var lags []time.Duration
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) {
		o.OnLag = func(d time.Duration) {
			mu.Lock()
			lags = append(lags, d)
			mu.Unlock()
		}
	})
	run(t, src)
	waitReason(t, reg, "filed1.cn", "filed")
	steps := []struct {
		sql        string
		host, want string
	}{
		{"INSERT INTO icpgate_records (domain, state, filing_number) VALUES ('new.cn', 'filed', '粤ICP备12345678号-1')", "www.new.cn", "filed"},
		{"UPDATE icpgate_records SET state = 'access_revoked' WHERE domain = 'filed2.cn'", "filed2.cn", "access_revoked"},
		{"DELETE FROM icpgate_records WHERE domain = 'filed3.cn'", "filed3.cn", "unfiled"},
		{"INSERT INTO icpgate_overrides (host, scope, action) VALUES ('filed4.cn', 'domain', 'deny')", "a.filed4.cn", "override_deny"},
		{"UPDATE icpgate_records SET filing_number = 'bad' WHERE domain = 'filed5.cn'", "filed5.cn", "unfiled"}, // rejected: no record (TestPostgresRejectedRows)
		{"UPDATE icpgate_records SET domain = 'renamed.cn' WHERE domain = 'filed6.cn'", "renamed.cn", "filed"},
	}
	for _, s := range steps {
		start := time.Now()
		db.exec(t, s.sql)
		waitReason(t, reg, s.host, registry.Reason(s.want))
		t.Logf("%-90.90s visible after %v", s.sql, time.Since(start))
	}
	waitReason(t, reg, "filed6.cn", "unfiled")
	st := src.Stats()
	if st.InvalidRows != 5 { // 4 from the seed's full load, 1 update
		t.Errorf("invalid rows: got %d, want 5", st.InvalidRows)
	}
	if st.Incremental == 0 || st.FullLoads != 1 {
		t.Errorf("syncs: got %d incremental, %d full, want some incremental and 1 full", st.Incremental, st.FullLoads)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lags) == 0 {
		t.Fatal("OnLag never called")
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	t.Logf("change lag over %d changes: p50 %v, max %v", len(lags), lags[len(lags)/2], lags[len(lags)-1])
}

// TestPostgresPolling: with NOTIFY unavailable (changes made while the
// source sleeps are still found), the poll catches up.
func TestPostgresPolling(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) { o.PollInterval = 50 * time.Millisecond })
	run(t, src)
	waitReason(t, reg, "filed1.cn", "filed")
	// A change whose NOTIFY goes to another channel: only polling finds it.
	db.exec(t, "ALTER TABLE icpgate_records DISABLE TRIGGER icpgate_records_upd")
	db.exec(t, `BEGIN;
		UPDATE icpgate_records SET state = 'cancelled' WHERE domain = 'filed7.cn';
		UPDATE icpgate_change_seq SET last = last + 1;
		INSERT INTO icpgate_changes (seq, kind, op, domain) SELECT last, 'r', 'U', 'filed7.cn' FROM icpgate_change_seq;
		COMMIT`)
	waitReason(t, reg, "filed7.cn", "cancelled")
}

// TestPostgresGapResync: a change history pruned past the cursor makes the
// source reload in full.
func TestPostgresGapResync(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, nil)
	ctx := context.Background()
	if err := src.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	db.exec(t, "UPDATE icpgate_records SET state = 'cancelled' WHERE domain = 'filed8.cn'")
	db.exec(t, "DELETE FROM icpgate_changes")
	if err := src.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := reg.Decide("filed8.cn").Reason; got != "cancelled" {
		t.Errorf("after a gap: got %q, want %q", got, "cancelled")
	}
	st := src.Stats()
	if st.Errors[registry.SyncErrGap] != 1 || st.FullLoads != 2 {
		t.Errorf("gap: got %d gap errors and %d full loads, want 1 and 2", st.Errors[registry.SyncErrGap], st.FullLoads)
	}
}

func TestPostgresMassDeleteGuard(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) { o.MaxDeleteFraction = 0.1 })
	ctx := context.Background()
	if err := src.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Two of 20 is the limit: allowed.
	db.exec(t, "DELETE FROM icpgate_records WHERE domain IN ('filed1.cn', 'filed2.cn')")
	if err := src.Sync(ctx); err != nil {
		t.Fatalf("deleting 10%%: %v", err)
	}
	// Five of 18: refused, nothing changes, the alert stands.
	db.exec(t, "DELETE FROM icpgate_records WHERE domain LIKE 'filed1_.cn'") // filed10..filed16 minus none: 7
	err := src.Sync(ctx)
	if !errors.Is(err, registry.ErrMassDelete) {
		t.Fatalf("deleting 7 of 18: got %v, want ErrMassDelete", err)
	}
	if got := reg.Decide("filed12.cn").Reason; got != "filed" {
		t.Errorf("after a refused sync: got %q, want %q (old snapshot serving)", got, "filed")
	}
	st := src.Stats()
	if st.DeletionRefused != 7 || st.Errors[registry.SyncErrMassDelete] != 1 {
		t.Errorf("refusal: got %d refused, %d errors, want 7 and 1", st.DeletionRefused, st.Errors[registry.SyncErrMassDelete])
	}
	// A full reload (another node starting from the store, say) is guarded too.
	if err := src.Sync(ctx); !errors.Is(err, registry.ErrMassDelete) {
		t.Fatalf("second attempt: got %v, want ErrMassDelete", err)
	}
	// The operator confirms: applied, alert cleared.
	db.exec(t, "INSERT INTO icpgate_delete_confirmations (up_to_seq, who) SELECT last, 'ops' FROM icpgate_change_seq")
	if err := src.Sync(ctx); err != nil {
		t.Fatalf("after confirmation: %v", err)
	}
	if got := reg.Decide("filed12.cn").Reason; got != "unfiled" {
		t.Errorf("after confirmation: got %q, want %q", got, "unfiled")
	}
	if got := src.Stats().DeletionRefused; got != 0 {
		t.Errorf("refusal after confirmation: got %d, want 0", got)
	}
}

// TestPostgresRestart: the database restarts under a running source; the
// registry keeps serving, and changes made after the restart arrive.
func TestPostgresRestart(t *testing.T) {
	srv := pgtest.New(t)
	db := newFilingDB(t, srv)
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) { o.PollInterval = 200 * time.Millisecond })
	run(t, src)
	waitReason(t, reg, "filed1.cn", "filed")
	db.exec(t, "UPDATE icpgate_records SET state = 'cancelled' WHERE domain = 'filed9.cn'")
	waitReason(t, reg, "filed9.cn", "cancelled")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for src.Stats().Connected {
		if time.Now().After(deadline) {
			t.Fatal("source still connected 10 s after the database stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := reg.Decide("filed1.cn").Reason; got != "filed" {
		t.Errorf("database down: got %q, want %q (last good snapshot)", got, "filed")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	db.exec(t, "UPDATE icpgate_records SET state = 'blacklisted' WHERE domain = 'filed10.cn'")
	waitReason(t, reg, "filed10.cn", "blacklisted")
	st := src.Stats()
	if st.Errors[registry.SyncErrConnect] == 0 {
		t.Errorf("connect errors: got 0, want some (the database was down)")
	}
	if st.FullLoads != 1 {
		t.Errorf("full loads: got %d, want 1 (the cursor is trusted after a reconnect)", st.FullLoads)
	}
}

// TestPostgresTwoGateways: two sources on one database both see a change.
func TestPostgresTwoGateways(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	var regs []*registry.Registry
	for range 2 {
		reg := registry.New(registry.Options{})
		run(t, newSource(t, reg, db.dsn, nil))
		waitReason(t, reg, "filed1.cn", "filed")
		regs = append(regs, reg)
	}
	db.exec(t, "UPDATE icpgate_records SET state = 'no_access' WHERE domain = 'filed11.cn'")
	for i, reg := range regs {
		d := waitReason(t, reg, "filed11.cn", "no_access")
		t.Logf("gateway %d: visible after %v", i, d)
	}
}

// TestPostgresStoreRestart: a node with a local store restarts with the
// database stopped, serves the last good snapshot at once, and catches up
// from its cursor when the database returns.
func TestPostgresStoreRestart(t *testing.T) {
	srv := pgtest.New(t)
	db := newFilingDB(t, srv)
	path := filepath.Join(t.TempDir(), "icpgate.db")
	ctx := context.Background()

	store, err := registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) { o.Store = store })
	if err := src.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	db.exec(t, "UPDATE icpgate_records SET state = 'cancelled' WHERE domain = 'filed12.cn'")
	if err := src.Sync(ctx); err != nil { // incremental, saved to the store
		t.Fatal(err)
	}
	cursor := src.Stats().Cursor
	store.Close() // the process ends (a kill -9 leaves bbolt consistent too)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	store, err = registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg = registry.New(registry.Options{})
	src = newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) {
		o.Store = store
		o.PollInterval = 100 * time.Millisecond
	})
	ok, err := src.LoadStore()
	if err != nil || !ok {
		t.Fatalf("LoadStore: got %v, %v, want a snapshot", ok, err)
	}
	for _, tc := range []struct{ host, want string }{
		{"filed1.cn", "filed"}, {"filed12.cn", "cancelled"}, {"denied.filed1.cn", "override_deny"},
	} {
		if got := reg.Decide(tc.host).Reason; string(got) != tc.want {
			t.Errorf("from the store: Decide(%q): got %q, want %q", tc.host, got, tc.want)
		}
	}
	st := src.Stats()
	if !st.FromStore || st.Cursor != cursor {
		t.Errorf("store state: got from_store %v cursor %d, want true and %d", st.FromStore, st.Cursor, cursor)
	}
	run(t, src)
	time.Sleep(300 * time.Millisecond) // a few failed connection attempts
	if got := reg.Decide("filed1.cn").Reason; got != "filed" {
		t.Errorf("database down: got %q, want %q", got, "filed")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	db.exec(t, "UPDATE icpgate_records SET state = 'no_access' WHERE domain = 'filed13.cn'")
	waitReason(t, reg, "filed13.cn", "no_access")
	// The stats follow the swap by a moment.
	deadline := time.Now().Add(5 * time.Second)
	for st := src.Stats(); st.FromStore && time.Now().Before(deadline); st = src.Stats() {
		time.Sleep(time.Millisecond)
	}
	if st := src.Stats(); st.FullLoads != 0 || st.FromStore {
		t.Errorf("caught up: got %d full loads, from_store %v, want 0 and false (incremental from the stored cursor)", st.FullLoads, st.FromStore)
	}
}

// TestPostgresCutMidLoad: the connection is cut while a full load streams
// rows; nothing half-loaded is installed, and the retry loads everything.
func TestPostgresCutMidLoad(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	const n = 200000
	db.exec(t, `INSERT INTO icpgate_records (domain, state, filing_number)
		SELECT 'd' || i || '.cn', 'filed', '京ICP备10206937号-1' FROM generate_series(1, $1::int) AS i`, n)
	reg := registry.New(registry.Options{})
	var mu sync.Mutex
	var installed []int
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) {
		o.OnSync = func(kind string, _ time.Duration, err error) {
			if err == nil {
				mu.Lock()
				installed = append(installed, reg.Snapshot().Len())
				mu.Unlock()
			}
		}
	})
	run(t, src)
	// Terminate the source's session while it is running its query.
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for killed := false; !killed; {
		if time.Now().After(deadline) {
			t.Fatal("never caught the full load in progress")
		}
		var k bool
		err := db.conn.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
			WHERE application_name = 'icpgate' AND state = 'active' AND datname = current_database()
			AND query LIKE '%FROM icpgate_records r%'`).Scan(&k)
		if err != nil {
			t.Fatal(err)
		}
		killed = k
		if reg.Loaded() && !killed {
			t.Skip("the load finished before it could be cut (machine too fast for this size)")
		}
	}
	waitReason(t, reg, "d1.cn", "filed")
	if got, want := reg.Snapshot().Len(), n+20; got != want {
		t.Errorf("records after the retry: got %d, want %d", got, want)
	}
	if got := src.Stats().Errors[registry.SyncErrConnect]; got == 0 {
		t.Errorf("connect errors: got 0 (%v), want the cut counted", src.Stats().Errors)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range installed {
		if l != n+20 {
			t.Errorf("a sync installed %d records, want only complete loads (%d)", l, n+20)
		}
	}
}
