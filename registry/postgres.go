package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/icpgate/icpgate/registry/pgschema"
)

// ErrMassDelete is returned (wrapped) when a sync would remove more of the
// registry than PostgresOptions.MaxDeleteFraction allows and no operator
// has confirmed it (icpgate db confirm-deletes). The serving snapshot stays.
var ErrMassDelete = errors.New("sync would delete too many records")

// ErrSequenceGap is returned (wrapped) when the change sequence skips a
// number the gateway has not seen: the history it needs is gone, and it
// reloads in full.
var ErrSequenceGap = errors.New("change sequence gap")

// Sync error kinds, the closed set of SyncStats.Errors keys (metric label
// values).
const (
	SyncErrConnect    = "connect"     // cannot connect, or the connection broke
	SyncErrSchema     = "schema"      // database not migrated or newer
	SyncErrQuery      = "query"       // a query failed
	SyncErrGap        = "gap"         // sequence gap: full reload
	SyncErrInvalidRow = "invalid_row" // a row failed validation and was rejected
	SyncErrMassDelete = "mass_delete" // refused by the mass-deletion guard
	SyncErrStore      = "store"       // writing the local store failed
)

// SyncErrorKinds returns every sync error kind, for pre-registering metric
// label values.
func SyncErrorKinds() []string {
	return []string{SyncErrConnect, SyncErrSchema, SyncErrQuery, SyncErrGap,
		SyncErrInvalidRow, SyncErrMassDelete, SyncErrStore}
}

// Defaults of PostgresOptions.
const (
	DefaultPollInterval      = 10 * time.Second
	DefaultMaxDeleteFraction = 0.1
)

// notifyChannel is the channel the schema's triggers NOTIFY.
const notifyChannel = "icpgate_changes"

// PostgresOptions configure a PostgresSource.
type PostgresOptions struct {
	// DSN is a libpq URL or key=value string. Required.
	DSN string
	// PollInterval is how often the source checks for changes when no
	// NOTIFY arrives (a NOTIFY lost with a connection, a proxy that drops
	// them). Default DefaultPollInterval.
	PollInterval time.Duration
	// MaxDeleteFraction refuses a sync that would remove more than this
	// fraction of the serving records until an operator confirms it.
	// Default DefaultMaxDeleteFraction (10%); 1 disables the guard.
	MaxDeleteFraction float64
	// MaxIncremental is the largest number of pending changes applied
	// incrementally; more are loaded in full, which is then cheaper.
	// Default max(10000, records/64).
	MaxIncremental int
	// Store, if set, receives every installed snapshot and the cursor.
	Store *Store
	// Logger receives sync events; default: discard.
	Logger *slog.Logger
	// OnSync, if set, is called after every sync attempt: kind is "full"
	// or "incremental", d how long it took, err nil on success.
	OnSync func(kind string, d time.Duration, err error)
	// OnLag, if set, is called for each applied change with the time from
	// the change in the database (its statement's clock) to its being
	// visible in decisions. Clock skew between the hosts adds to it.
	OnLag func(time.Duration)
}

// SyncStats are a PostgresSource's state and counters.
type SyncStats struct {
	Connected   bool      // a database session is up
	Cursor      int64     // last change sequence number applied
	LastSuccess time.Time // last time the registry was known current; zero before
	LastError   error     // last failed sync, nil after a success
	FullLoads   uint64    // full loads installed
	Incremental uint64    // incremental syncs that applied changes
	InvalidRows uint64    // rows rejected as invalid, all syncs (each time read)
	// Errors counts failures by kind (SyncErrorKinds); every kind present.
	Errors map[string]uint64
	// DeletionRefused is the number of records a refused sync would have
	// removed, while the refusal stands (0 otherwise): the alert.
	DeletionRefused int
	// FromStore reports that the serving snapshot came from the local
	// store and no sync has succeeded since.
	FromStore bool
	// StoreSavedAt is when the restored store snapshot was last synced.
	StoreSavedAt time.Time
}

// PostgresSource feeds a Registry from the filing database: a streamed full
// load, then incremental changes by the change sequence (see package
// pgschema), woken by LISTEN/NOTIFY and by polling, reconnecting with
// backoff. The last good snapshot and the cursor go to the local Store, if
// any, so a restart serves at once (LoadStore) and catches up from the
// cursor.
//
// Fail-static: a failed or refused sync never changes the serving
// snapshot. A row that fails validation is rejected: its domain has no
// record (an earlier one is dropped, in a full load as in an incremental
// sync, so every node and icpgate check decide it alike), the snapshot
// remembers the row and why (Decision.Rejected, up to MaxRejectedRows),
// and it is logged with its domain, field and value, and counted. Rows
// rejected in bulk count as deletions against MaxDeleteFraction.
type PostgresSource struct {
	reg  *Registry
	opts PostgresOptions
	log  *slog.Logger

	// mu guards the fields below it; the sync itself runs on one goroutine.
	mu          sync.Mutex
	connected   bool
	lostAt      time.Time // when the last session ended (zero: never lost, or back since)
	cursor      int64
	dbID        string
	lastSuccess time.Time
	lastErr     error
	refused     int
	fromStore   bool
	storeSaved  time.Time
	errors      map[string]uint64

	// saveMu guards the background store writer's state.
	saveMu      sync.Mutex
	saving      bool
	savePending *pendingSave
	saveDone    chan struct{} // closed when the writer started last exits

	fullLoads, incremental, invalidRows atomic.Uint64
	// wakeups counts NOTIFY wake-ups, for tests.
	wakeups atomic.Uint64
}

// NewPostgresSource returns a source for reg. It does not connect: Run
// does.
func NewPostgresSource(reg *Registry, opts PostgresOptions) (*PostgresSource, error) {
	if opts.DSN == "" {
		return nil, errors.New("postgres source: dsn required")
	}
	if _, err := pgx.ParseConfig(opts.DSN); err != nil {
		return nil, fmt.Errorf("postgres source: dsn: %w", err)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxDeleteFraction <= 0 {
		opts.MaxDeleteFraction = DefaultMaxDeleteFraction
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &PostgresSource{reg: reg, opts: opts, log: log.With("component", "registry_postgres"),
		errors: make(map[string]uint64)}
	return p, nil
}

// Stats returns the source's state and counters.
func (p *PostgresSource) Stats() SyncStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := SyncStats{
		Connected: p.connected, Cursor: p.cursor, LastSuccess: p.lastSuccess,
		LastError: p.lastErr, DeletionRefused: p.refused, FromStore: p.fromStore,
		StoreSavedAt: p.storeSaved,
		FullLoads:    p.fullLoads.Load(), Incremental: p.incremental.Load(),
		InvalidRows: p.invalidRows.Load(), Errors: make(map[string]uint64, 8),
	}
	for _, k := range SyncErrorKinds() {
		st.Errors[k] = p.errors[k]
	}
	return st
}

// LoadStore installs the local store's snapshot, if the store has a good
// one, and takes its cursor, so the node serves at once and Run catches
// up from there. It reports whether a snapshot was installed. A corrupt
// store has been discarded by then (OpenStore, Load) and is not an error
// here: the node waits for a full load.
func (p *PostgresSource) LoadStore() (bool, error) {
	if p.opts.Store == nil {
		return false, nil
	}
	snap, st, err := p.opts.Store.Load()
	if err != nil {
		p.countError(SyncErrStore)
		return false, err
	}
	if snap == nil {
		return false, nil
	}
	p.reg.Swap(snap)
	p.mu.Lock()
	p.cursor, p.dbID, p.fromStore, p.storeSaved = st.Cursor, st.DatabaseID, true, st.SavedAt
	p.mu.Unlock()
	p.log.Info("registry restored from the local store", "records", snap.Len(), "cursor", st.Cursor,
		"synced_at", st.SavedAt, "age_seconds", time.Since(st.SavedAt).Seconds())
	return true, nil
}

func (p *PostgresSource) countError(kind string) {
	p.mu.Lock()
	p.errors[kind]++
	p.mu.Unlock()
}

// kindError tags an error with its sync error kind.
type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func tag(kind string, err error) error {
	if err == nil {
		return nil
	}
	var ke *kindError
	if errors.As(err, &ke) {
		return err
	}
	return &kindError{kind: kind, err: err}
}

func kindOf(err error) string {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return SyncErrQuery
}

// Run syncs until ctx is done, then returns nil: connect, catch up (in full
// when the cursor cannot be trusted), then wait for a NOTIFY or the poll
// interval and catch up again. A lost connection is retried with
// exponential backoff (100 ms doubling to 10 s, with jitter); the serving
// snapshot stays meanwhile.
func (p *PostgresSource) Run(ctx context.Context) error {
	defer p.Flush()
	const minBackoff, maxBackoff = 100 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	for {
		synced, err := p.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		p.mu.Lock()
		p.connected = false
		if p.lostAt.IsZero() {
			p.lostAt = time.Now()
		}
		p.mu.Unlock()
		if synced {
			backoff = minBackoff
		}
		p.log.Warn("filing database session ended; serving the last good snapshot",
			"error", err.Error(), "kind", kindOf(err), "retry_in_seconds", backoff.Seconds())
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, maxBackoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// session runs one database session. synced reports whether it completed
// at least one sync (which resets the backoff).
func (p *PostgresSource) session(ctx context.Context) (synced bool, err error) {
	conn, err := p.connect(ctx)
	if err != nil {
		p.countError(kindOf(err))
		p.setErr(err)
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		err = tag(SyncErrConnect, fmt.Errorf("listen: %w", err))
		p.countError(SyncErrConnect)
		return false, err
	}
	p.mu.Lock()
	p.connected = true
	lostAt := p.lostAt
	p.lostAt = time.Time{}
	p.mu.Unlock()
	if !lostAt.IsZero() {
		// The pair of the "session ended" warning: ops see when the
		// outage ended, not only that retries stopped being logged.
		p.log.Info("filing database connection restored", "down_seconds", time.Since(lostAt).Seconds())
	}
	for {
		if err := p.syncOnce(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return synced, ctx.Err()
			}
			if conn.IsClosed() {
				return synced, tag(SyncErrConnect, err)
			}
			// A refused or invalid sync on a healthy connection: wait for
			// the next change or poll and try again.
		} else {
			synced = true
		}
		wctx, cancel := context.WithTimeout(ctx, p.opts.PollInterval)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			p.wakeups.Add(1)
		case ctx.Err() != nil:
			return synced, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Poll.
		default:
			err = tag(SyncErrConnect, fmt.Errorf("waiting for changes: %w", err))
			p.countError(SyncErrConnect)
			p.setErr(err)
			return synced, err
		}
	}
}

func (p *PostgresSource) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.opts.DSN)
	if err != nil {
		return nil, tag(SyncErrConnect, err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "icpgate"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, tag(SyncErrConnect, fmt.Errorf("connecting to the filing database: %w", err))
	}
	if err := pgschema.Check(ctx, conn); err != nil {
		conn.Close(ctx)
		if errors.Is(err, pgschema.ErrNotMigrated) || errors.Is(err, pgschema.ErrNewerSchema) {
			return nil, tag(SyncErrSchema, err)
		}
		return nil, tag(SyncErrConnect, err) // the session failed while checking
	}
	return conn, nil
}

func (p *PostgresSource) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// Sync connects, catches up once and disconnects. It is for tools and
// tests; a gateway uses Run.
func (p *PostgresSource) Sync(ctx context.Context) error {
	conn, err := p.connect(ctx)
	if err != nil {
		p.countError(kindOf(err))
		p.setErr(err)
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	defer p.Flush()
	return p.syncOnce(ctx, conn)
}

// syncOnce brings the registry up to the database's head: incrementally
// when the cursor is trusted and not too far behind, else in full.
func (p *PostgresSource) syncOnce(ctx context.Context, conn *pgx.Conn) error {
	start := time.Now()
	kind, err := p.catchUp(ctx, conn)
	if kind == "" {
		kind = "incremental"
	}
	if err != nil {
		if conn.IsClosed() && ctx.Err() == nil {
			// The query failed because the connection went: a database
			// restart or a network cut, not a bad query.
			err = &kindError{kind: SyncErrConnect, err: err}
		}
		p.countError(kindOf(err))
		p.setErr(err)
		p.log.Error("registry sync failed; serving the last good snapshot", "sync", kind,
			"kind", kindOf(err), "error", err.Error())
	} else {
		p.mu.Lock()
		p.lastSuccess, p.lastErr, p.fromStore = time.Now(), nil, false
		p.mu.Unlock()
	}
	if p.opts.OnSync != nil {
		p.opts.OnSync(kind, time.Since(start), err)
	}
	return err
}

func (p *PostgresSource) catchUp(ctx context.Context, conn *pgx.Conn) (kind string, err error) {
	var dbID string
	var head int64
	err = conn.QueryRow(ctx, "SELECT m.database_id::text, s.last FROM icpgate_meta m, icpgate_change_seq s").Scan(&dbID, &head)
	if err != nil {
		return "", tag(SyncErrQuery, fmt.Errorf("reading the change head: %w", err))
	}
	p.mu.Lock()
	cursor, known := p.cursor, p.dbID
	p.mu.Unlock()
	switch {
	case !p.reg.Loaded() || known != dbID:
		return "full", p.fullLoad(ctx, conn)
	case head == cursor:
		return "incremental", nil
	case head < cursor:
		p.log.Warn("change sequence went back (database restored?): reloading in full", "cursor", cursor, "head", head)
		return "full", p.fullLoad(ctx, conn)
	case head-cursor > int64(p.maxIncremental()):
		return "full", p.fullLoad(ctx, conn)
	}
	err = p.incrementalSync(ctx, conn, cursor, head)
	if errors.Is(err, ErrSequenceGap) {
		p.countError(SyncErrGap)
		p.log.Warn("change sequence gap: reloading in full", "error", err.Error())
		return "full", p.fullLoad(ctx, conn)
	}
	return "incremental", err
}

func (p *PostgresSource) maxIncremental() int {
	if p.opts.MaxIncremental > 0 {
		return p.opts.MaxIncremental
	}
	return max(10000, p.reg.Snapshot().Len()/64)
}

// recordColumns are selected in this order by scanRecord's queries.
const recordColumns = `r.domain, r.state, r.filing_number, r.subject, r.subject_type,
	r.province, r.upstream, r.rectify_deadline, r.updated_at`

// rowScanner holds the scan targets of one record row, reused across rows.
type rowScanner struct {
	domain, state, filing, subject, subjectType, province, upstream pgtype.Text
	deadline, updated                                               pgtype.Timestamptz
}

func (s *rowScanner) targets() []any {
	return []any{&s.domain, &s.state, &s.filing, &s.subject, &s.subjectType,
		&s.province, &s.upstream, &s.deadline, &s.updated}
}

// record converts the scanned row; the error names the field.
func (s *rowScanner) record() (Record, error) {
	rec := Record{
		Domain: s.domain.String, FilingNumber: s.filing.String, Subject: s.subject.String,
		SubjectType: s.subjectType.String, Province: s.province.String, Upstream: s.upstream.String,
	}
	if s.deadline.Valid {
		rec.RectifyDeadline = s.deadline.Time
	}
	if s.updated.Valid {
		rec.UpdatedAt = s.updated.Time
	}
	st, err := ParseState(s.state.String)
	if err != nil {
		return rec, fmt.Errorf("%w: state: %w", ErrInvalidRecord, err)
	}
	rec.State = st
	return rec, nil
}

// value returns the scanned value of the record column field, as the
// database has it.
func (s *rowScanner) value(field string) string {
	t := func(ts pgtype.Timestamptz) string {
		if !ts.Valid {
			return ""
		}
		return ts.Time.Format(time.RFC3339)
	}
	switch field {
	case "domain":
		return s.domain.String
	case "state":
		return s.state.String
	case "filing_number":
		return s.filing.String
	case "subject":
		return s.subject.String
	case "subject_type":
		return s.subjectType.String
	case "province":
		return s.province.String
	case "upstream":
		return s.upstream.String
	case "rectify_deadline":
		return t(s.deadline)
	case "updated_at":
		return t(s.updated)
	}
	return ""
}

// rejectRow describes the scanned row that failed with err: the column at
// fault is the one the validation error starts with (every message names
// it first, as in `filing_number "京ICP备123号": ...`).
func rejectRow(sc *rowScanner, err error) RejectedRow {
	msg := strings.TrimPrefix(err.Error(), ErrInvalidRecord.Error()+": ")
	r := RejectedRow{Domain: sc.domain.String, Reason: msg}
	if errors.Is(err, ErrDuplicate) {
		// Two rows whose names are the same domain (例子.中国 and its
		// A-label): the later one read is rejected.
		r.Field = "domain"
	}
	for _, c := range columns {
		if len(msg) > len(c) && strings.HasPrefix(msg, c) && (msg[len(c)] == ' ' || msg[len(c)] == ':') {
			r.Field = c
		}
	}
	if r.Field != "" {
		r.Value = sc.value(r.Field)
	}
	return r
}

// invalidLog collects the rows of one sync that fail validation, logs the
// first few with their key, field and value, and counts the rest, so a bad
// bulk write cannot flood the log.
type invalidLog struct {
	log      *slog.Logger
	n        int
	rejected []RejectedRow // record rows, up to MaxRejectedRows
}

const invalidLogged = 20

// reject records a record row that failed validation.
func (l *invalidLog) reject(r RejectedRow) {
	l.n++
	if len(l.rejected) < MaxRejectedRows {
		l.rejected = append(l.rejected, r)
	}
	if l.n <= invalidLogged {
		l.log.Warn("database row rejected; its domain has no record from it until it is fixed",
			"domain", r.Domain, "field", r.Field, "value", r.Value, "error", r.Reason)
	}
}

// add records an override row that failed validation.
func (l *invalidLog) add(key string, err error) {
	l.n++
	if l.n <= invalidLogged {
		l.log.Warn("database override rejected", "override", key, "error", err.Error())
	}
}

func (l *invalidLog) done(p *PostgresSource) {
	if l.n == 0 {
		return
	}
	if l.n > invalidLogged {
		p.log.Warn("database rows rejected", "count", l.n, "logged", invalidLogged)
	}
	p.invalidRows.Add(uint64(l.n))
	p.mu.Lock()
	p.errors[SyncErrInvalidRow] += uint64(l.n)
	p.mu.Unlock()
}

// fullLoad streams every record and override in one repeatable-read
// snapshot, consistent with the change head read in it, into a Builder:
// memory holds the new snapshot being built, never the result set.
func (p *PostgresSource) fullLoad(ctx context.Context, conn *pgx.Conn) error {
	start := time.Now()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return tag(SyncErrQuery, fmt.Errorf("full load: %w", err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var dbID string
	var head, count int64
	err = tx.QueryRow(ctx, `SELECT m.database_id::text, s.last,
		(SELECT reltuples::bigint FROM pg_class WHERE oid = 'icpgate_records'::regclass)
		FROM icpgate_meta m, icpgate_change_seq s`).Scan(&dbID, &head, &count)
	if err != nil {
		return tag(SyncErrQuery, fmt.Errorf("full load: reading the head: %w", err))
	}
	if count <= 0 {
		// Never analysed (a fresh table): count, in the same snapshot. A
		// Builder sized right never regrows its slice and map, which
		// otherwise is most of the client's share of a 10M load.
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM icpgate_records").Scan(&count); err != nil {
			return tag(SyncErrQuery, fmt.Errorf("full load: counting: %w", err))
		}
	}
	b := NewBuilder(int(count + count/32))
	bad := invalidLog{log: p.log}
	rows, err := tx.Query(ctx, "SELECT "+recordColumns+" FROM icpgate_records r")
	if err != nil {
		return tag(SyncErrQuery, fmt.Errorf("full load: %w", err))
	}
	var sc rowScanner
	tg := sc.targets()
	for rows.Next() {
		if err := rows.Scan(tg...); err != nil {
			bad.reject(RejectedRow{Domain: sc.domain.String, Reason: err.Error()})
			continue
		}
		rec, err := sc.record()
		if err == nil {
			err = b.Add(rec)
		}
		if err != nil {
			bad.reject(rejectRow(&sc, err))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return tag(SyncErrQuery, fmt.Errorf("full load: reading records: %w", err))
	}
	ovs, err := p.readOverrides(ctx, tx, &bad)
	if err != nil {
		return err
	}
	for _, o := range ovs {
		b.AddOverride(o) // validated by readOverrides
	}
	bad.done(p)
	// A rejected row's domain gets no record, whatever an earlier load
	// had: see incrementalSync.
	snap := b.Build().WithRejected(bad.rejected)
	// The guard: compare with what serves now. Rejected rows that had a
	// record count as removals: a bulk write of bad rows is refused like a
	// mass deletion.
	if old := p.reg.Snapshot(); p.reg.Loaded() && old.Len() > 0 {
		removed := 0
		for r := range old.Records() {
			if snap.Lookup(r.Domain) == nil {
				removed++
			}
		}
		if err := p.guard(ctx, tx, removed, old.Len(), head); err != nil {
			return err
		}
	}
	p.reg.Swap(snap)
	p.fullLoads.Add(1)
	p.mu.Lock()
	p.cursor, p.dbID, p.refused, p.fromStore = head, dbID, 0, false
	p.mu.Unlock()
	p.log.Info("registry loaded in full from the filing database", "records", snap.Len(),
		"overrides", len(ovs), "cursor", head, "invalid_rows", bad.n,
		"duration_seconds", time.Since(start).Seconds())
	if p.opts.Store != nil {
		p.saveFull(snap, StoreState{Cursor: head, DatabaseID: dbID, SavedAt: time.Now()})
	}
	return nil
}

// saveFull writes snap to the store in the background: at 10M records a
// full save takes far longer than the changes that follow a load, which
// must not wait for it. Saves are coalesced: only the latest pending
// snapshot is written after the one in progress.
func (p *PostgresSource) saveFull(snap *Snapshot, st StoreState) {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	p.savePending = &pendingSave{snap: snap, st: st}
	if p.saving {
		return
	}
	p.saving = true
	p.saveDone = make(chan struct{})
	go p.storeWriter(p.saveDone)
}

type pendingSave struct {
	snap *Snapshot
	st   StoreState
}

// storeWriter writes pending full saves until none is left.
func (p *PostgresSource) storeWriter(done chan struct{}) {
	defer close(done)
	for {
		p.saveMu.Lock()
		job := p.savePending
		p.savePending = nil
		if job == nil {
			p.saving = false
			p.saveMu.Unlock()
			return
		}
		p.saveMu.Unlock()
		start := time.Now()
		if err := p.opts.Store.SaveFull(job.snap, job.st); err != nil {
			p.countError(SyncErrStore)
			p.log.Error("saving the snapshot to the local store", "error", err.Error())
			continue
		}
		p.log.Info("registry snapshot saved to the local store", "records", job.snap.Len(),
			"cursor", job.st.Cursor, "duration_seconds", time.Since(start).Seconds())
	}
}

// Flush waits until the snapshot saves in progress are written to the
// store. Run calls it before returning; call it before closing the store.
func (p *PostgresSource) Flush() {
	p.saveMu.Lock()
	done := p.saveDone
	p.saveMu.Unlock()
	if done != nil {
		<-done
	}
}

// queryer is what fullLoad's transaction and a connection have in common.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readOverrides reads and validates every override; invalid ones are
// skipped and counted.
func (p *PostgresSource) readOverrides(ctx context.Context, q queryer, bad *invalidLog) ([]Override, error) {
	rows, err := q.Query(ctx, `SELECT id, host, scope, action, expires, reason, ticket, who, created
		FROM icpgate_overrides ORDER BY id`)
	if err != nil {
		return nil, tag(SyncErrQuery, fmt.Errorf("reading overrides: %w", err))
	}
	defer rows.Close()
	var out []Override
	check := &Builder{}
	for rows.Next() {
		var id int64
		var host, scope, action, reason, ticket, who string
		var expires, created pgtype.Timestamptz
		if err := rows.Scan(&id, &host, &scope, &action, &expires, &reason, &ticket, &who, &created); err != nil {
			bad.add("override "+strconv.FormatInt(id, 10), err)
			continue
		}
		o := Override{ID: strconv.FormatInt(id, 10), Host: host, Reason: reason, Ticket: ticket, Who: who}
		switch scope {
		case "exact":
			o.Scope = ScopeExact
		case "domain":
			o.Scope = ScopeDomain
		}
		switch action {
		case "allow":
			o.Action = ActionAllow
		case "deny":
			o.Action = ActionDeny
		}
		if expires.Valid {
			o.Expires = expires.Time
		}
		if created.Valid {
			o.Created = created.Time
		}
		if err := check.AddOverride(o); err != nil {
			bad.add("override "+o.ID+" ("+host+")", err)
			continue
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, tag(SyncErrQuery, fmt.Errorf("reading overrides: %w", err))
	}
	return out, nil
}

// guard refuses removing more than MaxDeleteFraction of total records
// unless an operator confirmed deletions up to head.
func (p *PostgresSource) guard(ctx context.Context, q queryer, removed, total int, head int64) error {
	if removed == 0 || float64(removed) <= p.opts.MaxDeleteFraction*float64(total) {
		return nil
	}
	var confirmed int64
	if err := q.QueryRow(ctx, "SELECT coalesce(max(up_to_seq), 0) FROM icpgate_delete_confirmations").Scan(&confirmed); err != nil {
		return tag(SyncErrQuery, fmt.Errorf("reading delete confirmations: %w", err))
	}
	if confirmed >= head {
		p.log.Warn("large deletion confirmed by an operator; applying", "removed", removed, "records", total, "up_to_seq", confirmed)
		return nil
	}
	p.mu.Lock()
	first := p.refused == 0
	p.refused = removed
	p.mu.Unlock()
	err := tag(SyncErrMassDelete, fmt.Errorf("%w: %d of %d records (limit %.0f%%) up to change %d; confirm with icpgate db confirm-deletes",
		ErrMassDelete, removed, total, 100*p.opts.MaxDeleteFraction, head))
	if first {
		p.log.Error("sync refused by the mass-deletion guard", "removed", removed, "records", total, "head", head)
	}
	return err
}

// incrementalSync applies the changes cursor+1..head.
func (p *PostgresSource) incrementalSync(ctx context.Context, conn *pgx.Conn, cursor, head int64) error {
	// LATERAL ... LIMIT 1 keeps the join a primary-key probe per change:
	// as a plain join the planner may hash-join a large batch against a
	// sequential scan of every record (seconds at 10M).
	rows, err := conn.Query(ctx, `SELECT c.seq, c.kind::text, c.domain, c.changed_at, `+recordColumns+`
		FROM icpgate_changes c LEFT JOIN LATERAL (SELECT * FROM icpgate_records r
			WHERE c.kind = 'r' AND r.domain = c.domain LIMIT 1) r ON true
		WHERE c.seq > $1 AND c.seq <= $2 ORDER BY c.seq`, cursor, head)
	if err != nil {
		return tag(SyncErrQuery, fmt.Errorf("reading changes: %w", err))
	}
	type change struct {
		rec      *Record      // nil: deleted or rejected
		rejected *RejectedRow // the row failed validation
	}
	changes := make(map[string]change)
	var order []string
	var changedAt []time.Time
	overrides := false
	next := cursor + 1
	bad := invalidLog{log: p.log}
	var sc rowScanner
	var seq int64
	var kind, key string
	var at time.Time
	tg := append([]any{&seq, &kind, &key, &at}, sc.targets()...)
	for rows.Next() {
		sc = rowScanner{}
		if err := rows.Scan(tg...); err != nil {
			rows.Close()
			return tag(SyncErrQuery, fmt.Errorf("reading changes: %w", err))
		}
		if seq != next {
			rows.Close()
			return tag(SyncErrGap, fmt.Errorf("%w: want change %d, got %d", ErrSequenceGap, next, seq))
		}
		next++
		changedAt = append(changedAt, at)
		if kind == "o" {
			overrides = true
			continue
		}
		if _, seen := changes[key]; !seen {
			order = append(order, key)
		}
		if !sc.domain.Valid {
			changes[key] = change{}
			continue
		}
		rec, err := sc.record()
		if err == nil {
			rec.Domain, err = CanonicalDomain(rec.Domain)
		}
		if err == nil {
			err = validateRecord(&rec)
		}
		if err != nil {
			r := rejectRow(&sc, err)
			changes[key] = change{rejected: &r}
			continue
		}
		changes[key] = change{rec: &rec}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return tag(SyncErrQuery, fmt.Errorf("reading changes: %w", err))
	}
	if next != head+1 {
		return tag(SyncErrGap, fmt.Errorf("%w: changes end at %d, head is %d", ErrSequenceGap, next-1, head))
	}
	old := p.reg.Snapshot()
	var upserts []Record
	var deletes []string
	seen := make(map[string]bool, len(order))
	// The rejected rows after these changes: those of old whose rows did
	// not change, and the changed rows that fail.
	var rejected []RejectedRow
	rejectedChanged := false
	for _, r := range old.Rejected() {
		if _, changed := changes[r.Domain]; changed {
			rejectedChanged = true
			continue
		}
		rejected = append(rejected, r)
	}
	for _, key := range order {
		c := changes[key]
		if c.rejected != nil {
			// Fail closed for the row: its domain loses the record it
			// had, as a full load (which has no earlier record to keep)
			// leaves it without one. So every gateway, whenever it
			// started, and icpgate check decide it alike, and the
			// explanation says why. Keeping the old record instead
			// would pass a site the filing team may have just
			// cancelled, on some nodes only. A bulk write of bad rows
			// is not applied row by row: the deletions count against
			// the mass-deletion guard below, which refuses the sync
			// and keeps the whole registry serving.
			bad.reject(*c.rejected)
			rejected = append(rejected, *c.rejected)
			rejectedChanged = true
			if dom, err := CanonicalDomain(key); err == nil && !seen[dom] {
				seen[dom] = true
				if old.Lookup(dom) != nil {
					deletes = append(deletes, dom)
				}
			}
			continue
		}
		if c.rec == nil {
			dom, err := CanonicalDomain(key)
			if err != nil || seen[dom] {
				continue // never loaded, so nothing to delete
			}
			seen[dom] = true
			if old.Lookup(dom) != nil {
				deletes = append(deletes, dom)
			}
			continue
		}
		if seen[c.rec.Domain] {
			continue
		}
		seen[c.rec.Domain] = true
		if cur := old.Lookup(c.rec.Domain); cur != nil && cur.Equal(c.rec) {
			continue
		}
		upserts = append(upserts, *c.rec)
	}
	bad.done(p)
	if err := p.guard(ctx, conn, len(deletes), old.Len(), head); err != nil {
		return err
	}
	var ovs []Override
	if overrides {
		if ovs, err = p.readOverrides(ctx, conn, &bad); err != nil {
			return err
		}
	}
	err = p.reg.Update(func(cur *Snapshot) (*Snapshot, error) {
		s, err := cur.Apply(upserts, deletes)
		if err != nil {
			return nil, err
		}
		if rejectedChanged {
			s = s.WithRejected(rejected)
		}
		if overrides {
			return s.WithOverrides(ovs)
		}
		return s, nil
	})
	if err != nil {
		return tag(SyncErrQuery, fmt.Errorf("applying changes: %w", err))
	}
	visible := time.Now()
	p.incremental.Add(1)
	p.mu.Lock()
	p.cursor, p.refused, p.fromStore = head, 0, false
	p.mu.Unlock()
	if p.opts.OnLag != nil {
		for _, at := range changedAt {
			p.opts.OnLag(visible.Sub(at))
		}
	}
	p.log.Debug("registry changes applied", "from", cursor+1, "to", head,
		"upserts", len(upserts), "deletes", len(deletes), "overrides", overrides)
	if p.opts.Store != nil {
		st := StoreState{Cursor: head, DatabaseID: p.currentDBID(), SavedAt: visible}
		var sov []Override
		if overrides {
			sov = ovs
			if sov == nil {
				sov = []Override{}
			}
		}
		// While a full save is being written, the store has no base to
		// apply changes to: queue the current snapshot in full instead.
		p.saveMu.Lock()
		busy := p.saving
		p.saveMu.Unlock()
		if busy {
			p.saveFull(p.reg.Snapshot(), st)
		} else if err := p.opts.Store.SaveChanges(upserts, deletes, sov, st); err != nil {
			p.countError(SyncErrStore)
			p.log.Error("saving changes to the local store", "error", err.Error())
		}
	}
	return nil
}

func (p *PostgresSource) currentDBID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dbID
}
