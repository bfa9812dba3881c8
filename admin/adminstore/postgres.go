package adminstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/registry"
	"github.com/icpgate/icpgate/registry/pgschema"
)

// Postgres is the PostgreSQL-mode admin.Backend and admin.TokenStore: the
// tables icpgate_overrides, icpgate_audit and icpgate_tokens of the filing
// database (migration 0002), shared by every gateway on it. An override
// stored here reaches every gateway's registry through the table's change
// trigger and NOTIFY (registry.PostgresSource), usually within
// milliseconds.
//
// A mutation and its audit entry are one transaction. Updates and deletes
// are optimistic: `... WHERE id = $1 AND version = $2`, and no row means
// admin.ErrConflict when the override still exists, admin.ErrNotFound
// when it does not.
//
// Errors that mean the database cannot answer (down, unreachable, timed
// out, shutting down, not migrated) wrap ErrUnavailable; the admin API
// answers 503 and the data plane keeps serving from its snapshot.
//
// All methods are safe for concurrent use.
type Postgres struct {
	pool *pgxpool.Pool
}

// OpenPostgres returns the store in the filing database at dsn (a libpq
// URL or key=value string; pgxpool's pool_* parameters apply). It does not
// connect: a gateway starts while the database is down, and each call
// connects as needed (failing with ErrUnavailable meanwhile). Check
// connects and checks the schema, for commands that want to fail early.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("adminstore: dsn: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("adminstore: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Close closes the pool's connections.
func (p *Postgres) Close() { p.pool.Close() }

// Check connects and checks that the schema is current (pgschema.Check).
// Its error wraps ErrUnavailable, and pgschema.ErrNotMigrated or
// ErrNewerSchema when that is the reason.
func (p *Postgres) Check(ctx context.Context) error {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return p.fail("connecting", err)
	}
	defer c.Release()
	if err := pgschema.Check(ctx, c.Conn()); err != nil {
		if errors.Is(err, pgschema.ErrNotMigrated) || errors.Is(err, pgschema.ErrNewerSchema) {
			return fmt.Errorf("adminstore: %w: %w", ErrUnavailable, err)
		}
		return p.fail("checking the schema", err)
	}
	return nil
}

// fail names what failed and classifies err: the caller's own errors (not
// found, conflict, invalid input) pass unchanged; a context the caller
// cancelled is returned as such; an error from a server that answered is
// returned wrapped; anything else, and server errors that mean it cannot
// serve, wrap ErrUnavailable.
func (p *Postgres) fail(op string, err error) error {
	var ce callerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return ce.err
	case errors.Is(err, admin.ErrNotFound), errors.Is(err, admin.ErrConflict),
		errors.Is(err, registry.ErrInvalidOverride), errors.Is(err, ErrNameTaken):
		return err
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("adminstore: %s: %w", op, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "42P01", pe.Code == "42703": // undefined table, column
			return fmt.Errorf("adminstore: %s: %w: schema not migrated (run icpgate db migrate): %w", op, ErrUnavailable, err)
		case len(pe.Code) == 5 && strings.Contains("08 53 57 58 3D", pe.Code[:2]):
			// connection exception, insufficient resources, operator
			// intervention (shutdown), system error, no such database
			return fmt.Errorf("adminstore: %s: %w: %w", op, ErrUnavailable, err)
		}
		return fmt.Errorf("adminstore: %s: %w", op, err)
	}
	// No answer: refused, reset, timed out, pool closed.
	return fmt.Errorf("adminstore: %s: %w: %w", op, ErrUnavailable, err)
}

const overrideCols = `id, host, scope, action, expires, reason, ticket, who, created, version, updated`

func scanOverride(row pgx.Row) (admin.Override, error) {
	var o admin.Override
	var id int64
	var scope, action string
	var expires *time.Time
	err := row.Scan(&id, &o.Host, &scope, &action, &expires, &o.Reason, &o.Ticket, &o.Who,
		&o.Created, &o.Version, &o.Updated)
	if err != nil {
		return o, err
	}
	if o.Scope, err = parseScope(scope); err != nil {
		return o, fmt.Errorf("override %d: %w", id, err)
	}
	if o.Action, err = parseAction(action); err != nil {
		return o, fmt.Errorf("override %d: %w", id, err)
	}
	o.ID = strconv.FormatInt(id, 10)
	if expires != nil {
		o.Expires = expires.UTC()
	}
	o.Created, o.Updated = o.Created.UTC(), o.Updated.UTC()
	return o, nil
}

// pgID reads an override ID; anything but a positive decimal number names
// no override.
func pgID(id string) (int64, bool) {
	n, ok := parseID(id)
	return int64(n), ok && n <= 1<<63-1
}

// nullTime is t, or NULL when t is zero.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// nullJSON is raw as a json parameter, or NULL when empty.
func nullJSON(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	return string(raw)
}

// insertAudit appends e in tx (or on the pool) and sets its ID.
func insertAudit(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, e *admin.AuditEntry) error {
	return q.QueryRow(ctx, `INSERT INTO icpgate_audit
		(at, who, role, remote, action, target, input, normalized, "before", "after", outcome, message)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
		e.At, e.Who, e.Role, e.Remote, e.Action, e.Target, nullJSON(e.Input), e.Normalized,
		nullJSON(e.Before), nullJSON(e.After), e.Outcome, e.Detail).Scan(&e.ID)
}

// ListOverrides returns overrides matching f, by ID ascending.
func (p *Postgres) ListOverrides(ctx context.Context, f admin.OverrideFilter) ([]admin.Override, error) {
	var action string
	if f.Action != 0 {
		action = f.Action.String()
	}
	rows, err := p.pool.Query(ctx, `SELECT `+overrideCols+` FROM icpgate_overrides
		WHERE id > $1
		  AND ($2 = '' OR action = $2)
		  AND ($3 = '' OR strpos(host, $3) > 0)
		  AND ($4::boolean IS NULL OR (expires IS NULL OR expires > $5) = $4)
		ORDER BY id LIMIT $6`,
		f.After, action, strings.ToLower(f.Query), f.Active, filterNow(&f), limit(f.Limit))
	if err != nil {
		return nil, p.fail("listing overrides", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (admin.Override, error) { return scanOverride(r) })
	if err != nil {
		return nil, p.fail("listing overrides", err)
	}
	return out, nil
}

// GetOverride returns one override or admin.ErrNotFound.
func (p *Postgres) GetOverride(ctx context.Context, id string) (admin.Override, error) {
	n, ok := pgID(id)
	if !ok {
		return admin.Override{}, admin.ErrNotFound
	}
	o, err := scanOverride(p.pool.QueryRow(ctx, `SELECT `+overrideCols+` FROM icpgate_overrides WHERE id = $1`, n))
	if errors.Is(err, pgx.ErrNoRows) {
		return admin.Override{}, admin.ErrNotFound
	}
	if err != nil {
		return admin.Override{}, p.fail("reading override "+id, err)
	}
	return o, nil
}

// CreateOverride stores o with a new ID, Created now (audit.At when set)
// and Version 1, and its audit entry, in one transaction.
func (p *Postgres) CreateOverride(ctx context.Context, o registry.Override, audit admin.AuditEntry) (admin.Override, error) {
	at, err := beginCreate(&o, &audit)
	if err != nil {
		return admin.Override{}, err
	}
	var stored admin.Override
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO icpgate_overrides
			(host, scope, action, expires, reason, ticket, who, created, version, updated)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $8) RETURNING id`,
			o.Host, o.Scope.String(), o.Action.String(), nullTime(o.Expires), o.Reason, o.Ticket,
			o.Who, at).Scan(&id)
		if err != nil {
			return err
		}
		o.ID = strconv.FormatInt(id, 10)
		stored = admin.Override{Override: o, Version: 1, Updated: at}
		if audit.Target == "" {
			audit.Target = o.ID
		}
		audit.Before, audit.After = nil, overrideJSON(stored, at)
		return insertAudit(ctx, tx, &audit)
	})
	if err != nil {
		return admin.Override{}, p.fail("creating an override", err)
	}
	return stored, nil
}

// missing tells, after an update or delete matched no row, whether the
// override is gone (admin.ErrNotFound) or has another version
// (admin.ErrConflict).
func missing(ctx context.Context, tx pgx.Tx, id int64) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM icpgate_overrides WHERE id = $1)`, id).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return admin.ErrConflict
	}
	return admin.ErrNotFound
}

// UpdateOverride applies change to override id if its version is version,
// bumps the version and writes the audit entry, in one transaction. The
// change may not alter the ID, Created or Who (created_by): they are kept.
func (p *Postgres) UpdateOverride(ctx context.Context, id string, version int64, change func(*registry.Override) error, audit admin.AuditEntry) (admin.Override, error) {
	n, ok := pgID(id)
	if !ok {
		return admin.Override{}, admin.ErrNotFound
	}
	at, err := beginMutation(&audit)
	if err != nil {
		return admin.Override{}, err
	}
	var stored admin.Override
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		cur, err := scanOverride(tx.QueryRow(ctx, `SELECT `+overrideCols+` FROM icpgate_overrides WHERE id = $1`, n))
		if errors.Is(err, pgx.ErrNoRows) {
			return admin.ErrNotFound
		}
		if err != nil {
			return err
		}
		if cur.Version != version {
			return admin.ErrConflict
		}
		next, err := applyChange(cur.Override, change)
		if err != nil {
			return callerError{err}
		}
		tag, err := tx.Exec(ctx, `UPDATE icpgate_overrides
			SET host = $3, scope = $4, action = $5, expires = $6, reason = $7, ticket = $8,
			    version = version + 1, updated = $9
			WHERE id = $1 AND version = $2`,
			n, version, next.Host, next.Scope.String(), next.Action.String(), nullTime(next.Expires),
			next.Reason, next.Ticket, at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 { // changed or deleted since the read
			return missing(ctx, tx, n)
		}
		stored = admin.Override{Override: next, Version: version + 1, Updated: at}
		if audit.Target == "" {
			audit.Target = id
		}
		audit.Before, audit.After = overrideJSON(cur, at), overrideJSON(stored, at)
		return insertAudit(ctx, tx, &audit)
	})
	if err != nil {
		return admin.Override{}, p.fail("updating override "+id, err)
	}
	return stored, nil
}

// DeleteOverride removes override id if its version is version, and
// writes the audit entry, in one transaction. It returns the deleted
// override.
func (p *Postgres) DeleteOverride(ctx context.Context, id string, version int64, audit admin.AuditEntry) (admin.Override, error) {
	n, ok := pgID(id)
	if !ok {
		return admin.Override{}, admin.ErrNotFound
	}
	at, err := beginMutation(&audit)
	if err != nil {
		return admin.Override{}, err
	}
	var cur admin.Override
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var err error
		cur, err = scanOverride(tx.QueryRow(ctx, `DELETE FROM icpgate_overrides
			WHERE id = $1 AND version = $2 RETURNING `+overrideCols, n, version))
		if errors.Is(err, pgx.ErrNoRows) {
			return missing(ctx, tx, n)
		}
		if err != nil {
			return err
		}
		if audit.Target == "" {
			audit.Target = id
		}
		audit.Before, audit.After = overrideJSON(cur, at), nil
		return insertAudit(ctx, tx, &audit)
	})
	if err != nil {
		return admin.Override{}, p.fail("deleting override "+id, err)
	}
	return cur, nil
}

// Overrides returns every override, expired ones too, by ID.
func (p *Postgres) Overrides(ctx context.Context) ([]registry.Override, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+overrideCols+` FROM icpgate_overrides ORDER BY id`)
	if err != nil {
		return nil, p.fail("reading overrides", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (registry.Override, error) {
		o, err := scanOverride(r)
		return o.Override, err
	})
	if err != nil {
		return nil, p.fail("reading overrides", err)
	}
	return out, nil
}

// AppendAudit appends an entry that goes with no change.
func (p *Postgres) AppendAudit(ctx context.Context, e admin.AuditEntry) error {
	if err := prepareAudit(&e, stamp(time.Now()), false); err != nil {
		return err
	}
	if err := insertAudit(ctx, p.pool, &e); err != nil {
		return p.fail("appending to the audit log", err)
	}
	return nil
}

// ListAudit returns entries matching f, newest (highest ID) first. Rows
// that other tools wrote (icpgate import, db confirm-deletes) have their
// jsonb detail as Detail.
func (p *Postgres) ListAudit(ctx context.Context, f admin.AuditFilter) ([]admin.AuditEntry, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, at, who, role, remote, action, target, input, normalized,
			"before", "after", outcome,
			CASE WHEN message <> '' THEN message ELSE coalesce(detail::text, '') END
		FROM icpgate_audit
		WHERE ($1 = 0 OR id < $1)
		  AND ($2 = '' OR who = $2)
		  AND ($3 = '' OR action = $3)
		  AND ($4 = '' OR target = $4 OR normalized = $4)
		  AND ($5::timestamptz IS NULL OR at >= $5)
		  AND ($6::timestamptz IS NULL OR at < $6)
		ORDER BY id DESC LIMIT $7`,
		f.Before, f.Who, f.Action, f.Target, nullTime(f.Since), nullTime(f.Until), limit(f.Limit))
	if err != nil {
		return nil, p.fail("listing the audit log", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (admin.AuditEntry, error) {
		var e admin.AuditEntry
		var input, before, after []byte
		err := r.Scan(&e.ID, &e.At, &e.Who, &e.Role, &e.Remote, &e.Action, &e.Target, &input,
			&e.Normalized, &before, &after, &e.Outcome, &e.Detail)
		e.At = e.At.UTC()
		e.Input, e.Before, e.After = input, before, after
		return e, err
	})
	if err != nil {
		return nil, p.fail("listing the audit log", err)
	}
	return out, nil
}

const tokenCols = `id, name, role, hash, created, revoked_at IS NOT NULL`

func scanToken(row pgx.Row) (admin.Token, error) {
	var t admin.Token
	var role string
	var hash []byte
	if err := row.Scan(&t.ID, &t.Name, &role, &hash, &t.Created, &t.Revoked); err != nil {
		return t, err
	}
	r, err := admin.ParseRole(role)
	if err != nil {
		return t, fmt.Errorf("token %s: %w", t.ID, err)
	}
	if len(hash) != len(t.Hash) {
		return t, fmt.Errorf("token %s: hash of %d bytes", t.ID, len(hash))
	}
	t.Role = r
	copy(t.Hash[:], hash)
	t.Created = t.Created.UTC()
	return t, nil
}

// Lookup returns the live token with this hash, or admin.ErrNotFound. It
// is one indexed equality: the hash of a 256-bit random secret leaks
// nothing usable through timing (see admin.HashToken).
func (p *Postgres) Lookup(ctx context.Context, hash [32]byte) (admin.Token, error) {
	t, err := scanToken(p.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM icpgate_tokens
		WHERE hash = $1 AND revoked_at IS NULL`, hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return admin.Token{}, admin.ErrNotFound
	}
	if err != nil {
		return admin.Token{}, p.fail("looking up a token", err)
	}
	return t, nil
}

// Create adds t (Created now when zero). A live token with the same name
// is ErrNameTaken; the same ID or hash as any token is an error too.
func (p *Postgres) Create(ctx context.Context, t admin.Token) error {
	t, err := checkToken(t, time.Now())
	if err != nil {
		return err
	}
	_, err = p.pool.Exec(ctx, `INSERT INTO icpgate_tokens (id, name, role, hash, created)
		VALUES ($1, $2, $3, $4, $5)`, t.ID, t.Name, t.Role.String(), t.Hash[:], t.Created)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique violation
		switch pe.ConstraintName {
		case "icpgate_tokens_live_name":
			return fmt.Errorf("token %s: %w", t.Name, ErrNameTaken)
		case "icpgate_tokens_pkey":
			return fmt.Errorf("token %s: id %s already exists", t.Name, t.ID)
		default:
			return fmt.Errorf("token %s: the same secret already exists", t.Name)
		}
	}
	if err != nil {
		return p.fail("creating token "+t.Name, err)
	}
	return nil
}

// List returns every token, revoked ones too, oldest first.
func (p *Postgres) List(ctx context.Context) ([]admin.Token, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+tokenCols+` FROM icpgate_tokens ORDER BY created, id`)
	if err != nil {
		return nil, p.fail("listing tokens", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (admin.Token, error) { return scanToken(r) })
	if err != nil {
		return nil, p.fail("listing tokens", err)
	}
	return out, nil
}

// Revoke revokes the live token with this name or ID, or returns
// admin.ErrNotFound. A name that is also another live token's ID is
// ambiguous and refused.
func (p *Postgres) Revoke(ctx context.Context, nameOrID string) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM icpgate_tokens
			WHERE revoked_at IS NULL AND (id = $1 OR name = $1) FOR UPDATE`, nameOrID)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		switch len(ids) {
		case 0:
			return callerError{fmt.Errorf("token %q: %w", nameOrID, admin.ErrNotFound)}
		case 1:
		default:
			return callerError{fmt.Errorf("token %q: names two live tokens (%s and %s); revoke by ID", nameOrID, ids[0], ids[1])}
		}
		_, err = tx.Exec(ctx, `UPDATE icpgate_tokens SET revoked_at = now() WHERE id = $1`, ids[0])
		return err
	})
	if err != nil {
		return p.fail("revoking token "+nameOrID, err)
	}
	return nil
}
