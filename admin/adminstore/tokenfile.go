package adminstore

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/icpgate/icpgate/admin"
)

// maxTokenFile bounds what a token file may hold (a few thousand tokens
// take a few hundred kilobytes); a larger file is refused, not read.
const maxTokenFile = 16 << 20

// lockWait bounds how long a writer waits for another writer's lock when
// its context has no deadline.
const lockWait = 30 * time.Second

// TokenFile is the file-mode admin.TokenStore: one token per line, JSON
// Lines, mode 0600:
//
//	{"id":"Zm9vYmFy","name":"li.wei","role":"support","sha256":"<64 hex>","created":"2026-11-27T05:00:00Z","revoked":false}
//
// Writers (`icpgate token create|revoke`, a process of its own while the
// gateway runs) take an exclusive flock on the sibling file PATH.lock,
// re-read the file, and replace it atomically (a temporary file in the
// same directory, fsync, rename, fsync of the directory), so a reader sees
// the old file or the new one, never half of one. Readers (the gateway,
// on every authentication) stat the file and re-read it only when its
// inode, size, modification or change time differ from the last read,
// so a new token works at once without a restart, at the cost of one stat
// per authentication.
//
// A malformed file is an error naming path:line. OpenTokenFile fails on
// one; a running gateway keeps authenticating against the last good set
// (rather than locking every support engineer out because of one bad
// hand edit) and reports the problem through Err. A removed file means no
// tokens: nothing authenticates until a writer creates it again.
//
// All methods are safe for concurrent use, within a process and across
// processes.
type TokenFile struct {
	path, lockPath string

	// mu guards the fields below: the last good set and what was last
	// read.
	mu     sync.Mutex
	tokens []admin.Token // file order
	seen   fileID        // the file last read, good or not
	err    error         // why the file last read is not in use; nil when it is
}

// fileID identifies one version of a file: a rename gives a new inode,
// an edit in place a new size or time.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
}

// OpenTokenFile opens the token file at path, creating it (mode 0600) and
// its directory (0700) when missing, and reads it. A malformed file is an
// error naming path:line.
func OpenTokenFile(path string) (*TokenFile, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("adminstore: creating the directory of %s: %w", path, err)
		}
	}
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = fd.Close()
	} else if errors.Is(err, os.ErrExist) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("adminstore: creating %s: %w", path, err)
	}
	f := &TokenFile{path: path, lockPath: path + ".lock"}
	ts, id, err := f.read()
	if err != nil {
		return nil, err
	}
	f.tokens, f.seen = ts, id
	return f, nil
}

// Path returns the token file.
func (f *TokenFile) Path() string { return f.path }

// Err returns why the file on disk is not the set in use (malformed, not
// readable, writable by others), or nil when it is. A gateway logs it and
// keeps authenticating against the last good set.
func (f *TokenFile) Err() error {
	f.refresh()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// read reads and parses the whole file.
func (f *TokenFile) read() ([]admin.Token, fileID, error) {
	fd, err := os.Open(f.path)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("adminstore: %w", err)
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, fileID{}, fmt.Errorf("adminstore: %w", err)
	}
	id := idOf(fi)
	// The file holds who may change the whitelist: refuse one that
	// others could have written.
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, id, fmt.Errorf("adminstore: %s: mode %04o lets group or others write tokens; chmod 600 it", f.path, fi.Mode().Perm())
	}
	if fi.Size() > maxTokenFile {
		return nil, id, fmt.Errorf("adminstore: %s: %d bytes, more than the %d a token file may hold", f.path, fi.Size(), maxTokenFile)
	}
	data, err := io.ReadAll(io.LimitReader(fd, maxTokenFile+1))
	if err != nil {
		return nil, id, fmt.Errorf("adminstore: reading %s: %w", f.path, err)
	}
	ts, err := parseTokens(f.path, data)
	return ts, id, err
}

// parseTokens parses a whole token file: every line a token (blank lines
// skipped), IDs and hashes unique, names unique among live tokens.
func parseTokens(path string, data []byte) ([]admin.Token, error) {
	var ts []admin.Token
	ids := make(map[string]int)
	hashes := make(map[[32]byte]int)
	live := make(map[string]int)
	for n := 1; len(data) > 0; n++ {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		data = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		t, err := parseTokenLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: %w", ErrCorrupt, path, n, err)
		}
		if prev, ok := ids[t.ID]; ok {
			return nil, fmt.Errorf("%w: %s:%d: id %s already on line %d", ErrCorrupt, path, n, t.ID, prev)
		}
		if prev, ok := hashes[t.Hash]; ok {
			return nil, fmt.Errorf("%w: %s:%d: same sha256 as line %d", ErrCorrupt, path, n, prev)
		}
		if prev, ok := live[t.Name]; ok && !t.Revoked {
			return nil, fmt.Errorf("%w: %s:%d: name %s already live on line %d", ErrCorrupt, path, n, t.Name, prev)
		}
		ids[t.ID], hashes[t.Hash] = n, n
		if !t.Revoked {
			live[t.Name] = n
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// tokenLine is one line of the token file.
type tokenLine struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
	Revoked bool      `json:"revoked"`
}

// parseTokenLine parses one line of the token file. Unknown fields are
// refused: a misspelt "revoked" must not leave a token live.
func parseTokenLine(line []byte) (admin.Token, error) {
	var l tokenLine
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&l); err != nil {
		return admin.Token{}, err
	}
	if len(bytes.TrimSpace(line[d.InputOffset():])) > 0 {
		return admin.Token{}, errors.New("trailing data after the JSON object")
	}
	t := admin.Token{ID: l.ID, Name: l.Name, Created: l.Created.UTC(), Revoked: l.Revoked}
	if err := checkTokenID(l.ID); err != nil {
		return admin.Token{}, err
	}
	if err := checkTokenName(l.Name); err != nil {
		return admin.Token{}, err
	}
	role, err := admin.ParseRole(l.Role)
	if err != nil {
		return admin.Token{}, err
	}
	t.Role = role
	if len(l.SHA256) != 64 {
		return admin.Token{}, fmt.Errorf("sha256: want 64 hex digits, got %d characters", len(l.SHA256))
	}
	if _, err := hex.Decode(t.Hash[:], []byte(l.SHA256)); err != nil {
		return admin.Token{}, fmt.Errorf("sha256: %w", err)
	}
	if t.Hash == ([32]byte{}) {
		return admin.Token{}, errors.New("sha256: all zero")
	}
	if l.Created.IsZero() {
		return admin.Token{}, errors.New("created: required")
	}
	// In UTC, as it is written back: "0000-01-01T00:00:00+01:00" is in
	// year -1, which no RFC 3339 line can hold.
	if y := t.Created.Year(); y < 1 || y > 9999 {
		return admin.Token{}, fmt.Errorf("created: year %d in UTC, want 1 to 9999", y)
	}
	return t, nil
}

// formatTokenLine is the inverse of parseTokenLine, without the newline.
func formatTokenLine(t admin.Token) []byte {
	b, err := json.Marshal(tokenLine{ID: t.ID, Name: t.Name, Role: t.Role.String(),
		SHA256: hex.EncodeToString(t.Hash[:]), Created: t.Created.UTC(), Revoked: t.Revoked})
	if err != nil { // strings, a time, a bool: cannot fail
		panic(err)
	}
	return b
}

// refresh re-reads the file when it changed since the last read. A file
// that fails to read leaves the last good set in use and its error in
// f.err; it is not read again until it changes.
func (f *TokenFile) refresh() {
	fi, statErr := os.Stat(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if statErr != nil {
		if errors.Is(statErr, os.ErrNotExist) {
			// Removed: nobody authenticates (fail closed) until a
			// writer creates it again.
			f.tokens, f.seen, f.err = nil, fileID{}, nil
			return
		}
		f.err = fmt.Errorf("adminstore: %w", statErr)
		return
	}
	if idOf(fi) == f.seen {
		return
	}
	ts, id, err := f.read()
	f.seen = id
	if err != nil {
		f.err = err
		return
	}
	f.tokens, f.err = ts, nil
}

// Lookup returns the live token with this hash, or admin.ErrNotFound. It
// compares the hash with every live token's in constant time, so how long
// it takes says nothing about which hashes exist.
func (f *TokenFile) Lookup(ctx context.Context, hash [32]byte) (admin.Token, error) {
	f.refresh()
	f.mu.Lock()
	defer f.mu.Unlock()
	found := -1
	for i := range f.tokens {
		eq := subtle.ConstantTimeCompare(f.tokens[i].Hash[:], hash[:])
		live := subtle.ConstantTimeByteEq(boolByte(f.tokens[i].Revoked), 0)
		found = subtle.ConstantTimeSelect(eq&live, i, found)
	}
	if found < 0 {
		return admin.Token{}, admin.ErrNotFound
	}
	return f.tokens[found], nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// List returns every token, revoked ones too, oldest first. It reads the
// file as it is now, and fails (path:line) when that is malformed.
func (f *TokenFile) List(ctx context.Context) ([]admin.Token, error) {
	ts, id, err := f.read()
	if err != nil {
		return nil, err
	}
	f.install(ts, id)
	out := slices.Clone(ts)
	slices.SortStableFunc(out, func(a, b admin.Token) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// install makes ts, just read or written as id, the set in use.
func (f *TokenFile) install(ts []admin.Token, id fileID) {
	f.mu.Lock()
	f.tokens, f.seen, f.err = ts, id, nil
	f.mu.Unlock()
}

// Create adds t (Created now when zero). A live token with the same name
// is ErrNameTaken; the same ID or hash as any token is an error too.
func (f *TokenFile) Create(ctx context.Context, t admin.Token) error {
	t, err := checkToken(t, time.Now())
	if err != nil {
		return err
	}
	return f.modify(ctx, func(ts []admin.Token) ([]admin.Token, error) {
		for _, o := range ts {
			switch {
			case o.Name == t.Name && !o.Revoked:
				return nil, fmt.Errorf("token %s: %w", t.Name, ErrNameTaken)
			case o.ID == t.ID:
				return nil, fmt.Errorf("token %s: id %s already exists", t.Name, t.ID)
			case o.Hash == t.Hash:
				return nil, fmt.Errorf("token %s: the same secret already exists", t.Name)
			}
		}
		return append(ts, t), nil
	})
}

// Revoke revokes the live token with this name or ID, or returns
// admin.ErrNotFound. A name that is also another live token's ID is
// ambiguous and refused.
func (f *TokenFile) Revoke(ctx context.Context, nameOrID string) error {
	return f.modify(ctx, func(ts []admin.Token) ([]admin.Token, error) {
		hit := -1
		for i, o := range ts {
			if o.Revoked || (o.ID != nameOrID && o.Name != nameOrID) {
				continue
			}
			if hit >= 0 {
				return nil, fmt.Errorf("token %q: names two live tokens (%s and %s); revoke by ID", nameOrID, ts[hit].ID, o.ID)
			}
			hit = i
		}
		if hit < 0 {
			return nil, fmt.Errorf("token %q: %w", nameOrID, admin.ErrNotFound)
		}
		ts[hit].Revoked = true
		return ts, nil
	})
}

// modify runs change on the file's tokens under the writers' lock and
// replaces the file with the result.
func (f *TokenFile) modify(ctx context.Context, change func([]admin.Token) ([]admin.Token, error)) error {
	unlock, err := f.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	ts, _, err := f.read()
	if errors.Is(err, os.ErrNotExist) {
		ts, err = nil, nil // removed: start afresh
	}
	if err != nil {
		return err
	}
	ts, err = change(ts)
	if err != nil {
		return err
	}
	id, err := f.write(ts)
	if err != nil {
		return err
	}
	f.install(ts, id)
	return nil
}

// lock takes the writers' exclusive flock on the lock file, waiting for
// another writer until ctx ends (at most lockWait without a deadline).
func (f *TokenFile) lock(ctx context.Context) (unlock func(), err error) {
	fd, err := os.OpenFile(f.lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("adminstore: opening the lock file: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lockWait)
		defer cancel()
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		held, err := tryLock(fd)
		if held {
			break
		}
		if err != nil {
			fd.Close()
			return nil, fmt.Errorf("adminstore: locking %s: %w", f.lockPath, err)
		}
		select {
		case <-ctx.Done():
			fd.Close()
			return nil, fmt.Errorf("adminstore: waiting for another writer's lock on %s: %w", f.lockPath, ctx.Err())
		case <-tick.C:
		}
	}
	// Closing the descriptor releases the lock.
	return func() { fd.Close() }, nil
}

// write replaces the file with ts atomically and returns the new file's
// identity.
func (f *TokenFile) write(ts []admin.Token) (fileID, error) {
	var buf bytes.Buffer
	for _, t := range ts {
		buf.Write(formatTokenLine(t))
		buf.WriteByte('\n')
	}
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*")
	if err != nil {
		return fileID{}, fmt.Errorf("adminstore: writing %s: %w", f.path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fileID{}, fmt.Errorf("adminstore: writing %s: %w", f.path, err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		return fileID{}, fmt.Errorf("adminstore: writing %s: %w", f.path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fileID{}, fmt.Errorf("adminstore: writing %s: %w", f.path, err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return fileID{}, fmt.Errorf("adminstore: writing %s: %w", f.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fileID{}, fmt.Errorf("adminstore: writing %s: %w", f.path, err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fileID{}, fmt.Errorf("adminstore: replacing %s: %w", f.path, err)
	}
	ok = true
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	// A rename changes the file's ctime: stat again for what readers see.
	if fi2, err := os.Stat(f.path); err == nil {
		fi = fi2
	}
	return idOf(fi), nil
}
