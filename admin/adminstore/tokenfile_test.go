package adminstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
)

func openTokens(t *testing.T, path string) *adminstore.TokenFile {
	t.Helper()
	f, err := adminstore.OpenTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestTokenFileStore(t *testing.T) {
	testTokenStore(t, openTokens(t, filepath.Join(t.TempDir(), "tokens.jsonl")))
}

func TestTokenFileCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "icpgate")
	path := filepath.Join(dir, "tokens.jsonl")
	f := openTokens(t, path)
	_, tok := newToken(t, "li.wei", admin.RoleViewer, t0)
	if err := f.Create(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, path + ".lock": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", p, got, want)
		}
	}
	data, _ := os.ReadFile(path)
	want := fmt.Sprintf(`{"id":%q,"name":"li.wei","role":"viewer","sha256":"%x","created":"2026-11-27T05:00:00.123456Z","revoked":false}`+"\n", tok.ID, tok.Hash)
	if string(data) != want {
		t.Errorf("file:\n got %s\nwant %s", data, want)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d files, want the token file and its lock (no temporary files left)", len(ents))
	}
}

// TestTokenFileTwoInstances: a token written by one instance (the CLI)
// authenticates at once through another (the running gateway), and a
// revocation takes effect at once too.
func TestTokenFileTwoInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.jsonl")
	ctx := context.Background()
	gateway, cli := openTokens(t, path), openTokens(t, path)
	secret, tok := newToken(t, "li.wei", admin.RoleSupport, t0)
	if _, err := gateway.Lookup(ctx, admin.HashToken(secret)); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("before create: got %v, want ErrNotFound", err)
	}
	for i := range 3 { // same size each time: the inode tells the versions apart
		if i > 0 {
			if err := cli.Revoke(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := gateway.Lookup(ctx, admin.HashToken(secret)); !errors.Is(err, admin.ErrNotFound) {
				t.Fatalf("round %d: revoked token: got %v, want ErrNotFound", i, err)
			}
			secret, tok = newToken(t, "li.wei", admin.RoleSupport, t0)
		}
		if err := cli.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		got, err := gateway.Lookup(ctx, admin.HashToken(secret))
		if err != nil || got.Name != "li.wei" || got.Role != admin.RoleSupport {
			t.Fatalf("round %d: the gateway's lookup: got %+v, %v", i, got, err)
		}
	}
	// And the other way round: the CLI re-reads before writing.
	_, other := newToken(t, "li.wei", admin.RoleAdmin, t0)
	if err := gateway.Create(ctx, other); !errors.Is(err, adminstore.ErrNameTaken) {
		t.Fatalf("second li.wei through the other instance: got %v, want ErrNameTaken", err)
	}
}

func TestTokenFileMalformed(t *testing.T) {
	ctx := context.Background()
	_, good := newToken(t, "li.wei", admin.RoleViewer, t0)
	goodLine := fmt.Sprintf(`{"id":%q,"name":"li.wei","role":"viewer","sha256":"%x","created":"2026-11-27T05:00:00Z","revoked":false}`, good.ID, good.Hash)
	hash := fmt.Sprintf("%x", good.Hash)
	for _, tc := range []struct {
		name, line, want string
	}{
		{"not json", `{"id":`, "unexpected EOF"},
		{"unknown field", strings.Replace(goodLine, `"revoked"`, `"revokd"`, 1), "revokd"},
		{"bad role", strings.Replace(goodLine, `"viewer"`, `"root"`, 1), "role"},
		{"bad name", strings.Replace(goodLine, `"li.wei"`, `"li wei"`, 1), "token name"},
		{"short hash", strings.Replace(goodLine, hash, hash[:10], 1), "sha256"},
		{"bad hex", strings.Replace(goodLine, hash, "zz"+hash[2:], 1), "sha256"},
		{"no created", strings.Replace(goodLine, `"created":"2026-11-27T05:00:00Z",`, "", 1), "created"},
		{"trailing data", goodLine + ` {}`, "trailing"},
		{"duplicate", goodLine, "already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.jsonl")
			if err := os.WriteFile(path, []byte(goodLine+"\n\n"+tc.line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := adminstore.OpenTokenFile(path)
			if !errors.Is(err, adminstore.ErrCorrupt) || !strings.Contains(err.Error(), path+":3:") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrCorrupt naming %s:3 and %q", err, path, tc.want)
			}
		})
	}

	// A running gateway keeps its last good set; writers refuse to write
	// over a malformed file.
	path := filepath.Join(t.TempDir(), "tokens.jsonl")
	f := openTokens(t, path)
	secret, tok := newToken(t, "li.wei", admin.RoleSupport, t0)
	if err := f.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Lookup(ctx, admin.HashToken(secret)); err != nil || got.ID != tok.ID {
		t.Fatalf("lookup with a malformed file: got %+v, %v, want the last good set", got, err)
	}
	if err := f.Err(); !errors.Is(err, adminstore.ErrCorrupt) || !strings.Contains(err.Error(), path+":1:") {
		t.Fatalf("Err: got %v, want ErrCorrupt naming %s:1", err, path)
	}
	if _, err := f.List(ctx); !errors.Is(err, adminstore.ErrCorrupt) {
		t.Fatalf("List: got %v, want ErrCorrupt", err)
	}
	_, t2 := newToken(t, "wang.fang", admin.RoleSupport, t0)
	if err := f.Create(ctx, t2); !errors.Is(err, adminstore.ErrCorrupt) {
		t.Fatalf("Create over a malformed file: got %v, want ErrCorrupt", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "garbage\n" {
		t.Fatalf("the malformed file was rewritten: %q", data)
	}
	// Fixed: the fixed file is the set in use.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Lookup(ctx, admin.HashToken(secret)); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("lookup after the file was emptied: got %v, want ErrNotFound", err)
	}
	if err := f.Err(); err != nil {
		t.Fatalf("Err after the fix: %v", err)
	}
}

func TestTokenFileUnsafeMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.jsonl")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := adminstore.OpenTokenFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-writable token file: got %v, want a refusal", err)
	}
}

// TestTokenFileRemoved: removing the file removes every token (fail
// closed); the next writer starts a new file.
func TestTokenFileRemoved(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.jsonl")
	f := openTokens(t, path)
	secret, tok := newToken(t, "li.wei", admin.RoleSupport, t0)
	if err := f.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Lookup(ctx, admin.HashToken(secret)); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("after removal: got %v, want ErrNotFound", err)
	}
	if err := f.Create(ctx, tok); err != nil {
		t.Fatalf("create after removal: %v", err)
	}
	if _, err := f.Lookup(ctx, admin.HashToken(secret)); err != nil {
		t.Fatal(err)
	}
}

// TestTokenFileConcurrentWriters: writers racing through separate
// instances (each its own file descriptors, as separate processes have)
// lose nothing.
func TestTokenFileConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.jsonl")
	const writers, each = 4, 10
	secrets := make([][]string, writers)
	var wg sync.WaitGroup
	for w := range writers {
		f := openTokens(t, path)
		wg.Go(func() {
			for i := range each {
				secret, tok, err := admin.NewToken(fmt.Sprintf("w%d.%d", w, i), admin.RoleViewer, time.Now())
				if err == nil {
					err = f.Create(context.Background(), tok)
				}
				if err != nil {
					t.Error(err)
					return
				}
				secrets[w] = append(secrets[w], secret)
			}
		})
	}
	wg.Wait()
	check := openTokens(t, path)
	ts, err := check.List(context.Background())
	if err != nil || len(ts) != writers*each {
		t.Fatalf("after concurrent writers: %d tokens, %v, want %d", len(ts), err, writers*each)
	}
	for _, ss := range secrets {
		for _, s := range ss {
			if _, err := check.Lookup(context.Background(), admin.HashToken(s)); err != nil {
				t.Fatalf("a written token is missing: %v", err)
			}
		}
	}
}

// helperEnv makes the test binary a token writer: "PATH|PREFIX|N" creates
// N tokens named PREFIX.0 ... in the file PATH and exits.
const helperEnv = "ADMINSTORE_TOKEN_WRITER"

func tokenWriterProcess() int {
	parts := strings.Split(os.Getenv(helperEnv), "|")
	n, _ := strconv.Atoi(parts[2])
	f, err := adminstore.OpenTokenFile(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range n {
		_, tok, err := admin.NewToken(fmt.Sprintf("%s.%d", parts[1], i), admin.RoleViewer, time.Now())
		if err == nil {
			err = f.Create(context.Background(), tok)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// TestTokenFileProcesses: several `icpgate token create` processes at
// once, while a gateway instance reads, lose nothing.
func TestTokenFileProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens.jsonl")
	gateway := openTokens(t, path)
	const procs, each = 3, 15
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		cmds[i] = exec.Command(exe)
		cmds[i].Env = append(os.Environ(), fmt.Sprintf("%s=%s|p%d|%d", helperEnv, path, i, each))
		cmds[i].Stderr = os.Stderr
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	// Read meanwhile: never an error, never a torn file.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, c := range cmds {
			c.Wait()
		}
	}()
	reads := 0
	for waiting := true; waiting; reads++ {
		select {
		case <-done:
			waiting = false
		default:
		}
		if _, err := gateway.Lookup(context.Background(), [32]byte{1}); !errors.Is(err, admin.ErrNotFound) {
			t.Fatalf("lookup during writes: %v", err)
		}
		if err := gateway.Err(); err != nil {
			t.Fatalf("the reader saw a bad file during writes: %v", err)
		}
		time.Sleep(time.Millisecond) // a gateway authenticates now and then, not in a loop
	}
	for i, c := range cmds {
		if !c.ProcessState.Success() {
			t.Fatalf("writer %d: %v", i, c.ProcessState)
		}
	}
	ts, err := gateway.List(context.Background())
	if err != nil || len(ts) != procs*each {
		t.Fatalf("after %d writer processes: %d tokens, %v, want %d", procs, len(ts), err, procs*each)
	}
	t.Logf("%d reads while %d processes wrote %d tokens", reads, procs, procs*each)
}
