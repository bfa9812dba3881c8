package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/internal/pgtest"
)

// runCmd runs a subcommand function and returns its exit code and output.
func runCmd(t *testing.T, f func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := f(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func dbCmd(ctx context.Context, args []string, out, errb *bytes.Buffer) int {
	return cmdDB(ctx, args, out, errb)
}

func importCmd(ctx context.Context, args []string, out, errb *bytes.Buffer) int {
	return cmdImport(ctx, args, out, errb)
}

func exportCmd(ctx context.Context, args []string, out, errb *bytes.Buffer) int {
	return cmdExport(ctx, args, out, errb)
}

// TestDatabaseCommands drives db migrate/status/confirm-deletes, import and
// export against a real PostgreSQL, one server for all the steps.
func TestDatabaseCommands(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDB(t)
	cfgPath := filepath.Join(t.TempDir(), "icpgate.yaml")
	if err := os.WriteFile(cfgPath, []byte("registry:\n  postgres:\n    dsn: "+dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	td := func(name string) string { return filepath.Join("testdata", name) }
	count := func() int {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM icpgate_records").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	steps := []struct {
		name     string
		f        func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int
		args     []string
		wantCode int
		wantOut  string // substring of stdout (or stderr when the code is not 0)
		records  int    // records in the database afterwards; -1: don't check
	}{
		{"no database", dbCmd, []string{"migrate"}, exitError, "no filing database", -1},
		{"import before migrate", importCmd, []string{"-config", cfgPath, td("import.jsonl")}, exitError, "not migrated", -1},
		{"migrate", dbCmd, []string{"migrate", "-config", cfgPath}, exitOK, "applied migration 1", 0},
		{"migrate again", dbCmd, []string{"migrate", "-dsn", dsn}, exitOK, "schema is current", 0},
		{"dry run", importCmd, []string{"-config", cfgPath, td("import.jsonl"), "--dry-run"}, exitOK,
			"dry run, nothing changed: testdata/import.jsonl: 5 rows, 5 inserted, 0 updated, 0 unchanged, 0 deleted", 0},
		{"import", importCmd, []string{"-config", cfgPath, td("import.jsonl")}, exitOK,
			"5 rows, 5 inserted, 0 updated, 0 unchanged, 0 deleted", 5},
		{"import again", importCmd, []string{"-config", cfgPath, td("import.jsonl")}, exitOK,
			"5 rows, 0 inserted, 0 updated, 5 unchanged, 0 deleted", 5},
		{"bad row", importCmd, []string{"-config", cfgPath, td("import-bad.jsonl")}, exitError,
			"import-bad.jsonl:2: invalid record: filing_number", 5},
		{"csv with replace, dry", importCmd, []string{"-config", cfgPath, "--replace", "--dry-run", td("import-changed.csv")}, exitOK,
			"3 rows, 1 inserted, 1 updated, 1 unchanged, 3 deleted", 5},
		{"csv with replace", importCmd, []string{"-config", cfgPath, "--replace", td("import-changed.csv")}, exitOK,
			"3 rows, 1 inserted, 1 updated, 1 unchanged, 3 deleted", 3},
		{"status", dbCmd, []string{"status", "-config", cfgPath}, exitOK, "records:            3", 3},
		{"confirm deletes", dbCmd, []string{"confirm-deletes", "-config", cfgPath}, exitOK, "deletions up to change", 3},
		{"unknown verb", dbCmd, []string{"drop", "-config", cfgPath}, exitError, "unknown command", 3},
	}
	for _, s := range steps {
		code, out, errOut := runCmd(t, s.f, s.args...)
		text := out
		if s.wantCode != exitOK {
			text = errOut
		}
		if code != s.wantCode || !strings.Contains(text, s.wantOut) {
			t.Fatalf("%s: got exit %d, stdout %q, stderr %q; want exit %d and %q", s.name, code, out, errOut, s.wantCode, s.wantOut)
		}
		if s.records >= 0 {
			if got := count(); got != s.records {
				t.Fatalf("%s: got %d records in the database, want %d", s.name, got, s.records)
			}
		}
	}

	// A dry run prints the rows it normalised, with their lines.
	upper := filepath.Join(t.TempDir(), "upper.csv")
	if err := os.WriteFile(upper, []byte("domain,state\nNEW.CN.,cancelled\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, importCmd, "-config", cfgPath, "--dry-run", upper)
	if want := "icpgate import: warning: " + upper + `:2: domain "NEW.CN." read as new.cn (write domains in lower case, without a trailing dot)` + "\n"; code != exitOK || errOut != want ||
		!strings.Contains(out, "1 rows, 0 inserted, 1 updated, 0 unchanged, 0 deleted") {
		t.Errorf("dry run of %s: got exit %d, stdout %q, stderr %q; want a dry run and stderr %q", upper, code, out, errOut, want)
	}

	// Export, in both formats, imports back unchanged.
	for _, format := range []string{"jsonl", "csv"} {
		path := filepath.Join(t.TempDir(), "export."+format)
		code, _, errOut := runCmd(t, exportCmd, "-config", cfgPath, "-o", path)
		if code != exitOK {
			t.Fatalf("export %s: exit %d: %s", format, code, errOut)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "xn--fsqu00a.xn--fiqs8s") || !strings.Contains(string(data), "new.cn") {
			t.Errorf("export %s: got %q, want the three records", format, data)
		}
		code, out, errOut = runCmd(t, importCmd, "-config", cfgPath, path)
		if code != exitOK || !strings.Contains(out, "3 rows, 0 inserted, 0 updated, 3 unchanged") {
			t.Errorf("re-import of the %s export: got exit %d, %q %q, want 3 unchanged", format, code, out, errOut)
		}
	}
	code, out, _ = runCmd(t, exportCmd, "-dsn", dsn)
	if want := `{"domain":"filed.cn","state":"filed","filing_number":"京ICP备10206937号-1","subject":"北京测试科技有限公司","subject_type":"enterprise","province":"京","upstream":"10.0.0.5:443","updated_at":"2026-11-01T08:00:00Z"}`; code != exitOK || !strings.Contains(out, want+"\n") {
		t.Errorf("export to stdout: got %q, want a line %q", out, want)
	}
}

// TestImportListsBadLines checks that a file with bad rows is refused
// before any database is contacted, every bad line listed.
func TestImportListsBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.jsonl")
	content := `{"domain":"a.cn","state":"filed"}` + "\n" + `{"domain":"B.CN","state":"cancelled"}` + "\n" +
		`{"domain":"b.cn","state":"cancelled"}` + "\n" + strings.Repeat("x", 70000) + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, importCmd, "-dsn", "postgres://icpgate@127.0.0.1:1/none", "--dry-run", path)
	want := "icpgate import: warning: " + path + `:2: domain "B.CN" read as b.cn (write domains in lower case, without a trailing dot)` + "\n" +
		"icpgate import: " + path + " has 3 bad lines; nothing was imported:\n" +
		"  " + path + ":1: invalid record: filing_number: required for state filed\n" +
		"  " + path + ":3: duplicate domain: domain b.cn is also on line 2\n" +
		"  " + path + ":4: longer than 65536 bytes; a record is one line of at most 65536 bytes\n"
	if code != exitError || out != "" || errOut != want {
		t.Errorf("got exit %d, stdout %q, stderr\n%s\nwant exit %d, stderr\n%s", code, out, errOut, exitError, want)
	}
}

// TestExportKeepsTimeZoneOffsets checks that import then export gives each
// time back at the offset it was written with (+08:00, -03:30, Z), in both
// formats, that the export imports back unchanged, and that a deadline
// given again at another offset is a change.
func TestExportKeepsTimeZoneOffsets(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDB(t)
	if code, _, errOut := runCmd(t, dbCmd, "migrate", "-dsn", dsn); code != exitOK {
		t.Fatalf("migrate: exit %d: %s", code, errOut)
	}
	rows := []string{
		`{"domain":"east.cn","state":"rectifying","filing_number":"沪ICP备2026012345号-1","rectify_deadline":"2026-01-31T00:00:00+08:00","updated_at":"2026-01-02T09:30:00+08:00"}`,
		`{"domain":"west.cn","state":"rectifying","filing_number":"沪ICP备2026012346号-1","rectify_deadline":"2026-01-31T00:00:00-03:30","updated_at":"2026-01-02T09:30:00-03:30"}`,
		`{"domain":"utc.cn","state":"rectifying","filing_number":"沪ICP备2026012347号-1","rectify_deadline":"2026-01-31T00:00:00Z","updated_at":"2026-01-02T09:30:00Z"}`,
		`{"domain":"mixed.cn","state":"rectifying","filing_number":"沪ICP备2026012348号-1","rectify_deadline":"2026-01-31T00:00:00+08:00","updated_at":"2026-01-02T09:30:00Z"}`,
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "offsets.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join(rows, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, importCmd, "-dsn", dsn, in); code != exitOK || !strings.Contains(out, "4 rows, 4 inserted") {
		t.Fatalf("import: got exit %d, %q %q, want 4 inserted", code, out, errOut)
	}

	code, out, errOut := runCmd(t, exportCmd, "-dsn", dsn)
	if code != exitOK {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	want := []string{rows[0], rows[3], rows[2], rows[1]} // by domain
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("export: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	path := filepath.Join(dir, "export.csv")
	if code, _, errOut := runCmd(t, exportCmd, "-dsn", dsn, "-o", path); code != exitOK {
		t.Fatalf("export csv: exit %d: %s", code, errOut)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"west.cn,rectifying,沪ICP备2026012346号-1,,,,,2026-01-31T00:00:00-03:30,2026-01-02T09:30:00-03:30\n",
		"east.cn,rectifying,沪ICP备2026012345号-1,,,,,2026-01-31T00:00:00+08:00,2026-01-02T09:30:00+08:00\n",
		"utc.cn,rectifying,沪ICP备2026012347号-1,,,,,2026-01-31T00:00:00Z,2026-01-02T09:30:00Z\n",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("export csv: got\n%s\nwant a line %q", data, want)
		}
	}
	for _, p := range []string{path, in} {
		if code, out, errOut := runCmd(t, importCmd, "-dsn", dsn, p); code != exitOK || !strings.Contains(out, "4 rows, 0 inserted, 0 updated, 4 unchanged") {
			t.Errorf("re-import of %s: got exit %d, %q %q, want 4 unchanged", p, code, out, errOut)
		}
	}

	// The same instant at another offset is a change of the deadline as
	// exported; in UTC the offset column is null again.
	again := filepath.Join(dir, "again.csv")
	if err := os.WriteFile(again, []byte("domain,state,filing_number,rectify_deadline\n"+
		"east.cn,rectifying,沪ICP备2026012345号-1,2026-01-30T16:00:00Z\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, importCmd, "-dsn", dsn, again); code != exitOK || !strings.Contains(out, "1 rows, 0 inserted, 1 updated") {
		t.Fatalf("import of %s: got exit %d, %q %q, want 1 updated", again, code, out, errOut)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var deadlineOff, updatedOff *int16
	if err := conn.QueryRow(context.Background(), "SELECT rectify_deadline_offset, updated_at_offset FROM icpgate_records WHERE domain = 'east.cn'").Scan(&deadlineOff, &updatedOff); err != nil {
		t.Fatal(err)
	}
	if deadlineOff != nil || updatedOff != nil {
		t.Errorf("east.cn after an import in UTC: got offsets %v, %v, want null, null", deadlineOff, updatedOff)
	}
}
