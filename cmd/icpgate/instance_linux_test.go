//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fixedConfig writes a config like writeConfig's with the web listener
// and the admin listener on the given addresses (the tls one stays on
// port 0).
func fixedConfig(t *testing.T, dir string, o *origin, web, admin string) string {
	t.Helper()
	path := writeConfig(t, dir, o, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range []struct{ old, new string }{
		{`{name: web, protocol: http, address: "127.0.0.1:0"`, fmt.Sprintf(`{name: web, protocol: http, address: %q`, web)},
		{"admin:\n  address: \"127.0.0.1:0\"", fmt.Sprintf("admin:\n  address: %q", admin)},
	} {
		if !strings.Contains(s, r.old) {
			t.Fatalf("writeConfig's output has no %q", r.old)
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveOnce runs serve in-process with args and returns its exit code
// and log; a serve that starts is stopped after a while, so the test
// fails instead of hanging.
func serveOnce(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stderr syncBuffer
	code := run(ctx, append([]string{"serve"}, args...), io.Discard, &stderr)
	return code, stderr.String()
}

// TestInstanceRefusesSecond: a second serve on an address a live icpgate
// serves (the same one, or any address on its port) is refused before it
// binds anything, with the first's pid and config and the upgrade command
// in the message; the first keeps serving.
func TestInstanceRefusesSecond(t *testing.T) {
	o := startOrigin(t)
	web, adm := freePort(t), freePort(t)
	first := fixedConfig(t, t.TempDir(), o, web, adm)
	runServe(t, first)
	_, webPort, _ := net.SplitHostPort(web)
	for _, tt := range []struct {
		name, web, admin string
		want             []string
	}{
		{"same addresses", web, adm, []string{"tcp " + web, "tcp " + adm}},
		{"any address on the same port", ":" + webPort, "127.0.0.1:0", []string{"tcp *:" + webPort}},
		{"admin address only", "127.0.0.1:0", adm, []string{"tcp " + adm}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			second := fixedConfig(t, t.TempDir(), o, tt.web, tt.admin)
			code, log := serveOnce(t, "-config", second)
			if code != exitError {
				t.Fatalf("second serve: exit %d, want %d; log:\n%s", code, exitError, log)
			}
			want := append(tt.want, "already served by a running icpgate", fmt.Sprintf("pid %d", os.Getpid()),
				"config "+first, "icpgate serve -config "+second+" --upgrade")
			for _, w := range want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			if strings.Contains(log, `"msg":"listening"`) {
				t.Errorf("the refused serve bound a listener:\n%s", log)
			}
			if code, _, _ := httpGet(t, web, "filed.cn"); code != 200 {
				t.Errorf("the first instance after the refusal: got %d, want 200", code)
			}
		})
	}
}

// TestInstanceUpgradeRefused: an upgrade the running instance refuses
// (another is under way), or whose address is held by something that is
// not an icpgate, fails before binding anything, and the running instance
// serves on.
func TestInstanceUpgradeRefused(t *testing.T) {
	o := startOrigin(t)
	web, adm := freePort(t), freePort(t)
	runServe(t, fixedConfig(t, t.TempDir(), o, web, adm))

	t.Run("another upgrade under way", func(t *testing.T) {
		// Reserve the instance as an upgrading icpgate does, and hold it.
		c, err := net.Dial("unix", "@icpgate/tcp/"+web)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if hello, err := r.ReadString('\n'); err != nil || !strings.Contains(hello, helloProtocol) {
			t.Fatalf("hello: got %q %v, want a %s line", hello, err, helloProtocol)
		}
		fmt.Fprintf(c, `{"op":"upgrade","pid":%d}`+"\n", os.Getpid())
		if reply, err := r.ReadString('\n'); err != nil || !strings.Contains(reply, `"ok":true`) {
			t.Fatalf("reservation: got %q %v, want ok", reply, err)
		}

		code, log := serveOnce(t, "-config", fixedConfig(t, t.TempDir(), o, web, adm), "--upgrade")
		if code != exitError || !strings.Contains(log, "refused: another upgrade") {
			t.Errorf("upgrade while another is under way: exit %d, want %d and the refusal; log:\n%s", code, exitError, log)
		}
		if strings.Contains(log, `"msg":"listening"`) {
			t.Errorf("the refused upgrade bound a listener:\n%s", log)
		}
		if code, _, _ := httpGet(t, web, "filed.cn"); code != 200 {
			t.Errorf("the running instance after the refusal: got %d, want 200", code)
		}
	})

	t.Run("not an icpgate", func(t *testing.T) {
		other := freePort(t)
		ln, err := net.Listen("unix", "@icpgate/tcp/"+other)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
				c.Close()
			}
		}()
		for _, args := range [][]string{{}, {"--upgrade"}} {
			code, log := serveOnce(t, append([]string{"-config", fixedConfig(t, t.TempDir(), o, other, "127.0.0.1:0")}, args...)...)
			if code != exitError || !strings.Contains(log, "not an icpgate") || !strings.Contains(log, "SSH-2.0") {
				t.Errorf("serve %v beside a squatter: exit %d, want %d and what it answered; log:\n%s", args, code, exitError, log)
			}
			if strings.Contains(log, `"msg":"listening"`) {
				t.Errorf("serve %v bound a listener:\n%s", args, log)
			}
		}
		l, err := net.Listen("tcp", other)
		if err != nil {
			t.Fatalf("after the failed starts, %s: %v, want nothing bound", other, err)
		}
		l.Close()
	})
}

// startBinary runs the built binary with args and follows its log.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, *logTail) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, tailLog(stderr)
}

// waitExit waits for cmd (whose log was read to its end) and returns its
// error.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("pid %d did not exit", cmd.Process.Pid)
	}
	return nil
}

// netnsEnv marks the re-run of TestInstanceUpgrade in a network namespace
// of its own.
const netnsEnv = "ICPGATE_TEST_OWN_NETNS"

const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

// inOwnNetns prepares the fresh network namespace (made by unshare -rn):
// loopback up, tcp_migrate_req on.
func inOwnNetns(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatalf("lo flags: %v", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	if err := os.WriteFile(migrateReqPath, []byte("1"), 0o644); err != nil {
		t.Fatalf("tcp_migrate_req: %v", err)
	}
}

// TestInstanceUpgrade runs the built binary: serve --upgrade starts beside
// the running instance, which drains and exits 0 once the new one serves;
// requests sent one after another throughout all succeed; afterwards a
// plain start is refused by the new instance.
func TestInstanceUpgrade(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		inOwnNetns(t)
	} else if b, _ := os.ReadFile(migrateReqPath); strings.TrimSpace(string(b)) != "1" {
		// Without net.ipv4.tcp_migrate_req the kernel resets the
		// connections queued on the old instance's listeners as it closes
		// them (docs/operations.md): run in a network namespace of our own
		// where it is set.
		unshare, err := exec.LookPath("unshare")
		if err == nil {
			err = exec.Command(unshare, "-rn", "true").Run()
		}
		if err != nil {
			t.Skipf("net.ipv4.tcp_migrate_req is not 1 here and no network namespace can be made to set it (unshare -rn: %v)", err)
		}
		cmd := exec.Command(unshare, "-rn", os.Args[0], "-test.run", "^TestInstanceUpgrade$", "-test.count", "1", "-test.v")
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in a network namespace of its own: %v\n%s", err, out)
		}
		t.Logf("in a network namespace of its own:\n%s", out)
		return
	}
	bin := buildBinary(t)
	o := startOrigin(t)
	web, adm := freePort(t), freePort(t)
	oldCfg := fixedConfig(t, t.TempDir(), o, web, adm)
	newCfg := fixedConfig(t, t.TempDir(), o, web, adm)

	old, oldLog := startBinary(t, bin, "serve", "-config", oldCfg)
	oldLog.wait(t, "icpgate started", nil)

	// Requests through the handover, each on a new connection.
	var (
		sent     atomic.Int64
		mu       sync.Mutex
		failures []string
	)
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		deadline := time.Now().Add(2 * time.Minute)
		for i := 0; i < 1_000_000 && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("GET", "http://"+web+"/", nil)
			req.Host = "filed.cn"
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
			}
			sent.Add(1)
		}
	}()
	// waitRequests waits until n more requests have been answered.
	waitRequests := func(n int64) {
		t.Helper()
		target := sent.Load() + n
		for i := 0; i < 3000 && sent.Load() < target; i++ {
			select {
			case <-loopDone:
				t.Fatal("the request loop ended early")
			case <-time.After(10 * time.Millisecond):
			}
		}
		if sent.Load() < target {
			t.Fatalf("the request loop is stuck at %d", sent.Load())
		}
	}
	waitRequests(20)

	nw, newLog := startBinary(t, bin, "serve", "-config", newCfg, "--upgrade")
	newLog.wait(t, "upgrade complete: this instance holds every address", nil)
	oldLog.wait(t, "draining: replaced by an upgrade", nil)
	oldLog.wait(t, "stopped", nil)
	if err := waitExit(t, old); err != nil {
		t.Errorf("the replaced instance: %v, want exit 0", err)
	}
	waitRequests(20) // answered by the new instance alone
	close(stop)
	<-loopDone
	t.Logf("%d requests through the upgrade", sent.Load())
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the upgrade, first: %s", len(failures), sent.Load(), failures[0])
	}
	mu.Unlock()

	// The new instance now holds the addresses.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "serve", "-config", oldCfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError {
		t.Errorf("a third start: %v, want exit %d", err, exitError)
	}
	for _, w := range []string{fmt.Sprintf("pid %d", nw.Process.Pid), "config " + newCfg} {
		if !strings.Contains(string(out), w) {
			t.Errorf("the third start's refusal lacks %q:\n%s", w, out)
		}
	}

	nw.Process.Signal(syscall.SIGTERM)
	newLog.wait(t, "stopped", nil)
	if err := waitExit(t, nw); err != nil {
		t.Errorf("the new instance after SIGTERM: %v, want exit 0", err)
	}
}
