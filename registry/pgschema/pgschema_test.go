package pgschema_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/registry/pgschema"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func connect(t *testing.T) (*pgx.Conn, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, pgtest.Shared(t).NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, ctx
}

func TestMigrateIdempotent(t *testing.T) {
	conn, ctx := connect(t)
	if err := pgschema.Check(ctx, conn); !errors.Is(err, pgschema.ErrNotMigrated) {
		t.Fatalf("Check before migrate: got %v, want ErrNotMigrated", err)
	}
	applied, err := pgschema.Migrate(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{}
	for _, m := range pgschema.Migrations() {
		want = append(want, m.Version)
	}
	if !slices.Equal(applied, want) {
		t.Fatalf("first migrate: got %v, want %v", applied, want)
	}
	applied, err = pgschema.Migrate(ctx, conn)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second migrate: got %v, %v, want nothing applied", applied, err)
	}
	if err := pgschema.Check(ctx, conn); err != nil {
		t.Fatalf("Check after migrate: %v", err)
	}
	// A newer binary's migration makes this one refuse.
	if _, err := conn.Exec(ctx, "INSERT INTO icpgate_schema_migrations (version, name) VALUES (9999, '9999_future.sql')"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgschema.Migrate(ctx, conn); !errors.Is(err, pgschema.ErrNewerSchema) {
		t.Fatalf("migrate with a newer schema: got %v, want ErrNewerSchema", err)
	}
}

// TestChangeSequence checks the triggers: every insert, update and delete of
// a record gets the next number, in commit order, and wakes listeners.
func TestChangeSequence(t *testing.T) {
	conn, ctx := connect(t)
	if _, err := pgschema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	listener, err := pgx.Connect(ctx, conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN icpgate_changes"); err != nil {
		t.Fatal(err)
	}
	steps := []string{
		"INSERT INTO icpgate_records (domain, state) VALUES ('a.cn', 'no_access'), ('b.cn', 'blacklisted')",
		"UPDATE icpgate_records SET state = 'cancelled' WHERE domain = 'a.cn'",
		"UPDATE icpgate_records SET state = 'cancelled' WHERE domain = 'nothing.cn'",
		"DELETE FROM icpgate_records WHERE domain = 'b.cn'",
		"UPDATE icpgate_records SET domain = 'c.cn' WHERE domain = 'a.cn'",
		"INSERT INTO icpgate_overrides (host, scope, action) VALUES ('x.cn', 'exact', 'deny')",
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	// A rolled-back change leaves no gap.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO icpgate_records (domain, state) VALUES ('d.cn', 'no_access')"); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO icpgate_records (domain, state) VALUES ('e.cn', 'no_access')"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT seq, kind::text || op::text || ' ' || domain FROM icpgate_changes ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var seqs []int64
	for rows.Next() {
		var seq int64
		var s string
		if err := rows.Scan(&seq, &s); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// The rename logs both names; set order within one statement is free.
	if len(got) == 8 && got[4] > got[5] {
		got[4], got[5] = got[5], got[4]
	}
	want := []string{"rI a.cn", "rI b.cn", "rU a.cn", "rD b.cn", "rU a.cn", "rU c.cn", "oI ", "rI e.cn"}
	if !slices.Equal(got, want) {
		t.Fatalf("changes: got %q, want %q", got, want)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seq %d: got %d, want %d (no gaps)", i, s, i+1)
		}
	}
	var last int64
	if err := conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&last); err != nil || last != 8 {
		t.Fatalf("icpgate_change_seq.last: got %d (%v), want 8", last, err)
	}
	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "icpgate_changes" || n.Payload == "" {
		t.Fatalf("notification: got %q %q, want channel icpgate_changes with a sequence number", n.Channel, n.Payload)
	}
	if _, err := conn.Exec(ctx, "TRUNCATE icpgate_records"); err == nil {
		t.Fatal("TRUNCATE: got no error, want refusal (it bypasses the change sequence)")
	}
}
