package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.78:28180", true},
		{"[::1]:80", true},
		{"10.0.0.1:80", false},
		{"localhost:80", false},
		{"127.0.0.1", false},
	} {
		err := checkLoopback(tc.addr)
		if got := err == nil; got != tc.ok {
			t.Errorf("checkLoopback(%q): got err %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
	if err := checkLoopback("192.0.2.1:80"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("checkLoopback(192.0.2.1:80): got %v, want ErrNotLoopback", err)
	}
}

// flagServer answers 200 for Host www.on.test while the file exists, 403
// otherwise, and counts requests per connection to show that every probe
// opens its own.
func flagServer(t *testing.T, flag string) (addr string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(flag); err == nil && r.Host == "www.on.test" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), conns
}

func TestRunExec(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "on")
	addr, conns := flagServer(t, flag)
	o := options{addr: addr, host: "www.on.test", from: 403, to: 200,
		timeout: 10 * time.Second, interval: time.Millisecond, shell: "sleep 0.05 && touch " + flag}
	r, err := run(context.Background(), o)
	if err != nil {
		t.Fatalf("run: %v (%s)", err, r)
	}
	if r.effective < r.action || r.action < 50*time.Millisecond {
		t.Errorf("effective %v, action %v: want action >= 50ms (the sleep) and effective >= action", r.effective, r.action)
	}
	if r.probes < 1 || r.errors != 0 {
		t.Errorf("probes %d, errors %d: want >= 1 and 0", r.probes, r.errors)
	}
	// One connection for the check before the change, one per probe.
	if got, want := conns.Load(), int64(r.probes+1); got != want {
		t.Errorf("connections: got %d, want %d (no keep-alive)", got, want)
	}
	line := r.String()
	for _, k := range []string{"effective_s=", "action_s=", "probes=", "errors=0"} {
		if !strings.Contains(line, k) {
			t.Errorf("result line %q lacks %q", line, k)
		}
	}
}

func TestRunWrongStatusBefore(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "on")
	addr, _ := flagServer(t, flag)
	o := options{addr: addr, host: "www.on.test", from: 200, to: 403,
		timeout: time.Second, interval: time.Millisecond, shell: "touch " + flag}
	if _, err := run(context.Background(), o); !errors.Is(err, ErrBefore) {
		t.Fatalf("run: got %v, want ErrBefore", err)
	}
	if _, err := os.Stat(flag); err == nil {
		t.Error("the action ran although the status before it was wrong")
	}
}

func TestRunTimeout(t *testing.T) {
	addr, _ := flagServer(t, filepath.Join(t.TempDir(), "never"))
	o := options{addr: addr, host: "www.on.test", to: 200, timeout: 100 * time.Millisecond, interval: 10 * time.Millisecond}
	r, err := run(context.Background(), o)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("run: got %v, want ErrTimeout", err)
	}
	if r.probes < 2 {
		t.Errorf("probes: got %d, want several before the timeout", r.probes)
	}
}

func TestRunFailingAction(t *testing.T) {
	addr, _ := flagServer(t, filepath.Join(t.TempDir(), "never"))
	o := options{addr: addr, host: "www.on.test", to: 200, timeout: time.Second, shell: "echo no such map >&2; exit 3"}
	_, err := run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no such map") {
		t.Fatalf("run: got %v, want the action's error with its output", err)
	}
}

// TestRunRuntimeAPI drives the action over a UNIX socket the way HAProxy's
// CLI works in non-interactive mode: one command line in, the answer, close.
func TestRunRuntimeAPI(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "on")
	addr, _ := flagServer(t, flag)
	sock := filepath.Join(dir, "cli.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			c.Write([]byte("cannot write: " + err.Error() + "\n"))
			return
		}
		c.Write([]byte("\n"))
	}()
	o := options{addr: addr, host: "www.on.test", from: 403, to: 200, timeout: 10 * time.Second,
		interval: time.Millisecond, unix: sock, send: "add map /w/haproxy.map on.test 1"}
	r, err := run(context.Background(), o)
	if err != nil {
		t.Fatalf("run: %v (%s)", err, r)
	}
	if line := <-got; line != o.send+"\n" {
		t.Errorf("runtime API got %q, want %q", line, o.send+"\n")
	}
	if r.reply != "" {
		t.Errorf("reply: got %q, want empty (success)", r.reply)
	}
}
