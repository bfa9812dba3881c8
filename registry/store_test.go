package registry_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/icpgate/icpgate/registry"
)

// storeSnapshot is the registry the store tests save: the good fixture
// plus an override.
func storeSnapshot(t testing.TB) *registry.Snapshot {
	t.Helper()
	snap, err := registry.LoadSnapshot(filepath.Join("testdata", "good.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err = snap.WithOverrides([]registry.Override{{
		ID: "7", Host: "www.filed.cn", Scope: registry.ScopeExact, Action: registry.ActionDeny,
		Reason: "abuse", Ticket: "T-7", Who: "ops", Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func sameSnapshot(t *testing.T, got, want *registry.Snapshot) {
	t.Helper()
	if got.Len() != want.Len() {
		t.Fatalf("records: got %d, want %d", got.Len(), want.Len())
	}
	for r := range want.Records() {
		g := got.Lookup(r.Domain)
		if g == nil || !g.Equal(r) {
			t.Errorf("record %s: got %+v, want %+v", r.Domain, g, r)
		}
	}
	gov, wov := got.Overrides(), want.Overrides()
	if len(gov) != len(wov) {
		t.Fatalf("overrides: got %d, want %d", len(gov), len(wov))
	}
	for i := range wov {
		if !gov[i].Equal(&wov[i]) {
			t.Errorf("override %d: got %+v, want %+v", i, gov[i], wov[i])
		}
	}
}

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "icpgate.db")
	s, err := registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, st, err := s.Load()
	if snap != nil || err != nil {
		t.Fatalf("empty store: got %v, %v, want nothing", snap, err)
	}
	want := storeSnapshot(t)
	saved := registry.StoreState{Cursor: 42, DatabaseID: "db-1", SavedAt: time.Unix(1700000000, 5)}
	if err := s.SaveFull(want, saved); err != nil {
		t.Fatal(err)
	}
	snap, st, err = s.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, snap, want)
	if st.Cursor != 42 || st.DatabaseID != "db-1" || !st.SavedAt.Equal(saved.SavedAt) {
		t.Errorf("state: got %+v, want %+v", st, saved)
	}

	// Incremental changes, then overrides replaced.
	up := registry.Record{Domain: "new.cn", State: registry.StateFiled, FilingNumber: "粤ICP备12345678号-1"}
	if err := s.SaveChanges([]registry.Record{up}, []string{"filed.cn"}, nil, registry.StoreState{Cursor: 43, DatabaseID: "db-1"}); err != nil {
		t.Fatal(err)
	}
	want, err = want.Apply([]registry.Record{up}, []string{"filed.cn"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveChanges(nil, nil, []registry.Override{}, registry.StoreState{Cursor: 44, DatabaseID: "db-1"}); err != nil {
		t.Fatal(err)
	}
	if want, err = want.WithOverrides(nil); err != nil {
		t.Fatal(err)
	}
	snap, st, err = s.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, snap, want)
	if st.Cursor != 44 {
		t.Errorf("cursor: got %d, want 44", st.Cursor)
	}

	// Survives a reopen.
	s.Close()
	s2, err := registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	snap, _, err = s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, snap, want)
}

// TestStoreCorrupt: every kind of damage is detected, the store discarded
// (empty afterwards), and nothing panics.
func TestStoreCorrupt(t *testing.T) {
	tamper := func(f func(tx *bolt.Tx) error) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		atOpen bool // OpenStore itself discards it
	}{
		{"value changed", tamper(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("records"))
			v := append([]byte(nil), b.Get([]byte("filed.cn"))...)
			v[len(v)-1] ^= 1
			return b.Put([]byte("filed.cn"), v)
		}), false},
		{"record removed", tamper(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("records")).Delete([]byte("filed.cn"))
		}), false},
		{"override garbled", tamper(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("overrides"))
			k, _ := b.Cursor().First()
			return b.Put(k, []byte{0xff})
		}), false},
		{"version", tamper(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint32(nil, 99))
		}), false},
		{"incomplete", tamper(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Delete([]byte("complete"))
		}), false},
		{"truncated file", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/3); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"pages garbled", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Everything after the two meta pages: branch, leaf and freelist
			// pages alike.
			for i := 2 * os.Getpagesize(); i < len(b); i++ {
				b[i] = byte(i*7 + 3)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"not a bbolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("{\"domain\":\"x.cn\"}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "icpgate.db")
			s, err := registry.OpenStore(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SaveFull(storeSnapshot(t), registry.StoreState{Cursor: 1}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			tc.damage(t, path)
			s, err = registry.OpenStore(path, nil)
			if err != nil {
				t.Fatalf("OpenStore after damage: %v", err)
			}
			defer s.Close()
			snap, _, err := s.Load()
			if tc.atOpen {
				if snap != nil || err != nil {
					t.Fatalf("Load: got %v, %v, want an empty store (discarded at open)", snap, err)
				}
				return
			}
			if !errors.Is(err, registry.ErrCorruptStore) || snap != nil {
				t.Fatalf("Load: got %v, %v, want ErrCorruptStore", snap, err)
			}
			// Discarded: the next Load finds an empty store, and saving works.
			if snap, _, err := s.Load(); snap != nil || err != nil {
				t.Fatalf("Load after discard: got %v, %v, want empty", snap, err)
			}
			if err := s.SaveFull(storeSnapshot(t), registry.StoreState{Cursor: 2}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStoreLeftoverTemp: a full save cut short (the process killed while
// writing) leaves a .tmp file that the next open removes, and the previous
// store intact.
func TestStoreLeftoverTemp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "icpgate.db")
	s, err := registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := storeSnapshot(t)
	if err := s.SaveFull(want, registry.StoreState{Cursor: 3}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(path+".tmp", []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("leftover temp file: got %v, want removed", err)
	}
	snap, st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, snap, want)
	if st.Cursor != 3 {
		t.Errorf("cursor: got %d, want 3", st.Cursor)
	}
}

// TestStoreLockedKept: a store another process (here, another Store)
// holds is an error, and the file, which is fine, is not discarded.
func TestStoreLockedKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "icpgate.db")
	s, err := registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := storeSnapshot(t)
	if err := s.SaveFull(want, registry.StoreState{Cursor: 7}); err != nil {
		t.Fatal(err)
	}
	if s2, err := registry.OpenStore(path, nil); err == nil {
		s2.Close()
		t.Fatal("a second OpenStore of a held store succeeded")
	} else if errors.Is(err, registry.ErrCorruptStore) {
		t.Fatalf("a held store reported as damaged: %v", err)
	}
	s.Close()
	s, err = registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, snap, want)
	if st.Cursor != 7 {
		t.Errorf("cursor: got %d, want 7 (the store was discarded)", st.Cursor)
	}
}

func BenchmarkStoreSaveFull(b *testing.B) {
	bld := registry.NewBuilder(100000)
	for i := range 100000 {
		bld.Add(registry.Record{Domain: "d" + strconv.Itoa(i) + ".cn", State: registry.StateFiled,
			FilingNumber: "京ICP备10206937号-1", Subject: "某某科技有限公司", SubjectType: "enterprise", Province: "京"})
	}
	snap := bld.Build()
	path := filepath.Join(b.TempDir(), "icpgate.db")
	s, err := registry.OpenStore(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.SaveFull(snap, registry.StoreState{Cursor: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100000, "ns/record")
	b.StartTimer()
}

func BenchmarkStoreLoad(b *testing.B) {
	bld := registry.NewBuilder(100000)
	for i := range 100000 {
		bld.Add(registry.Record{Domain: "d" + strconv.Itoa(i) + ".cn", State: registry.StateFiled,
			FilingNumber: "京ICP备10206937号-1", Subject: "某某科技有限公司", SubjectType: "enterprise", Province: "京"})
	}
	path := filepath.Join(b.TempDir(), "icpgate.db")
	s, err := registry.OpenStore(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.SaveFull(bld.Build(), registry.StoreState{Cursor: 1}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Load(); err != nil {
			b.Fatal(err)
		}
	}
}
