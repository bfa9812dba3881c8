package adminstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/registry"
)

func openBolt(t *testing.T, path string) *adminstore.Bolt {
	t.Helper()
	b, err := adminstore.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBoltBackend(t *testing.T) {
	testBackend(t, openBolt(t, filepath.Join(t.TempDir(), "data", "admin.db")))
}

func TestBoltCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "admin.db")
	openBolt(t, path)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", p, got, want)
		}
	}
}

// seedBolt makes a file with n overrides and an audit entry each, and
// closes it.
func seedBolt(t *testing.T, path string, n int) {
	t.Helper()
	b, err := adminstore.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range n {
		_, err := b.CreateOverride(context.Background(), registry.Override{
			Host: "h" + string(rune('a'+i%26)) + strings.Repeat("x", i%50) + ".example.cn", Scope: registry.ScopeExact,
			Action: registry.ActionDeny, Reason: strings.Repeat("reason ", 20), Who: "ops"},
			admin.AuditEntry{Who: "ops", Action: "override.create"})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestBoltReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.db")
	seedBolt(t, path, 3)
	b := openBolt(t, path)
	ctx := context.Background()
	os, err := b.ListOverrides(ctx, admin.OverrideFilter{})
	if err != nil || len(os) != 3 {
		t.Fatalf("after reopening: got %d overrides, %v, want 3", len(os), err)
	}
	if _, err := b.DeleteOverride(ctx, "3", 1, admin.AuditEntry{Who: "ops", Action: "override.delete"}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = openBolt(t, path)
	o, err := b.CreateOverride(ctx, registry.Override{Host: "n.cn", Scope: registry.ScopeDomain, Action: registry.ActionDeny, Reason: "r"},
		admin.AuditEntry{Who: "ops", Action: "override.create"})
	if err != nil || o.ID != "4" {
		t.Fatalf("after a delete and a reopen: new id %q (%v), want 4 (IDs are never reused)", o.ID, err)
	}
	es, err := b.ListAudit(ctx, admin.AuditFilter{})
	if err != nil || len(es) != 5 || es[0].ID != 5 {
		t.Fatalf("audit after reopening: got %d entries, %v", len(es), err)
	}
}

func TestBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.db")
	openBolt(t, path)
	_, err := adminstore.OpenBolt(path)
	if err == nil {
		t.Fatal("second open of a held file: got no error")
	}
	if !errors.Is(err, berrors.ErrTimeout) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second open: got %v, want a timeout naming %s and another process", err, path)
	}
}

// TestBoltCorrupt: a damaged file is an error naming it, never a panic,
// and is left as it was (not discarded, not repaired).
func TestBoltCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"garbage", func(t *testing.T, path string) {
			os.WriteFile(path, []byte(strings.Repeat("this is not a bbolt file\n", 1000)), 0o600)
		}, "not a bbolt file"},
		{"truncated", func(t *testing.T, path string) {
			seedBolt(t, path, 200)
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"damaged pages", func(t *testing.T, path string) {
			seedBolt(t, path, 200)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			ps := int64(os.Getpagesize())
			junk := []byte(strings.Repeat("\xff", 64))
			for off := 2 * ps; off < fi.Size(); off += ps {
				f.WriteAt(junk, off)
			}
		}, ""},
		{"damaged leaf page", func(t *testing.T, path string) {
			seedBolt(t, path, 200)
			// A leaf page in use (bbolt says which), its element table
			// scrambled, its header kept.
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			leaf, most := -1, 0
			db.View(func(tx *bolt.Tx) error {
				for id := 2; ; id++ {
					info, err := tx.Page(id)
					if err != nil || info == nil {
						return err
					}
					if info.Type == "leaf" && info.Count > most {
						leaf, most = id, info.Count
					}
				}
			})
			db.Close()
			if leaf < 0 {
				t.Fatal("no leaf page found")
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := []byte(strings.Repeat("\x5a", 160))
			if _, err := f.WriteAt(junk, int64(leaf*os.Getpagesize()+16)); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"undecodable override", func(t *testing.T, path string) {
			seedBolt(t, path, 2)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("overrides")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 2}, []byte(`{"host":`))
			})
		}, "override 2"},
		{"undecodable audit entry", func(t *testing.T, path string) {
			seedBolt(t, path, 2)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("audit")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 1}, []byte(`{"id":7}`))
			})
		}, "audit entry 1"},
		{"newer format", func(t *testing.T, path string) {
			seedBolt(t, path, 1)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte{0, 0, 0, 9})
			})
		}, "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "admin.db")
			tc.damage(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := adminstore.OpenBolt(path)
			if err == nil {
				b.Close()
				t.Fatal("got no error")
			}
			if !errors.Is(err, adminstore.ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrCorrupt naming %s and %q", err, path, tc.want)
			}
			t.Logf("%v", err)
			after, _ := os.ReadFile(path)
			if string(after) != string(before) {
				t.Fatal("the damaged file was changed")
			}
		})
	}
}
