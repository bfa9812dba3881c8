//go:build linux

package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeNotifiesSystemd: under a Type=notify unit ($NOTIFY_SOCKET), serve
// says READY=1 once its listeners are bound, RELOADING=1 (with the
// monotonic time) then READY=1 around a SIGHUP reload, and STOPPING=1 when
// the drain starts.
func TestServeNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	next := func(want string) string {
		t.Helper()
		buf := make([]byte, 512)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		got := string(buf[:n])
		if !strings.HasPrefix(got, want) {
			t.Fatalf("got %q, want it to start with %q", got, want)
		}
		return got
	}

	o := startOrigin(t)
	path := writeConfig(t, t.TempDir(), o, "")
	stop := make(chan struct{})
	t.Run("serve", func(t *testing.T) {
		runServe(t, path)
		next("READY=1")
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if got := next("RELOADING=1\n"); !strings.Contains(got, "MONOTONIC_USEC=") {
			t.Errorf("got %q, want MONOTONIC_USEC with RELOADING", got)
		}
		next("READY=1")
		close(stop)
	})
	<-stop
	// runServe's cleanup cancelled serve when the subtest ended.
	next("STOPPING=1")
}
