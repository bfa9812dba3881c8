package adminstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/registry"
)

// boltFormat is the on-disk format of the file; another value is refused
// (never rewritten: a newer icpgate wrote it).
const boltFormat = 1

var (
	bucketMeta      = []byte("meta")
	bucketOverrides = []byte("overrides")
	bucketAudit     = []byte("audit")
	keyFormat       = []byte("format")
)

// Bolt is the file-mode admin.Backend: overrides and the audit log in one
// bbolt file, for a gateway without a filing database. Overrides are keyed
// by a big-endian uint64 from the bucket's sequence (IDs are never
// reused); audit entries likewise, append-only. Each value is JSON.
//
// Unlike the registry's local store (a cache of the database, discarded
// when damaged), this file is the only copy of the whitelist and the audit
// trail: a damaged file is an error naming it, never discarded or
// repaired. OpenBolt walks the whole file (bbolt's consistency check and
// every override) so damage shows at start, not halfway through a request.
//
// All methods are safe for concurrent use (bbolt serialises writers).
type Bolt struct {
	path string
	db   *bolt.DB
}

// OpenBolt opens (or creates, with its directory) the bbolt file at path.
// It fails within about a second when another process holds the file, and
// with an error wrapping ErrCorrupt when the file is damaged or truncated.
func OpenBolt(path string) (*Bolt, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("adminstore: creating the directory of %s: %w", path, err)
		}
	}
	db, err := registry.OpenBoltFile(path, ErrCorrupt)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("adminstore: %s is locked by another process (another icpgate using the same file?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("adminstore: %s: %w", path, err)
	}
	b := &Bolt{path: path, db: db}
	if err := b.init(); err != nil {
		db.Close()
		return nil, err
	}
	return b, nil
}

// init creates the buckets of a new file, checks the format of an old one
// and checks that the whole file reads.
func (b *Bolt) init() error {
	// Write only to a new file: a damaged one is left exactly as it is.
	fresh := false
	err := b.view(func(tx *bolt.Tx) error {
		fresh = tx.Bucket(bucketMeta) == nil && tx.Bucket(bucketOverrides) == nil && tx.Bucket(bucketAudit) == nil
		return nil
	})
	if err != nil {
		return err
	}
	if !fresh {
		if err := b.view(func(tx *bolt.Tx) error { return checkLayout(tx) }); err != nil {
			return err
		}
		return b.check()
	}
	err = b.update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, binary.BigEndian.AppendUint32(nil, boltFormat)); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketOverrides, bucketAudit} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return checkLayout(tx)
	})
	if err != nil {
		return err
	}
	return b.check()
}

// checkLayout checks the format number and that every bucket is there.
func checkLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: meta bucket missing", ErrCorrupt)
	}
	if v := meta.Get(keyFormat); len(v) != 4 || binary.BigEndian.Uint32(v) != boltFormat {
		return fmt.Errorf("%w: format %x, this icpgate reads %d", ErrCorrupt, v, boltFormat)
	}
	for _, name := range [][]byte{bucketOverrides, bucketAudit} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: %s bucket missing", ErrCorrupt, name)
		}
	}
	return nil
}

// check reads the whole file: every override and audit entry decodes, and
// bbolt's consistency check (page structure, freelist) passes. The walk
// runs first on this goroutine, which turns a fault into a panic, so that
// tx.Check (on a goroutine of its own, which would not) only reads pages
// already proven readable.
func (b *Bolt) check() error {
	return b.view(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketOverrides).ForEach(func(k, v []byte) error {
			_, err := decodeOverride(k, v)
			return err
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			_, err := decodeAudit(k, v)
			return err
		})
		if err != nil {
			return err
		}
		// Drain the channel so the checker's goroutine ends; keep the
		// first error.
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
		}
		return first
	})
}

// callerError marks an error that is the caller's (a failed change
// function, an invalid audit entry), returned without the file's name.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }
func (e callerError) Unwrap() error { return e.err }

// fileError names the file in storage errors; the caller's own errors
// (not found, conflict, invalid input) pass unchanged.
func (b *Bolt) fileError(err error) error {
	var ce callerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return ce.err
	case errors.Is(err, admin.ErrNotFound), errors.Is(err, admin.ErrConflict),
		errors.Is(err, registry.ErrInvalidOverride):
		return err
	}
	return fmt.Errorf("adminstore: %s: %w", b.path, err)
}

// view and update run a bbolt transaction with a fault in the mapped file
// (a file truncated or damaged under a running gateway) turned into an
// ErrCorrupt error instead of a crash, and name the file in errors.
func (b *Bolt) view(fn func(*bolt.Tx) error) (err error) {
	defer func() { err = b.fileError(err) }()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return b.db.View(fn)
}

func (b *Bolt) update(fn func(*bolt.Tx) error) (err error) {
	defer func() { err = b.fileError(err) }()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// bbolt's Update rolls the transaction back on a panic.
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return b.db.Update(fn)
}

// Path returns the file.
func (b *Bolt) Path() string { return b.path }

// Close closes the file.
func (b *Bolt) Close() error { return b.db.Close() }

// boltOverride is an override as stored (its ID is the key).
type boltOverride struct {
	Host    string     `json:"host"`
	Scope   string     `json:"scope"`
	Action  string     `json:"action"`
	Expires *time.Time `json:"expires,omitempty"`
	Reason  string     `json:"reason"`
	Ticket  string     `json:"ticket"`
	Who     string     `json:"who"`
	Created time.Time  `json:"created"`
	Updated time.Time  `json:"updated"`
	Version int64      `json:"version"`
}

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// parseID reads an override ID; anything but a positive decimal number
// names no override.
func parseID(id string) (uint64, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	return n, err == nil && n > 0 && strconv.FormatUint(n, 10) == id
}

func encodeOverride(o admin.Override) []byte {
	s := boltOverride{Host: o.Host, Scope: o.Scope.String(), Action: o.Action.String(),
		Reason: o.Reason, Ticket: o.Ticket, Who: o.Who, Created: o.Created,
		Updated: o.Updated, Version: o.Version}
	if !o.Expires.IsZero() {
		s.Expires = &o.Expires
	}
	v, err := json.Marshal(s)
	if err != nil { // strings and times: cannot fail
		panic(err)
	}
	return v
}

func decodeOverride(k, v []byte) (admin.Override, error) {
	if len(k) != 8 {
		return admin.Override{}, fmt.Errorf("%w: override key %x: not 8 bytes", ErrCorrupt, k)
	}
	id := binary.BigEndian.Uint64(k)
	var s boltOverride
	d := json.NewDecoder(strings.NewReader(string(v)))
	d.DisallowUnknownFields()
	err := d.Decode(&s)
	var o admin.Override
	if err == nil {
		o.Scope, err = parseScope(s.Scope)
	}
	if err == nil {
		o.Action, err = parseAction(s.Action)
	}
	if err == nil && (s.Host == "" || s.Version < 1) {
		err = errors.New("missing host or version")
	}
	if err != nil {
		return admin.Override{}, fmt.Errorf("%w: override %d: %v", ErrCorrupt, id, err)
	}
	o.ID = strconv.FormatUint(id, 10)
	o.Host, o.Reason, o.Ticket, o.Who = s.Host, s.Reason, s.Ticket, s.Who
	if s.Expires != nil {
		o.Expires = s.Expires.UTC()
	}
	o.Created, o.Updated, o.Version = s.Created.UTC(), s.Updated.UTC(), s.Version
	return o, nil
}

// boltAudit is an audit entry as stored: admin.AuditEntry with the input
// as a string, because encoding/json would compact a RawMessage and the
// input is kept exactly as it was sent.
type boltAudit struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Who        string          `json:"who"`
	Role       string          `json:"role,omitempty"`
	Remote     string          `json:"remote,omitempty"`
	Action     string          `json:"action"`
	Target     string          `json:"target,omitempty"`
	Input      string          `json:"input,omitempty"`
	Normalized string          `json:"normalized,omitempty"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
	Outcome    string          `json:"outcome"`
	Detail     string          `json:"detail,omitempty"`
}

func encodeAudit(e *admin.AuditEntry) ([]byte, error) {
	return json.Marshal(boltAudit{ID: e.ID, At: e.At, Who: e.Who, Role: e.Role, Remote: e.Remote,
		Action: e.Action, Target: e.Target, Input: string(e.Input), Normalized: e.Normalized,
		Before: e.Before, After: e.After, Outcome: e.Outcome, Detail: e.Detail})
}

func decodeAudit(k, v []byte) (admin.AuditEntry, error) {
	if len(k) != 8 {
		return admin.AuditEntry{}, fmt.Errorf("%w: audit key %x: not 8 bytes", ErrCorrupt, k)
	}
	id := binary.BigEndian.Uint64(k)
	var s boltAudit
	d := json.NewDecoder(strings.NewReader(string(v)))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return admin.AuditEntry{}, fmt.Errorf("%w: audit entry %d: %v", ErrCorrupt, id, err)
	}
	if s.ID != int64(id) {
		return admin.AuditEntry{}, fmt.Errorf("%w: audit entry %d: holds id %d", ErrCorrupt, id, s.ID)
	}
	e := admin.AuditEntry{ID: s.ID, At: s.At.UTC(), Who: s.Who, Role: s.Role, Remote: s.Remote,
		Action: s.Action, Target: s.Target, Normalized: s.Normalized, Before: s.Before, After: s.After,
		Outcome: s.Outcome, Detail: s.Detail}
	if s.Input != "" {
		e.Input = json.RawMessage(s.Input)
	}
	return e, nil
}

// getOverride reads override id in tx.
func getOverride(tx *bolt.Tx, id string) (admin.Override, []byte, error) {
	n, ok := parseID(id)
	if !ok {
		return admin.Override{}, nil, admin.ErrNotFound
	}
	k := idKey(n)
	v := tx.Bucket(bucketOverrides).Get(k)
	if v == nil {
		return admin.Override{}, nil, admin.ErrNotFound
	}
	o, err := decodeOverride(k, v)
	return o, k, err
}

// appendAudit appends e in tx, assigning its ID.
func appendAudit(tx *bolt.Tx, e *admin.AuditEntry) error {
	ab := tx.Bucket(bucketAudit)
	seq, err := ab.NextSequence()
	if err != nil {
		return err
	}
	e.ID = int64(seq)
	v, err := encodeAudit(e)
	if err != nil { // Before and After are valid JSON (prepareAudit)
		return callerError{fmt.Errorf("audit entry: %w", err)}
	}
	return ab.Put(idKey(seq), v)
}

// beginMutation returns the instant a change happens (the audit entry's
// At when the caller set it, else now) with its audit entry prepared.
func beginMutation(audit *admin.AuditEntry) (time.Time, error) {
	at := stamp(time.Now())
	if !audit.At.IsZero() {
		at = stamp(audit.At)
	}
	return at, prepareAudit(audit, at, true)
}

// beginCreate is beginMutation for a new override, which it also checks
// (normalised host) and stamps as created then.
func beginCreate(o *registry.Override, audit *admin.AuditEntry) (time.Time, error) {
	at, err := beginMutation(audit)
	if err != nil {
		return at, err
	}
	o.Created = at
	*o, err = checkOverride(*o)
	return at, err
}

// ListOverrides returns overrides matching f, by ID ascending.
func (b *Bolt) ListOverrides(ctx context.Context, f admin.OverrideFilter) ([]admin.Override, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now, query, n := filterNow(&f), strings.ToLower(f.Query), limit(f.Limit)
	var out []admin.Override
	err := b.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOverrides).Cursor()
		k, v := c.First()
		if f.After > 0 {
			k, v = c.Seek(idKey(uint64(f.After) + 1))
		}
		for ; k != nil && len(out) < n; k, v = c.Next() {
			o, err := decodeOverride(k, v)
			if err != nil {
				return err
			}
			if matchOverride(&o, &f, query, now) {
				out = append(out, o)
			}
		}
		return nil
	})
	return out, err
}

// GetOverride returns one override or admin.ErrNotFound.
func (b *Bolt) GetOverride(ctx context.Context, id string) (admin.Override, error) {
	if err := ctx.Err(); err != nil {
		return admin.Override{}, err
	}
	var o admin.Override
	err := b.view(func(tx *bolt.Tx) error {
		var err error
		o, _, err = getOverride(tx, id)
		return err
	})
	return o, err
}

// CreateOverride stores o with a new ID, Created now (audit.At when set)
// and Version 1, and its audit entry, in one transaction.
func (b *Bolt) CreateOverride(ctx context.Context, o registry.Override, audit admin.AuditEntry) (admin.Override, error) {
	if err := ctx.Err(); err != nil {
		return admin.Override{}, err
	}
	at, err := beginCreate(&o, &audit)
	if err != nil {
		return admin.Override{}, err
	}
	var stored admin.Override
	err = b.update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOverrides)
		seq, err := ob.NextSequence()
		if err != nil {
			return err
		}
		o.ID = strconv.FormatUint(seq, 10)
		stored = admin.Override{Override: o, Version: 1, Updated: at}
		if err := ob.Put(idKey(seq), encodeOverride(stored)); err != nil {
			return err
		}
		if audit.Target == "" {
			audit.Target = o.ID
		}
		audit.Before, audit.After = nil, overrideJSON(stored, at)
		return appendAudit(tx, &audit)
	})
	if err != nil {
		return admin.Override{}, err
	}
	return stored, nil
}

// UpdateOverride applies change to override id if its version is version,
// bumps the version and writes the audit entry, in one transaction. The
// change may not alter the ID, Created or Who (created_by): they are kept.
func (b *Bolt) UpdateOverride(ctx context.Context, id string, version int64, change func(*registry.Override) error, audit admin.AuditEntry) (admin.Override, error) {
	if err := ctx.Err(); err != nil {
		return admin.Override{}, err
	}
	at, err := beginMutation(&audit)
	if err != nil {
		return admin.Override{}, err
	}
	var stored admin.Override
	err = b.update(func(tx *bolt.Tx) error {
		cur, k, err := getOverride(tx, id)
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
		stored = admin.Override{Override: next, Version: cur.Version + 1, Updated: at}
		if err := tx.Bucket(bucketOverrides).Put(k, encodeOverride(stored)); err != nil {
			return err
		}
		if audit.Target == "" {
			audit.Target = id
		}
		audit.Before, audit.After = overrideJSON(cur, at), overrideJSON(stored, at)
		return appendAudit(tx, &audit)
	})
	if err != nil {
		return admin.Override{}, err
	}
	return stored, nil
}

// applyChange runs change on a copy of cur and validates the result; the
// ID, Created and Who are kept whatever change did.
func applyChange(cur registry.Override, change func(*registry.Override) error) (registry.Override, error) {
	next := cur
	if change != nil {
		if err := change(&next); err != nil {
			return cur, err
		}
	}
	next.ID, next.Created, next.Who = cur.ID, cur.Created, cur.Who
	return checkOverride(next)
}

// DeleteOverride removes override id if its version is version, and
// writes the audit entry, in one transaction. It returns the deleted
// override.
func (b *Bolt) DeleteOverride(ctx context.Context, id string, version int64, audit admin.AuditEntry) (admin.Override, error) {
	if err := ctx.Err(); err != nil {
		return admin.Override{}, err
	}
	at, err := beginMutation(&audit)
	if err != nil {
		return admin.Override{}, err
	}
	var cur admin.Override
	err = b.update(func(tx *bolt.Tx) error {
		var k []byte
		var err error
		cur, k, err = getOverride(tx, id)
		if err != nil {
			return err
		}
		if cur.Version != version {
			return admin.ErrConflict
		}
		if err := tx.Bucket(bucketOverrides).Delete(k); err != nil {
			return err
		}
		if audit.Target == "" {
			audit.Target = id
		}
		audit.Before, audit.After = overrideJSON(cur, at), nil
		return appendAudit(tx, &audit)
	})
	if err != nil {
		return admin.Override{}, err
	}
	return cur, nil
}

// Overrides returns every override, expired ones too, by ID.
func (b *Bolt) Overrides(ctx context.Context) ([]registry.Override, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []registry.Override
	err := b.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOverrides).ForEach(func(k, v []byte) error {
			o, err := decodeOverride(k, v)
			if err != nil {
				return err
			}
			out = append(out, o.Override)
			return nil
		})
	})
	return out, err
}

// AppendAudit appends an entry that goes with no change.
func (b *Bolt) AppendAudit(ctx context.Context, e admin.AuditEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := prepareAudit(&e, stamp(time.Now()), false); err != nil {
		return err
	}
	return b.update(func(tx *bolt.Tx) error { return appendAudit(tx, &e) })
}

// ListAudit returns entries matching f, newest (highest ID) first.
func (b *Bolt) ListAudit(ctx context.Context, f admin.AuditFilter) ([]admin.AuditEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := limit(f.Limit)
	var out []admin.AuditEntry
	err := b.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		if f.Before > 0 {
			if k, _ = c.Seek(idKey(uint64(f.Before))); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Last()
		}
		for ; k != nil && len(out) < n; k, v = c.Prev() {
			e, err := decodeAudit(k, v)
			if err != nil {
				return err
			}
			if matchAudit(&e, &f) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}
