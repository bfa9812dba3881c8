// Package pgschema holds icpgate's schema in the filing database
// (PostgreSQL 15) as numbered SQL migrations embedded in the binary, and
// applies them (Migrate, run by `icpgate db migrate`).
//
// Migrations are files migrations/NNNN_name.sql, applied in order, each in
// its own transaction together with its row in icpgate_schema_migrations,
// under an advisory lock so two nodes migrating at once do not race.
// Applying them again does nothing: Migrate is idempotent. A database that
// has a migration this binary does not know (a newer icpgate migrated it)
// is an error rather than a silent downgrade. The schema itself is
// documented in README.md beside this file.
//
// Usage:
//
//	conn, err := pgx.Connect(ctx, dsn)
//	...
//	applied, err := pgschema.Migrate(ctx, conn)
package pgschema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// ErrNewerSchema is returned when the database has migrations this binary
// does not know.
var ErrNewerSchema = errors.New("database schema is newer than this icpgate")

// ErrNotMigrated is returned (wrapped) by Check when the database lacks
// migrations.
var ErrNotMigrated = errors.New("database schema not migrated")

// Migration is one embedded schema change.
type Migration struct {
	Version int    // from the file name's leading number
	Name    string // file name
	SQL     string
}

// lockID is the advisory lock key serialising migrations ("icpgate" in
// ASCII, as a number).
const lockID = 0x6963706761746500

// Migrations returns the embedded migrations in version order.
func Migrations() []Migration {
	ents, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	var ms []Migration
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic("pgschema: bad migration file name " + e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic(err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms
}

// Latest returns the highest embedded migration version.
func Latest() int {
	ms := Migrations()
	return ms[len(ms)-1].Version
}

// Migrate applies the embedded migrations the database lacks and returns
// the versions it applied (none when the schema is current).
func Migrate(ctx context.Context, conn *pgx.Conn) ([]int, error) {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(lockID)); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(lockID))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS icpgate_schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("creating icpgate_schema_migrations: %w", err)
	}
	have, err := versions(ctx, conn)
	if err != nil {
		return nil, err
	}
	ms := Migrations()
	known := make(map[int]bool, len(ms))
	for _, m := range ms {
		known[m.Version] = true
	}
	for v := range have {
		if !known[v] {
			return nil, fmt.Errorf("%w: it has migration %d, this binary knows up to %d", ErrNewerSchema, v, Latest())
		}
	}
	var applied []int
	for _, m := range ms {
		if have[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO icpgate_schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("applying migration %s: %w", m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// Check returns nil when the database has every embedded migration, and
// an error wrapping ErrNotMigrated (or ErrNewerSchema) otherwise. A
// gateway calls it before syncing so that an unmigrated database is
// reported as such, not as a missing table.
func Check(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('icpgate_schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("checking the schema: %w", err)
	}
	if !exists {
		return fmt.Errorf("%w: run icpgate db migrate", ErrNotMigrated)
	}
	have, err := versions(ctx, conn)
	if err != nil {
		return err
	}
	for _, m := range Migrations() {
		if !have[m.Version] {
			return fmt.Errorf("%w: migration %s missing: run icpgate db migrate", ErrNotMigrated, m.Name)
		}
		delete(have, m.Version)
	}
	for v := range have {
		return fmt.Errorf("%w: it has migration %d", ErrNewerSchema, v)
	}
	return nil
}

func versions(ctx context.Context, conn *pgx.Conn) (map[int]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM icpgate_schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("reading icpgate_schema_migrations: %w", err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("reading icpgate_schema_migrations: %w", err)
	}
	have := make(map[int]bool, len(vs))
	for _, v := range vs {
		have[int(v)] = true
	}
	return have, nil
}
