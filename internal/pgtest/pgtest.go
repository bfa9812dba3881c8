//go:build linux

// Package pgtest starts a real PostgreSQL server for tests: Debian's
// postgresql 15 binaries, a fresh cluster in a temporary directory, a
// private loopback port and a unix socket directory of its own, stopped on
// cleanup. Nothing is mocked: tests talk to the same server the filing team
// runs.
//
// PostgreSQL refuses to run as root, so when the tests run as root (CI,
// containers) the server runs as the system user "icpgate-test", created
// with useradd when missing.
//
// Usage:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		dsn := pgtest.Shared(t).NewDB(t) // a fresh database on the shared server
//		...
//	}
//
// A test that stops and restarts the server (Stop, Start) starts its own
// with New, so that it does not disturb the others.
//
// In CI (CI=true) a missing PostgreSQL fails the test; elsewhere it skips
// with the command that installs it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where Debian installs the server binaries: PostgreSQL 15
// (bookworm's) when present, else the newest version installed.
var BinDir = findBinDir()

func findBinDir() string {
	const want = "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(filepath.Join(want, "postgres")); err == nil {
		return want
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	best, bestV := want, 0
	for _, d := range dirs {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(d))))
		if v > bestV {
			best, bestV = filepath.Dir(d), v
		}
	}
	return best
}

// runAs is the unprivileged user the server runs as when the tests run as
// root.
const runAs = "icpgate-test"

// Server is a running (or stopped) PostgreSQL cluster owned by a test.
type Server struct {
	// Port is the loopback TCP port; it stays the same across Stop/Start.
	Port int
	dir  string // cluster root: data/, sock/, log
	cred *syscall.Credential
	dbs  atomic.Int64
	mu   sync.Mutex // serialises Start and Stop
}

// New initialises a cluster in a fresh temporary directory, starts it and
// stops and removes it when t's test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		fail(t, err)
	}
	t.Cleanup(s.Close)
	return s
}

var (
	sharedMu  sync.Mutex
	shared    *Server
	sharedErr error
)

// Shared returns the package's shared server, starting it on first use.
// Main stops it when the tests end.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = start()
	}
	if sharedErr != nil {
		fail(t, sharedErr)
	}
	return shared
}

// Main runs the tests and then stops the shared server, if one started.
// Use it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	if shared != nil {
		shared.Close()
	}
	sharedMu.Unlock()
	return code
}

// ErrNoPostgres is returned (wrapped) when the server binaries are missing.
var ErrNoPostgres = errors.New("postgresql server binaries not installed")

func fail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skipf("%v (install with: apt-get install -y postgresql)", err)
	}
	t.Fatalf("starting postgresql: %v", err)
}

func start() (*Server, error) {
	if _, err := os.Stat(filepath.Join(BinDir, "postgres")); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoPostgres, err)
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parent is private to root, and the server runs as
	// another user who must be able to enter the directory.
	dir, err := os.MkdirTemp("", "icpgate-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, cred: cred}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "sock"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if cred != nil {
		for _, p := range []string{dir, filepath.Join(dir, "data"), filepath.Join(dir, "sock")} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	if out, err := s.command("initdb", "-D", s.path("data"), "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	// Durability is irrelevant for a throw-away cluster and costs seconds.
	conf := "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" +
		"listen_addresses = '127.0.0.1'\nunix_socket_directories = '" + s.path("sock") + "'\n" +
		"shared_buffers = 32MB\nmax_connections = 60\nlog_min_messages = warning\n"
	f, err := os.OpenFile(s.path("data", "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		return nil, err
	}
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Server) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(BinDir, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// Start starts the (stopped) server on its port and waits until it accepts
// connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := s.command("pg_ctl", "start", "-w", "-t", "60", "-D", s.path("data"),
		"-l", s.path("data", "server.log"), "-o", "-p "+strconv.Itoa(s.Port))
	if out, err := cmd.CombinedOutput(); err != nil {
		logb, _ := os.ReadFile(s.path("data", "server.log"))
		return fmt.Errorf("pg_ctl start: %w: %s\n%s", err, out, logb)
	}
	return nil
}

// Stop stops the server at once (fast shutdown: sessions are
// disconnected), as a database restart does to its clients.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if out, err := s.command("pg_ctl", "stop", "-w", "-m", "fast", "-D", s.path("data")).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// Close stops the server (immediate shutdown) and removes its directory.
func (s *Server) Close() {
	s.mu.Lock()
	s.command("pg_ctl", "stop", "-w", "-m", "immediate", "-D", s.path("data")).Run()
	s.mu.Unlock()
	os.RemoveAll(s.dir)
}

// DSN returns a libpq URL for database db on the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDB creates an empty database and returns its DSN. The database is
// dropped when t ends (if the server is up then).
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbs.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("connecting to postgresql: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, s.DSN("postgres")); err == nil {
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	return s.DSN(name)
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// credential returns the credential to run the server with: nil when not
// root, else the icpgate-test user's, created if missing.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(runAs)
	if err != nil {
		out, aerr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", runAs).CombinedOutput()
		if aerr != nil && !strings.Contains(string(out), "already exists") {
			return nil, fmt.Errorf("useradd %s: %w: %s", runAs, aerr, out)
		}
		if u, err = user.Lookup(runAs); err != nil {
			return nil, fmt.Errorf("looking up %s: %w", runAs, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %s: bad uid/gid %s/%s", runAs, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
