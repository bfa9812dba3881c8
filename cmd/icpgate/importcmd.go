package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/icpgate/icpgate/registry"
	"github.com/icpgate/icpgate/registry/pgschema"
)

// importSummary is what an import did (or, with --dry-run, would do).
type importSummary struct {
	Rows, Inserted, Updated, Unchanged, Deleted int64
}

// cmdImport runs `icpgate import [-config FILE] [--dry-run] [--replace] FILE`:
// the file (CSV or JSON Lines, the registry file format; UTF-8 unless
// --encoding names GBK or GB18030) is validated in
// full first, a bad row failing the import with its line, then loaded in
// one transaction: new domains inserted, changed ones updated; with
// --replace, domains missing from the file are deleted. --dry-run does all
// of it and rolls back, so the summary is exact.
func cmdImport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	df := addDBFlags(fs)
	dry := fs.Bool("dry-run", false, "validate and compute the summary, change nothing")
	replace := fs.Bool("replace", false, "delete records whose domain is not in the file")
	enc := fs.String("encoding", "utf-8", "the file's encoding: utf-8, or gbk or gb18030 (what Excel on Chinese Windows saves CSV in)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: icpgate import [-config FILE | -dsn URL] [--dry-run] [--replace] [--encoding gbk] FILE")
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return exitError
	}
	if len(files) != 1 {
		fs.Usage()
		return exitError
	}
	path := files[0]
	snap, warns, err := loadImportFile(path, *enc)
	for _, w := range warns.Lines() {
		fmt.Fprintf(stderr, "icpgate import: warning: %s\n", w)
	}
	if err != nil {
		printLoadError(stderr, "icpgate import", err, "nothing was imported")
		return exitError
	}
	offs, err := readZoneOffsets(path, *enc)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate import: %v (nothing was imported)\n", err)
		return exitError
	}
	conn, err := df.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate import: %v\n", err)
		return exitError
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := pgschema.Check(ctx, conn); err != nil {
		fmt.Fprintf(stderr, "icpgate import: %v\n", err)
		return exitError
	}
	start := time.Now()
	sum, err := importSnapshot(ctx, conn, snap, offs, filepath.Base(path), *replace, *dry, newProgress(stderr, snap.Len()))
	if err != nil {
		fmt.Fprintf(stderr, "icpgate import: %v\n", err)
		return exitError
	}
	verb := "imported"
	if *dry {
		verb = "dry run, nothing changed:"
	}
	fmt.Fprintf(stdout, "%s %s: %d rows, %d inserted, %d updated, %d unchanged, %d deleted in %.1fs\n",
		verb, path, sum.Rows, sum.Inserted, sum.Updated, sum.Unchanged, sum.Deleted, time.Since(start).Seconds())
	return exitOK
}

// printLoadError prints the error of a registry file that was refused:
// a file with several bad lines as a count and then one line for each,
// indented, after what the refusal means (outcome).
func printLoadError(w io.Writer, cmd string, err error, outcome string) {
	var fe *registry.FileError
	if !errors.As(err, &fe) || fe.Count() < 2 {
		fmt.Fprintf(w, "%s: %v (%s)\n", cmd, err, outcome)
		return
	}
	fmt.Fprintf(w, "%s: %s has %d bad lines; %s:\n", cmd, fe.Path, fe.Count(), outcome)
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
}

// importSnapshot loads snap into the database in one transaction, rolled
// back when dry, with the time zone offsets of its records' times (by
// domain; absent: UTC).
func importSnapshot(ctx context.Context, conn *pgx.Conn, snap *registry.Snapshot, offs map[string]zoneOffsets, name string, replace, dry bool, prog *progress) (importSummary, error) {
	var sum importSummary
	tx, err := conn.Begin(ctx)
	if err != nil {
		return sum, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE icpgate_import (
		domain text PRIMARY KEY, state text, filing_number text, subject text, subject_type text,
		province text, upstream text, rectify_deadline timestamptz, updated_at timestamptz,
		rectify_deadline_offset smallint, updated_at_offset smallint) ON COMMIT DROP`); err != nil {
		return sum, fmt.Errorf("creating the import table: %w", err)
	}
	next, stop := iter.Pull(snap.Records())
	defer stop()
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"icpgate_import"},
		[]string{"domain", "state", "filing_number", "subject", "subject_type", "province", "upstream", "rectify_deadline", "updated_at",
			"rectify_deadline_offset", "updated_at_offset"},
		&copySource{next: next, offs: offs, prog: prog})
	prog.done()
	if err != nil {
		return sum, fmt.Errorf("copying rows: %w", err)
	}
	sum.Rows = n
	// Only real changes are written (and so logged in the change
	// sequence): an import of an unchanged file changes nothing. The
	// deadline's offset is part of the record as exported; updated_at's
	// goes with updated_at, which alone is no change.
	err = tx.QueryRow(ctx, `WITH up AS (
		INSERT INTO icpgate_records AS r (domain, state, filing_number, subject, subject_type, province, upstream,
			rectify_deadline, updated_at, rectify_deadline_offset, updated_at_offset)
		SELECT domain, state, filing_number, subject, subject_type, province, upstream,
			rectify_deadline, coalesce(updated_at, now()), rectify_deadline_offset, updated_at_offset
		FROM icpgate_import
		ON CONFLICT (domain) DO UPDATE SET state = excluded.state, filing_number = excluded.filing_number,
			subject = excluded.subject, subject_type = excluded.subject_type, province = excluded.province,
			upstream = excluded.upstream, rectify_deadline = excluded.rectify_deadline, updated_at = excluded.updated_at,
			rectify_deadline_offset = excluded.rectify_deadline_offset, updated_at_offset = excluded.updated_at_offset
		WHERE (r.state, r.filing_number, r.subject, r.subject_type, r.province, r.upstream, r.rectify_deadline,
				r.rectify_deadline_offset)
			IS DISTINCT FROM (excluded.state, excluded.filing_number, excluded.subject, excluded.subject_type,
				excluded.province, excluded.upstream, excluded.rectify_deadline, excluded.rectify_deadline_offset)
		RETURNING (xmax = 0) AS inserted)
		SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up`).Scan(&sum.Inserted, &sum.Updated)
	if err != nil {
		return sum, fmt.Errorf("writing records: %w", err)
	}
	sum.Unchanged = sum.Rows - sum.Inserted - sum.Updated
	if replace {
		tag, err := tx.Exec(ctx, `DELETE FROM icpgate_records r WHERE NOT EXISTS
			(SELECT 1 FROM icpgate_import i WHERE i.domain = r.domain)`)
		if err != nil {
			return sum, fmt.Errorf("deleting records missing from the file: %w", err)
		}
		sum.Deleted = tag.RowsAffected()
	}
	detail, _ := json.Marshal(map[string]any{"rows": sum.Rows, "inserted": sum.Inserted,
		"updated": sum.Updated, "deleted": sum.Deleted, "replace": replace})
	if _, err := tx.Exec(ctx, "INSERT INTO icpgate_audit (who, action, target, detail) VALUES ($1, 'import', $2, $3)",
		operator(), name, detail); err != nil {
		return sum, fmt.Errorf("auditing: %w", err)
	}
	if dry {
		return sum, nil // the deferred Rollback undoes everything
	}
	if err := tx.Commit(ctx); err != nil {
		return sum, fmt.Errorf("committing: %w", err)
	}
	return sum, nil
}

// copySource feeds CopyFrom one record at a time: memory holds the
// snapshot, not a second copy as rows.
type copySource struct {
	next func() (*registry.Record, bool)
	offs map[string]zoneOffsets // by domain; absent: UTC
	rec  *registry.Record
	prog *progress
	vals [11]any
}

func (c *copySource) Next() bool {
	r, ok := c.next()
	if ok {
		c.rec = r
		c.prog.add(1)
	}
	return ok
}

func (c *copySource) Values() ([]any, error) {
	r := c.rec
	o := c.offs[r.Domain]
	c.vals = [11]any{r.Domain, r.State.String(), r.FilingNumber, r.Subject, r.SubjectType,
		r.Province, r.Upstream, optTime(r.RectifyDeadline), optTime(r.UpdatedAt),
		optOffset(r.RectifyDeadline, o.deadline), optOffset(r.UpdatedAt, o.updated)}
	return c.vals[:], nil
}

func (c *copySource) Err() error { return nil }

func optTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

// progress draws a bar on a terminal; elsewhere (a pipe, a log) it is
// silent, so scripts see only the summary.
type progress struct {
	w          io.Writer
	total, n   int
	lastPct    int
	lastUpdate time.Time
}

func newProgress(w io.Writer, total int) *progress {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return &progress{w: w, total: total, lastPct: -1}
}

func (p *progress) add(n int) {
	if p == nil {
		return
	}
	p.n += n
	pct := 100
	if p.total > 0 {
		pct = p.n * 100 / p.total
	}
	if pct == p.lastPct || time.Since(p.lastUpdate) < 100*time.Millisecond && pct != 100 {
		return
	}
	p.lastPct, p.lastUpdate = pct, time.Now()
	const width = 40
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < pct*width/100 {
			bar[i] = '#'
		}
	}
	fmt.Fprintf(p.w, "\r[%s] %3d%% %d/%d records", bar, pct, p.n, p.total)
}

func (p *progress) done() {
	if p != nil {
		fmt.Fprintln(p.w)
	}
}

// exportRow is one record in the registry file format (docs/configuration.md
// "Registry file"): the names are a fixed interface.
type exportRow struct {
	Domain          string `json:"domain"`
	State           string `json:"state"`
	FilingNumber    string `json:"filing_number,omitempty"`
	Subject         string `json:"subject,omitempty"`
	SubjectType     string `json:"subject_type,omitempty"`
	Province        string `json:"province,omitempty"`
	Upstream        string `json:"upstream,omitempty"`
	RectifyDeadline string `json:"rectify_deadline,omitempty"`
	UpdatedAt       string `json:"updated_at,omitempty"`
}

func (r *exportRow) fields() []string {
	return []string{r.Domain, r.State, r.FilingNumber, r.Subject, r.SubjectType, r.Province,
		r.Upstream, r.RectifyDeadline, r.UpdatedAt}
}

var exportColumns = []string{"domain", "state", "filing_number", "subject", "subject_type",
	"province", "upstream", "rectify_deadline", "updated_at"}

// cmdExport runs `icpgate export [-format jsonl|csv] [-o FILE]`: every
// record of the filing database in the registry file format, ordered by
// domain, streamed (the import of its output changes nothing). Times are
// written at the offset they were imported with, in UTC without one.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	df := addDBFlags(fs)
	format := fs.String("format", "", "jsonl or csv (default: from -o's extension, else jsonl)")
	out := fs.String("o", "", "output file (default: standard output)")
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "icpgate export: unexpected argument %q\n", fs.Arg(0))
		return exitError
	}
	f := *format
	if f == "" {
		f = "jsonl"
		if filepath.Ext(*out) == ".csv" {
			f = "csv"
		}
	}
	if f != "jsonl" && f != "csv" {
		fmt.Fprintf(stderr, "icpgate export: -format must be jsonl or csv, got %q\n", f)
		return exitError
	}
	conn, err := df.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate export: %v\n", err)
		return exitError
	}
	defer conn.Close(context.WithoutCancel(ctx))
	w := stdout
	var file *os.File
	if *out != "" {
		// Written beside the target and renamed: a reader never sees half a file.
		if file, err = os.CreateTemp(filepath.Dir(*out), ".icpgate-export-*"); err != nil {
			fmt.Fprintf(stderr, "icpgate export: %v\n", err)
			return exitError
		}
		defer os.Remove(file.Name())
		defer file.Close()
		w = file
	}
	n, err := exportRecords(ctx, conn, w, f)
	if err == nil && file != nil {
		if err = file.Sync(); err == nil {
			if err = file.Close(); err == nil {
				err = os.Rename(file.Name(), *out)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "icpgate export: %v\n", err)
		return exitError
	}
	if *out != "" {
		fmt.Fprintf(stderr, "exported %d records to %s\n", n, *out)
	}
	return exitOK
}

func exportRecords(ctx context.Context, conn *pgx.Conn, w io.Writer, format string) (int, error) {
	if err := pgschema.Check(ctx, conn); err != nil {
		return 0, err
	}
	rows, err := conn.Query(ctx, `SELECT domain, state, filing_number, subject, subject_type, province,
		upstream, rectify_deadline, updated_at, rectify_deadline_offset, updated_at_offset
		FROM icpgate_records ORDER BY domain`)
	if err != nil {
		return 0, fmt.Errorf("reading records: %w", err)
	}
	defer rows.Close()
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	cw := csv.NewWriter(bw)
	if format == "csv" {
		if err := cw.Write(exportColumns); err != nil {
			return 0, err
		}
	}
	n := 0
	for rows.Next() {
		var r exportRow
		var deadline pgtype.Timestamptz
		var updated time.Time
		var deadlineOff, updatedOff *int16
		if err := rows.Scan(&r.Domain, &r.State, &r.FilingNumber, &r.Subject, &r.SubjectType,
			&r.Province, &r.Upstream, &deadline, &updated, &deadlineOff, &updatedOff); err != nil {
			return n, fmt.Errorf("reading records: %w", err)
		}
		// Each time at the offset it was imported with; in UTC without one.
		if deadline.Valid {
			r.RectifyDeadline = inZone(deadline.Time, deadlineOff).Format(time.RFC3339)
		}
		r.UpdatedAt = inZone(updated, updatedOff).Format(time.RFC3339)
		if format == "csv" {
			err = cw.Write(r.fields())
		} else {
			err = enc.Encode(&r)
		}
		if err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("reading records: %w", err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return n, err
	}
	return n, bw.Flush()
}
