package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/registry"
)

func TestPostgresConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		pc   PostgresConfig
		want string // "" = valid
	}{
		{"unset", PostgresConfig{}, ""},
		{"defaults", PostgresConfig{DSN: "postgres://u@db/x"}, ""},
		{"keys without dsn", PostgresConfig{PollInterval: time.Second}, ""},
		{"bad dsn", PostgresConfig{DSN: "postgres://u@db:notaport/x"}, "registry.postgres.dsn"},
		{"poll too short", PostgresConfig{DSN: "postgres://u@db/x", PollInterval: time.Millisecond}, "registry.postgres.poll_interval"},
		{"fraction", PostgresConfig{DSN: "postgres://u@db/x", MaxDeleteFraction: 1.5}, "registry.postgres.max_delete_fraction"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := tc.pc
			pc.setDefaults()
			err := pc.validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("validate: got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPGSource: the gateway's source loads, reports readiness with its
// staleness, exports lint-clean metrics, survives the database stopping,
// and a new node starts from the store with the database down.
func TestPGSource(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDB(t)
	ctx := context.Background()
	for _, args := range [][]string{{"migrate", "-dsn", dsn}} {
		if code, out, errOut := runCmd(t, dbCmd, args...); code != exitOK {
			t.Fatalf("db %v: %d %s %s", args, code, out, errOut)
		}
	}
	if code, _, errOut := runCmd(t, importCmd, "-dsn", dsn, filepath.Join("testdata", "import.jsonl")); code != exitOK {
		t.Fatalf("import: %s", errOut)
	}
	storePath := filepath.Join(t.TempDir(), "icpgate.db")
	pc := PostgresConfig{DSN: dsn, PollInterval: 200 * time.Millisecond}
	pc.setDefaults()

	start := func() (*pgSource, *registry.Registry, func()) {
		reg := registry.New(registry.Options{})
		p, err := newPGSource(pc, storePath, reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); p.run(rctx) }()
		return p, reg, func() { cancel(); <-done }
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 15 s for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	p, reg, stop := start()
	waitFor("the first load", reg.Loaded)
	if ok, detail := p.ready(); !ok || !strings.Contains(detail, "in sync with the filing database") {
		t.Errorf("ready: got %v %q, want in sync", ok, detail)
	}
	if got := reg.Decide("www.filed.cn").Reason; got != "filed" {
		t.Errorf("Decide: got %q, want filed", got)
	}
	prom := prometheus.NewRegistry()
	p.register(prom)
	p.lag.Observe(0.01)
	problems, err := testutil.GatherAndLint(prom)
	if err != nil || len(problems) != 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UPDATE icpgate_records SET state = 'access_revoked' WHERE domain = 'filed.cn'"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	waitFor("the update", func() bool { return reg.Decide("filed.cn").Reason == "access_revoked" })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor("the disconnect", func() bool { return !p.src.Stats().Connected })
	if ok, detail := p.ready(); !ok || !strings.Contains(detail, "unreachable") {
		t.Errorf("ready with the database down: got %v %q, want ready and unreachable", ok, detail)
	}
	want := `
# HELP icpgate_registry_database_connected 1 while a session with the filing database is up, else 0.
# TYPE icpgate_registry_database_connected gauge
icpgate_registry_database_connected 0
`
	if err := testutil.GatherAndCompare(prom, strings.NewReader(want), "icpgate_registry_database_connected"); err != nil {
		t.Errorf("database down: %v", err)
	}
	stop()

	// Restart with the database still down: the store serves at once.
	p, reg, stop = start()
	defer stop()
	if !reg.Loaded() {
		t.Fatal("restart from the store: registry not loaded")
	}
	if got := reg.Decide("filed.cn").Reason; got != "access_revoked" {
		t.Errorf("restart from the store: got %q, want access_revoked (the last synced state)", got)
	}
	if ok, detail := p.ready(); !ok || !strings.Contains(detail, "local store") {
		t.Errorf("ready from the store: got %v %q, want ready from the local store", ok, detail)
	}
	if _, err := os.Stat(storePath); err != nil {
		t.Fatal(err)
	}
}
