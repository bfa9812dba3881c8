package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/proxy"
)

// pgCertStorage is a certmagic.Storage in the filing database, so that
// every gateway node shares the HTTPS block page's ACME account, keys and
// certificates instead of each ordering its own (policy.tls_block: page
// with registry.postgres.dsn).
//
// Values live in one table, icpgate_certmagic (created if missing), keyed
// by certmagic's slash-separated keys; "directories" are implicit prefixes.
// Storage calls are rare (an issuance, a cache miss), so they share one
// connection, serialised and reopened after a failure. Locks are
// PostgreSQL session advisory locks, each on a connection of its own held
// for the lock's duration: a node that dies loses its sessions and with
// them its locks, so no lock outlives its holder.
type pgCertStorage struct {
	dsn string

	connMu sync.Mutex // guards conn, serialises its use
	conn   *pgx.Conn  // nil until first use or after a failure

	mu    sync.Mutex           // guards locks
	locks map[string]*pgx.Conn // held advisory locks by name
}

var _ certmagic.Storage = (*pgCertStorage)(nil)

// certLockClass namespaces the advisory locks (the first key of the
// two-key form) so they cannot collide with other users of the database.
const certLockClass = 0x1c9_ce47

const certTableDDL = `CREATE TABLE IF NOT EXISTS icpgate_certmagic (
	key      text PRIMARY KEY,
	value    bytea NOT NULL,
	modified timestamptz NOT NULL DEFAULT now()
)`

// newPGCertStorage returns the storage in the database at dsn. It does
// not connect: the gateway starts with the database down (fail-static),
// and until it is back, page certificates that are not in memory cannot
// be had, so those clients get the alert (fail-closed).
func newPGCertStorage(dsn string) (*pgCertStorage, error) {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return nil, fmt.Errorf("certificate storage: %w", err)
	}
	return &pgCertStorage{dsn: dsn, locks: make(map[string]*pgx.Conn)}, nil
}

// do runs f on the shared connection, opening it (and creating the table
// if missing) when needed; a failure closes it so the next call starts
// afresh.
func (s *pgCertStorage) do(ctx context.Context, f func(*pgx.Conn) error) error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn == nil || s.conn.IsClosed() {
		c, err := pgx.Connect(ctx, s.dsn)
		if err != nil {
			return err
		}
		if _, err := c.Exec(ctx, certTableDDL); err != nil {
			c.Close(context.Background())
			return fmt.Errorf("creating table: %w", err)
		}
		s.conn = c
	}
	err := f(s.conn)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		s.conn.Close(context.Background())
		s.conn = nil
	}
	return err
}

// Close ends the sessions, releasing any held locks.
func (s *pgCertStorage) Close() {
	s.mu.Lock()
	for name, c := range s.locks {
		c.Close(context.Background())
		delete(s.locks, name)
	}
	s.mu.Unlock()
	s.connMu.Lock()
	if s.conn != nil {
		s.conn.Close(context.Background())
		s.conn = nil
	}
	s.connMu.Unlock()
}

// Store puts value at key.
func (s *pgCertStorage) Store(ctx context.Context, key string, value []byte) error {
	err := s.do(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO icpgate_certmagic (key, value, modified) VALUES ($1, $2, now())
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, modified = excluded.modified`, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	return nil
}

// Load returns the value at key, or an error matching fs.ErrNotExist.
func (s *pgCertStorage) Load(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.do(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT value FROM icpgate_certmagic WHERE key = $1`, key).Scan(&v)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("loading %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", key, err)
	}
	return v, nil
}

// Delete removes key and every key below it.
func (s *pgCertStorage) Delete(ctx context.Context, key string) error {
	err := s.do(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `DELETE FROM icpgate_certmagic WHERE key = $1 OR starts_with(key, $1 || '/')`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is a value or a prefix of values.
func (s *pgCertStorage) Exists(ctx context.Context, key string) bool {
	var ok bool
	err := s.do(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM icpgate_certmagic WHERE key = $1 OR starts_with(key, $1 || '/'))`, key).Scan(&ok)
	})
	return err == nil && ok
}

// List returns the keys below path: all of them when recursive, else the
// direct children (values and implicit directories).
func (s *pgCertStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	prefix := path + "/"
	if path == "" {
		prefix = ""
	}
	var keys []string
	err := s.do(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT key FROM icpgate_certmagic WHERE starts_with(key, $1)`, prefix)
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("listing %s: %w", path, fs.ErrNotExist)
	}
	if recursive {
		return keys, nil
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		child, _, _ := strings.Cut(k[len(prefix):], "/")
		out = append(out, prefix+child)
	}
	slices.Sort(out) // byte order, whatever the database's collation
	return slices.Compact(out), nil
}

// Stat describes key: a value (terminal) or an implicit directory.
func (s *pgCertStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	var size int64
	var modified time.Time
	err := s.do(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT length(value), modified FROM icpgate_certmagic WHERE key = $1`, key).Scan(&size, &modified)
	})
	switch {
	case err == nil:
		return certmagic.KeyInfo{Key: key, Modified: modified, Size: size, IsTerminal: true}, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, err)
	case s.Exists(ctx, key):
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, fs.ErrNotExist)
}

// Lock takes the cluster-wide lock name, waiting until it is free or ctx
// is done.
func (s *pgCertStorage) Lock(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("locking %s: %w", name, err)
	}
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, certLockClass, name); err != nil {
		c.Close(context.Background()) // ends the wait server-side too
		return fmt.Errorf("locking %s: %w", name, err)
	}
	s.mu.Lock()
	s.locks[name] = c
	s.mu.Unlock()
	return nil
}

// Unlock releases the lock name taken by Lock.
func (s *pgCertStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	c := s.locks[name]
	delete(s.locks, name)
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("unlocking %s: not locked", name)
	}
	// Ending the session releases its advisory locks; unlock explicitly
	// first so a failure is reported.
	_, err := c.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, certLockClass, name)
	c.Close(context.Background())
	if err != nil {
		return fmt.Errorf("unlocking %s: %w", name, err)
	}
	return nil
}

// withCertStorage returns pc with the page certificates kept in st, when
// there is a filing database (st non-nil).
func withCertStorage(pc proxy.Config, st *pgCertStorage) proxy.Config {
	if st != nil {
		pc.Policy.TLSPage.Storage = st
	}
	return pc
}
