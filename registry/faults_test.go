package registry_test

// Local-store faults on real file systems: the disk fills up, or turns
// read-only, under a running PostgreSQL source. Syncs keep installing
// snapshots in memory (decisions follow the database), the failed saves
// are counted as sync_errors{kind="store"}, and the store on disk still
// opens to the last snapshot it did save: never a half-written one.
//
// A size-limited tmpfs and a read-only bind mount need mount rights, so
// the checks run in this test binary re-executed under
// `unshare --map-root-user --mount` (an unprivileged user and mount
// namespace), as TestStoreDiskHelper.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/registry"
)

func TestStoreDiskFaults(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("unshare (util-linux) not installed")
		}
		t.Skip("unshare not installed")
	}
	db := newFilingDB(t, pgtest.Shared(t))
	cmd := exec.Command(unshare, "--map-root-user", "--mount", os.Args[0], "-test.run=^TestStoreDiskHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "ICPGATE_DISK_HELPER_DSN="+db.dsn)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestStoreDiskHelper") {
		if strings.Contains(string(out), "unshare failed") && os.Getenv("CI") == "" {
			t.Skipf("no user namespaces here: %s", out)
		}
		t.Fatalf("helper: %v\n%s", err, out)
	}
	t.Logf("helper:\n%s", out)
}

// TestStoreDiskHelper is not a test on its own: TestStoreDiskFaults runs
// it in a user and mount namespace where it may mount file systems.
func TestStoreDiskHelper(t *testing.T) {
	dsn := os.Getenv("ICPGATE_DISK_HELPER_DSN")
	if dsn == "" {
		t.Skip("helper process for TestStoreDiskFaults")
	}
	ctx := context.Background()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mounting a 4 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	path := filepath.Join(dir, "store.db")
	store, err := registry.OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{})
	// MaxIncremental 10: the bulk changes below are loaded in full, so a
	// whole snapshot is saved (new file, renamed over the old one).
	src, err := registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: dsn, Store: store, MaxDeleteFraction: 1, MaxIncremental: 10})
	if err != nil {
		t.Fatal(err)
	}
	sync := func(what string) {
		t.Helper()
		if err := src.Sync(ctx); err != nil {
			t.Fatalf("sync (%s): %v", what, err)
		}
		src.Flush()
	}
	storeErrors := func() uint64 { return src.Stats().Errors[registry.SyncErrStore] }
	sync("first load")
	if storeErrors() != 0 {
		t.Fatalf("store errors after the first load: %d", storeErrors())
	}
	saved := reg.Snapshot().Len()
	savedCursor := src.Stats().Cursor

	// reopen closes the store and opens the file again (as a restart
	// would), requiring the last good snapshot; it leaves it open for src.
	reopen := func(what string) {
		t.Helper()
		if err := store.Close(); err != nil {
			t.Logf("closing the store (%s): %v", what, err)
		}
		s2, err := registry.OpenStore(path, nil)
		if err != nil {
			t.Fatalf("%s: reopening the store: %v", what, err)
		}
		snap, st, err := s2.Load()
		if err != nil || snap == nil {
			t.Fatalf("%s: loading the store: %v", what, err)
		}
		if snap.Len() != saved || st.Cursor != savedCursor {
			t.Fatalf("%s: store holds %d records at cursor %d, want the last good save: %d at %d",
				what, snap.Len(), st.Cursor, saved, savedCursor)
		}
		s2.Close()
	}

	t.Run("disk full", func(t *testing.T) {
		filler, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 64<<10)
		for {
			if _, err := filler.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling the disk: %v", err)
				}
				break
			}
		}
		filler.Close()
		exec(`INSERT INTO icpgate_records (domain, state, filing_number)
			SELECT 'bulk' || i || '.cn', 'filed', '京ICP备10206937号-1' FROM generate_series(1, 3000) AS i`)
		sync("disk full")
		if d := reg.Decide("www.bulk2999.cn"); d.Reason != registry.ReasonFiled {
			t.Fatalf("a record added while the disk is full: got %s, want filed (served from memory)", d.Reason)
		}
		if storeErrors() == 0 {
			t.Fatal("the failed save was not counted as sync_errors{kind=\"store\"}")
		}
		reopen("disk full")
		if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path + ".tmp"); err == nil {
			t.Log("a partial temp file was left (OpenStore removes it)")
		}
	})

	t.Run("read-only disk", func(t *testing.T) {
		store, err = registry.OpenStore(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		src, err = registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: dsn, Store: store, MaxDeleteFraction: 1, MaxIncremental: 10})
		if err != nil {
			t.Fatal(err)
		}
		// The node's store file stays open read-write (as a remount would
		// refuse), but the directory is now read-only: a full save, which
		// writes a new file, fails with EROFS.
		if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remounting read-only: %v", err)
		}
		if f, err := os.Create(filepath.Join(dir, "probe")); err == nil || !errors.Is(err, syscall.EROFS) {
			f.Close()
			t.Fatalf("creating a file on the read-only bind mount: %v, want EROFS", err)
		}
		exec(`DELETE FROM icpgate_records WHERE domain LIKE 'bulk%'`)
		sync("read-only")
		if d := reg.Decide("www.bulk2999.cn"); d.Reason != registry.ReasonUnfiled {
			t.Fatalf("a record deleted while the disk is read-only: got %s, want unfiled", d.Reason)
		}
		if storeErrors() == 0 {
			t.Fatal("the failed save was not counted as sync_errors{kind=\"store\"}")
		}
		if err := syscall.Unmount(dir, 0); err != nil { // the bind mount
			t.Fatal(err)
		}
		reopen("read-only")
	})
}
