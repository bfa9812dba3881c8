package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCorruptStore is returned (wrapped) when the local store fails its
// checks (format version, completeness, record count, checksum, a record
// that does not decode or validate). The store has been discarded by then:
// the node waits for a full load from the database.
var ErrCorruptStore = errors.New("corrupt local store")

// storeVersion is the on-disk format; another value is discarded.
const storeVersion = 1

var (
	bucketMeta      = []byte("meta")
	bucketRecords   = []byte("records")
	bucketOverrides = []byte("overrides")

	keyVersion  = []byte("version")
	keyComplete = []byte("complete")
	keyCursor   = []byte("cursor")
	keyDBID     = []byte("database_id")
	keySavedAt  = []byte("saved_at")
	keyCount    = []byte("count")
	keySum      = []byte("checksum")
)

// StoreState is what the local store keeps beside the snapshot.
type StoreState struct {
	Cursor     int64     // last change sequence number in the snapshot
	DatabaseID string    // icpgate_meta.database_id of the source database
	SavedAt    time.Time // when the snapshot was last known current
}

// Store is the local store (bbolt): the last good snapshot and the sync
// cursor, so a node starts serving at once, and keeps serving with the
// filing database down. A full snapshot is written to a new file renamed
// over the old one; incremental changes and the cursor are written in one
// bbolt transaction. Either way a crash leaves the previous or the new
// state, never a mix. A checksum over every entry (XOR of per-entry
// hashes, updated incrementally) and the entry count detect a damaged or
// partial file on Load, which is then discarded.
//
// All methods are safe for concurrent use.
type Store struct {
	path   string
	log    *slog.Logger
	mu     sync.Mutex // guards db and closed
	db     *bolt.DB
	closed bool
}

// OpenStore opens (or creates) the store at path. A damaged file (not a
// bbolt file, a bad header, truncated) is discarded and replaced by an
// empty store, with a warning: the node then loads in full. Any other
// failure (locked by another process, no permission, a read-only disk) is
// an error and leaves the file alone.
func OpenStore(path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Store{path: path, log: log.With("component", "registry_store", "path", path)}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the store directory: %w", err)
		}
	}
	os.Remove(path + ".tmp") // a full save cut short
	db, err := openBolt(path)
	if err != nil && !errors.Is(err, ErrCorruptStore) {
		// Locked by another process, permission denied, a read-only
		// disk: the file may be fine, so it is never deleted for these.
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	if err != nil {
		s.log.Warn("local store damaged; discarding it", "error", err.Error())
		if rerr := os.Remove(path); rerr != nil && !os.IsNotExist(rerr) {
			return nil, fmt.Errorf("discarding the store: %w", rerr)
		}
		if db, err = openBolt(path); err != nil {
			return nil, fmt.Errorf("opening the store: %w", err)
		}
	}
	s.db = db
	return s, nil
}

// openBolt opens a bbolt file, turning a damaged file into an error rather
// than a crash. bbolt reads its file through mmap: a page past the end of a
// truncated file is a SIGBUS, which kills the process unless the faulting
// goroutine asked for a panic instead (SetPanicOnFault). So the header is
// checked first (checkBoltFile: the common case, a short file), and a fault
// that still happens becomes a recovered panic.
func openBolt(path string) (db *bolt.DB, err error) {
	return OpenBoltFile(path, ErrCorruptStore)
}

// OpenBoltFile opens the bbolt file at path as the local store does: a
// damaged or truncated file is an error wrapping corrupt (never a SIGBUS
// from bbolt's mmap), and a file locked by another process is an error
// (wrapping bolt.ErrTimeout) after about a second instead of a hang. The
// control plane's own bbolt file (admin/adminstore) opens the same way.
func OpenBoltFile(path string, corrupt error) (db *bolt.DB, err error) {
	if err := checkBoltFile(path, corrupt); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", corrupt, r)
		}
	}()
	// The timeout: a second process on the same store fails instead of
	// hanging on the file lock.
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
}

// checkBoltFile checks an existing bbolt file's meta pages (magic, format
// version, checksum) and that the file is as long as the highest page they
// claim. A missing or empty file passes: bbolt initialises it.
func checkBoltFile(path string, corrupt error) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	const hdr = 16 // page header: id, flags, count, overflow
	readMeta := func(off int64) (pageSize uint32, pages, txid uint64, ok bool) {
		var m [64]byte
		if _, err := f.ReadAt(m[:], off+hdr); err != nil {
			return 0, 0, 0, false
		}
		le := binary.NativeEndian // bbolt writes its meta in native byte order
		if le.Uint32(m[0:]) != 0xED0CDAED || le.Uint32(m[4:]) != 2 {
			return 0, 0, 0, false
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != le.Uint64(m[56:]) {
			return 0, 0, 0, false
		}
		return le.Uint32(m[8:]), le.Uint64(m[40:]), le.Uint64(m[48:]), true
	}
	best, ok := uint64(0), false
	var need int64
	ps, pages, txid, ok0 := readMeta(0)
	if ok0 {
		best, ok, need = txid, true, int64(pages)*int64(ps)
	} else {
		ps = uint32(os.Getpagesize())
	}
	if _, pages1, txid1, ok1 := readMeta(int64(ps)); ok1 && (!ok || txid1 > best) {
		ok, need = true, int64(pages1)*int64(ps)
	}
	if !ok {
		return fmt.Errorf("%w: not a bbolt file (no valid meta page)", corrupt)
	}
	if fi.Size() < need {
		return fmt.Errorf("%w: file is %d bytes, its pages need %d (truncated)", corrupt, fi.Size(), need)
	}
	return nil
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// Load returns the stored snapshot and state, or a nil snapshot when the
// store is empty. A store that fails its checks is discarded and the error
// (wrapping ErrCorruptStore) says why; it never panics.
func (s *Store) Load() (*Snapshot, StoreState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, StoreState{}, errors.New("store closed")
	}
	snap, st, err := s.load()
	if errors.Is(err, ErrCorruptStore) {
		s.log.Warn("local store fails its checks; discarding it", "error", err.Error())
		if derr := s.discardLocked(); derr != nil {
			return nil, StoreState{}, fmt.Errorf("%w (discarding: %w)", err, derr)
		}
	}
	return snap, st, err
}

func (s *Store) load() (snap *Snapshot, st StoreState, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			snap, err = nil, fmt.Errorf("%w: %v", ErrCorruptStore, r)
		}
	}()
	err = s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil // empty store
		}
		if v := meta.Get(keyVersion); len(v) != 4 || binary.BigEndian.Uint32(v) != storeVersion {
			return fmt.Errorf("%w: format version %x, want %d", ErrCorruptStore, v, storeVersion)
		}
		if c := meta.Get(keyComplete); len(c) != 1 || c[0] != 1 {
			return fmt.Errorf("%w: incomplete", ErrCorruptStore)
		}
		st.Cursor = int64(u64(meta.Get(keyCursor)))
		st.DatabaseID = string(meta.Get(keyDBID))
		st.SavedAt = time.Unix(0, int64(u64(meta.Get(keySavedAt))))
		wantCount, wantSum := u64(meta.Get(keyCount)), u64(meta.Get(keySum))
		recs, ovb := tx.Bucket(bucketRecords), tx.Bucket(bucketOverrides)
		if recs == nil || ovb == nil {
			return fmt.Errorf("%w: missing buckets", ErrCorruptStore)
		}
		b := NewBuilder(recs.Stats().KeyN)
		var count, sum uint64
		err := recs.ForEach(func(k, v []byte) error {
			count++
			sum ^= entryHash('r', k, v)
			rec, err := decodeRecord(k, v)
			if err == nil {
				err = b.Add(rec)
			}
			if err != nil {
				return fmt.Errorf("%w: record %q: %w", ErrCorruptStore, k, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = ovb.ForEach(func(k, v []byte) error {
			count++
			sum ^= entryHash('o', k, v)
			o, err := decodeOverride(v)
			if err == nil {
				err = b.AddOverride(o)
			}
			if err != nil {
				return fmt.Errorf("%w: override %x: %w", ErrCorruptStore, k, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if count != wantCount || sum != wantSum {
			return fmt.Errorf("%w: %d entries with checksum %016x, want %d with %016x",
				ErrCorruptStore, count, sum, wantCount, wantSum)
		}
		snap = b.Build()
		return nil
	})
	if err != nil {
		return nil, StoreState{}, err
	}
	return snap, st, nil
}

// discardLocked replaces the store's file by an empty one.
func (s *Store) discardLocked() error {
	s.db.Close()
	s.db = nil
	if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
		return err
	}
	db, err := openBolt(s.path)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

// SaveFull replaces the store's content by snap and st: written to a new
// file, synced, and renamed over the old one.
func (s *Store) SaveFull(snap *Snapshot, st StoreState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("store closed")
	}
	tmp := s.path + ".tmp"
	os.Remove(tmp)
	if err := writeFull(tmp, snap, st); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the store: %w", err)
	}
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		db, oerr := openBolt(s.path)
		s.db = db
		return errors.Join(fmt.Errorf("replacing the store: %w", err), oerr)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	db, err := openBolt(s.path)
	if err != nil {
		return fmt.Errorf("reopening the store: %w", err)
	}
	s.db = db
	return nil
}

func writeFull(path string, snap *Snapshot, st StoreState) error {
	// NoSync while filling a file nobody reads yet; one Sync at the end.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true})
	if err != nil {
		return err
	}
	defer db.Close()
	// The domains only (their strings point into the snapshot: no copies);
	// each record is decoded again as it is written.
	doms := make([]string, 0, snap.Len())
	for r := range snap.Records() {
		doms = append(doms, r.Domain)
	}
	// Keys in order let bbolt append to full pages instead of splitting.
	slices.Sort(doms)
	var count, sum uint64
	// bbolt holds the leaves a transaction touches as in-memory nodes and
	// splits them at commit: small transactions (cheap with NoSync) keep
	// that short. 100k per transaction cost 4.4 us a record, 5000 1.6 us.
	const batch = 5000
	for i := 0; i < len(doms) || i == 0; i += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketRecords)
			if err != nil {
				return err
			}
			b.FillPercent = 1
			var a arena
			for _, d := range doms[i:min(i+batch, len(doms))] {
				r := snap.Lookup(d)
				buf := a.add(func(b []byte) []byte { return encodeRecord(b, r) })
				if err := b.Put([]byte(r.Domain), buf); err != nil {
					return err
				}
				count++
				sum ^= entryHash('r', []byte(r.Domain), buf)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		ob, err := tx.CreateBucket(bucketOverrides)
		if err != nil {
			return err
		}
		c, s, err := putOverrides(ob, snap.Overrides())
		if err != nil {
			return err
		}
		count += c
		sum ^= s
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return putMeta(meta, st, count, sum)
	})
	if err != nil {
		return err
	}
	return db.Sync()
}

func putOverrides(b *bolt.Bucket, ovs []Override) (count, sum uint64, err error) {
	var a arena
	for i := range ovs {
		k := binary.BigEndian.AppendUint64(nil, uint64(i))
		buf := a.add(func(b []byte) []byte { return encodeOverride(b, &ovs[i]) })
		if err := b.Put(k, buf); err != nil {
			return 0, 0, err
		}
		count++
		sum ^= entryHash('o', k, buf)
	}
	return count, sum, nil
}

func putMeta(meta *bolt.Bucket, st StoreState, count, sum uint64) error {
	for _, kv := range []struct{ k, v []byte }{
		{keyVersion, binary.BigEndian.AppendUint32(nil, storeVersion)},
		{keyComplete, []byte{1}},
		{keyCursor, binary.BigEndian.AppendUint64(nil, uint64(st.Cursor))},
		{keyDBID, []byte(st.DatabaseID)},
		{keySavedAt, binary.BigEndian.AppendUint64(nil, uint64(st.SavedAt.UnixNano()))},
		{keyCount, binary.BigEndian.AppendUint64(nil, count)},
		{keySum, binary.BigEndian.AppendUint64(nil, sum)},
	} {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// SaveChanges applies upserts and deletes (domains in A-label form) to the
// stored snapshot and records st, in one transaction. overrides, when not
// nil, replaces the stored overrides. The store must hold a snapshot
// (SaveFull first); otherwise the changes are not saved.
func (s *Store) SaveChanges(upserts []Record, deletes []string, overrides []Override, st StoreState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return errors.New("store closed")
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, recs := tx.Bucket(bucketMeta), tx.Bucket(bucketRecords)
		if meta == nil || recs == nil {
			return errors.New("store holds no snapshot to update")
		}
		count, sum := u64(meta.Get(keyCount)), u64(meta.Get(keySum))
		remove := func(k []byte) error {
			if old := recs.Get(k); old != nil {
				sum ^= entryHash('r', k, old)
				count--
				return recs.Delete(k)
			}
			return nil
		}
		for _, d := range deletes {
			if err := remove([]byte(d)); err != nil {
				return err
			}
		}
		var a arena
		for i := range upserts {
			k := []byte(upserts[i].Domain)
			if err := remove(k); err != nil {
				return err
			}
			buf := a.add(func(b []byte) []byte { return encodeRecord(b, &upserts[i]) })
			if err := recs.Put(k, buf); err != nil {
				return err
			}
			count++
			sum ^= entryHash('r', k, buf)
		}
		if overrides != nil {
			ob := tx.Bucket(bucketOverrides)
			if ob == nil {
				return errors.New("store holds no overrides bucket")
			}
			err := ob.ForEach(func(k, v []byte) error {
				count--
				sum ^= entryHash('o', k, v)
				return nil
			})
			if err != nil {
				return err
			}
			if err := tx.DeleteBucket(bucketOverrides); err != nil {
				return err
			}
			if ob, err = tx.CreateBucket(bucketOverrides); err != nil {
				return err
			}
			c, s, err := putOverrides(ob, overrides)
			if err != nil {
				return err
			}
			count += c
			sum ^= s
		}
		return putMeta(meta, st, count, sum)
	})
}

// arena hands out encoded values that stay valid until the transaction
// commits, as bbolt's Put requires, without one allocation per value.
type arena struct{ buf []byte }

// add appends what enc writes and returns it as its own capped slice: a
// later append writes past it, or into a fresh array, never over it.
func (a *arena) add(enc func([]byte) []byte) []byte {
	if cap(a.buf)-len(a.buf) < 512 {
		a.buf = make([]byte, 0, 64<<10)
	}
	start := len(a.buf)
	a.buf = enc(a.buf)
	return a.buf[start:len(a.buf):len(a.buf)]
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// entryHash is FNV-1a over a tag, the key and the value.
func entryHash(tag byte, k, v []byte) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	h = (h ^ uint64(tag)) * prime
	for _, c := range k {
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ 0xff) * prime
	for _, c := range v {
		h = (h ^ uint64(c)) * prime
	}
	return h
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// encodeRecord encodes every field but the domain (the key).
func encodeRecord(b []byte, r *Record) []byte {
	b = append(b, byte(r.State))
	for _, s := range [...]string{r.FilingNumber, r.Subject, r.SubjectType, r.Province, r.Upstream} {
		b = appendString(b, s)
	}
	b = appendTime(b, r.RectifyDeadline)
	return appendTime(b, r.UpdatedAt)
}

// decoder reads what the append functions wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

var errShort = errors.New("truncated entry")

func (d *decoder) string() string {
	n, k := binary.Uvarint(d.b)
	if d.err != nil || k <= 0 || uint64(len(d.b)-k) < n {
		d.err = errShort
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

func (d *decoder) time() time.Time {
	v, k := binary.Varint(d.b)
	if d.err != nil || k <= 0 {
		d.err = errShort
		return time.Time{}
	}
	d.b = d.b[k:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes in entry")
	}
	return d.err
}

func decodeRecord(k, v []byte) (Record, error) {
	d := decoder{b: v}
	r := Record{Domain: string(k), State: State(d.byte())}
	r.FilingNumber, r.Subject, r.SubjectType = d.string(), d.string(), d.string()
	r.Province, r.Upstream = d.string(), d.string()
	r.RectifyDeadline, r.UpdatedAt = d.time(), d.time()
	return r, d.end()
}

func encodeOverride(b []byte, o *Override) []byte {
	b = appendString(b, o.ID)
	b = appendString(b, o.Host)
	b = append(b, byte(o.Scope), byte(o.Action))
	b = appendTime(b, o.Expires)
	for _, s := range [...]string{o.Reason, o.Ticket, o.Who} {
		b = appendString(b, s)
	}
	return appendTime(b, o.Created)
}

func decodeOverride(v []byte) (Override, error) {
	d := decoder{b: v}
	o := Override{ID: d.string(), Host: d.string(), Scope: Scope(d.byte()), Action: Action(d.byte())}
	o.Expires = d.time()
	o.Reason, o.Ticket, o.Who = d.string(), d.string(), d.string()
	o.Created = d.time()
	return o, d.end()
}
