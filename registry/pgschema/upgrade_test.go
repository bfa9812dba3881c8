package pgschema_test

import (
	"testing"
	"time"

	"github.com/icpgate/icpgate/registry/pgschema"
)

// TestUpgradeFrom1: a database at version 1 with overrides and audit rows
// migrates to the current schema keeping them, without a change row (no
// gateway is woken for columns it does not read), and the audit log is
// append-only afterwards.
func TestUpgradeFrom1(t *testing.T) {
	conn, ctx := connect(t)
	m1 := pgschema.Migrations()[0]
	if m1.Version != 1 {
		t.Fatalf("first migration is %d", m1.Version)
	}
	for _, sql := range []string{
		`CREATE TABLE icpgate_schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`,
		m1.SQL,
		`INSERT INTO icpgate_schema_migrations (version, name) VALUES (1, '` + m1.Name + `')`,
		`INSERT INTO icpgate_overrides (host, scope, action, expires, reason, ticket, who, created)
			VALUES ('a.cn', 'domain', 'allow', '2030-01-01Z', 'r', 'T-1', 'li.wei', '2026-01-02T03:04:05Z')`,
		`INSERT INTO icpgate_audit (who, action, target, detail) VALUES ('root', 'import', 'x.csv', '{"rows": 1}')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%.60s: %v", sql, err)
		}
	}
	var seq0 int64
	if err := conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&seq0); err != nil {
		t.Fatal(err)
	}
	if _, err := pgschema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := pgschema.Check(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var version int64
	var created, updated time.Time
	if err := conn.QueryRow(ctx, "SELECT version, created, updated FROM icpgate_overrides").Scan(&version, &created, &updated); err != nil {
		t.Fatal(err)
	}
	if version != 1 || !updated.Equal(created) {
		t.Errorf("old override: version %d, updated %v, want 1 and its created %v", version, updated, created)
	}
	var seq1 int64
	if err := conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&seq1); err != nil || seq1 != seq0 {
		t.Errorf("change sequence: %d before the migration, %d after (%v), want no change", seq0, seq1, err)
	}
	var outcome, message string
	if err := conn.QueryRow(ctx, "SELECT outcome, message FROM icpgate_audit").Scan(&outcome, &message); err != nil || outcome != "ok" || message != "" {
		t.Errorf("old audit row: outcome %q message %q (%v), want ok and empty", outcome, message, err)
	}
	// The overrides trigger is back on.
	if _, err := conn.Exec(ctx, "UPDATE icpgate_overrides SET reason = 'r2'"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&seq1); err != nil || seq1 != seq0+1 {
		t.Errorf("after an override update: sequence %d, want %d (trigger re-enabled)", seq1, seq0+1)
	}
	if _, err := conn.Exec(ctx, "DELETE FROM icpgate_audit"); err == nil {
		t.Error("DELETE FROM icpgate_audit: got no error, want the append-only refusal")
	}
	// Tokens: a live name is unique, a revoked one frees it.
	for _, sql := range []string{
		`INSERT INTO icpgate_tokens (id, name, role, hash) VALUES ('a1', 'li.wei', 'support', sha256('1'))`,
		`UPDATE icpgate_tokens SET revoked_at = now() WHERE id = 'a1'`,
		`INSERT INTO icpgate_tokens (id, name, role, hash) VALUES ('a2', 'li.wei', 'admin', sha256('2'))`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, sql := range []string{
		`INSERT INTO icpgate_tokens (id, name, role, hash) VALUES ('a3', 'li.wei', 'viewer', sha256('3'))`, // live name taken
		`INSERT INTO icpgate_tokens (id, name, role, hash) VALUES ('a4', 'x', 'root', sha256('4'))`,        // role
		`INSERT INTO icpgate_tokens (id, name, role, hash) VALUES ('a5', 'x y', 'viewer', sha256('5'))`,    // name
		`INSERT INTO icpgate_tokens (id, name, role, hash) VALUES ('a6', 'x', 'viewer', '\x00')`,           // hash length
	} {
		if _, err := conn.Exec(ctx, sql); err == nil {
			t.Errorf("%s: got no error", sql)
		}
	}
}
