package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// built is the binary buildBinary makes once per test run.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildBinary builds icpgate (once per test run) and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	built.once.Do(func() {
		// go test puts the bin directory of its GOROOT first in PATH,
		// so this is the go that built the test.
		goTool, err := exec.LookPath("go")
		if err != nil {
			built.err = err
			return
		}
		if built.dir, built.err = os.MkdirTemp("", "icpgate-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "icpgate")
		cmd := exec.Command(goTool, "build", "-ldflags", "-X main.version=v0.0.0-test", "-o", built.path, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// logTail follows a process's JSON log lines.
type logTail struct {
	lines chan map[string]any
	all   syncBuffer
}

func tailLog(r io.Reader) *logTail {
	lt := &logTail{lines: make(chan map[string]any, 256)}
	go func() {
		defer close(lt.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lt.all.Write(append(sc.Bytes(), '\n'))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lt.lines <- m
			}
		}
	}()
	return lt
}

// wait returns the next log line with message msg (and listener name,
// when set).
func (lt *logTail) wait(t *testing.T, msg string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-lt.lines:
			if !ok {
				t.Fatalf("process exited before logging %q; log:\n%s", msg, lt.all.String())
			}
			if m["msg"] == msg && (match == nil || match(m)) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q log line; log:\n%s", msg, lt.all.String())
		}
	}
}

// servedByEngine is how a listener the passthrough engines can serve is
// served in this test run: "handlers" in the run with ICPGATE_ENGINE=off
// (.ci/run), "engine" otherwise.
func servedByEngine() string {
	if os.Getenv("ICPGATE_ENGINE") == "off" {
		return "handlers"
	}
	return "engine"
}

// TestBinarySignals runs the built binary: SIGHUP with a good config
// applies it, SIGHUP with a broken one is refused with the reason logged
// and the old config keeps serving, SIGTERM drains and exits 0.
func TestBinarySignals(t *testing.T) {
	bin := buildBinary(t)
	o := startOrigin(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, o, "")
	cmd := exec.Command(bin, "serve", "-config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lt := tailLog(stderr)
	l := lt.wait(t, "listening", func(m map[string]any) bool { return m["listener"] == "web" })
	addr := l["address"].(string)
	if want := servedByEngine(); l["served_by"] != want {
		t.Errorf("the http listener's log line: served_by %v, want %s", l["served_by"], want)
	}
	lt.wait(t, "icpgate started", nil)

	if code, reason, _ := httpGet(t, addr, "unfiled.cn"); code != 403 || reason != "unfiled" {
		t.Fatalf("before reload: got %d %q, want 403 unfiled", code, reason)
	}

	writeConfig(t, dir, o, "policy: {http_block_status: 451}\n")
	cmd.Process.Signal(syscall.SIGHUP)
	lt.wait(t, "config reloaded", nil)
	if code, _, _ := httpGet(t, addr, "unfiled.cn"); code != 451 {
		t.Errorf("after SIGHUP: got %d, want 451", code)
	}

	writeConfig(t, dir, o, "policy: {tls_block: drop}\n")
	cmd.Process.Signal(syscall.SIGHUP)
	m := lt.wait(t, "SIGHUP reload", nil)
	if e, _ := m["error"].(string); !strings.Contains(e, "policy.tls_block") {
		t.Errorf("refused reload: got error %q, want it to name policy.tls_block", e)
	}
	if code, _, _ := httpGet(t, addr, "unfiled.cn"); code != 451 {
		t.Errorf("after refused SIGHUP: got %d, want 451 (old config kept)", code)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	lt.wait(t, "stopped", nil)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: got %v, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// TestBinaryReadme runs the README's commands against the built binary;
// the demo's ports are moved to free ones.
func TestBinaryReadme(t *testing.T) {
	bin := buildBinary(t)
	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil || string(out) != "icpgate v0.0.0-test\n" {
			t.Errorf("got %q %v, want %q", out, err, "icpgate v0.0.0-test\n")
		}
	})
	t.Run("check", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			code int
		}{
			{[]string{"check", "filed-demo.cn"}, 0},
			{[]string{"check", "filed-demo.cn", "unfiled-demo.cn", "blacklisted-demo.cn"}, 1},
			{[]string{"check", "--json", "www.filed-demo.cn"}, 0},
			{[]string{"check", "-config", "/nonexistent.yaml", "x.cn"}, 2},
		} {
			err := exec.Command(bin, tt.args...).Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("%q: got exit %d, want %d", tt.args, code, tt.code)
			}
		}
	})
	t.Run("demo", func(t *testing.T) {
		cmd := exec.Command(bin, "demo", "-http", "127.0.0.1:0", "-tls", "127.0.0.1:0", "-admin", "127.0.0.1:0",
			"-origin-http", "127.0.0.1:0", "-origin-tls", "127.0.0.1:0")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Errorf("demo exit: got %v, want 0", err)
			}
		}()
		// Read the printed tour up to the metrics lines.
		var text strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			text.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "/readyz") {
				break
			}
		}
		go io.Copy(io.Discard, stdout)
		tour := text.String()
		httpAddr := regexp.MustCompile(`gateway http\s+(\S+)`).FindStringSubmatch(tour)
		adminAddr := regexp.MustCompile(`admin\s+http://(\S+)`).FindStringSubmatch(tour)
		token := regexp.MustCompile(`export ICPGATE_TOKEN=(icpg_\S+)`).FindStringSubmatch(tour)
		if httpAddr == nil || adminAddr == nil || token == nil {
			t.Fatalf("demo output without addresses or token: %q", tour)
		}
		code, _, body := httpGet(t, httpAddr[1], "filed-demo.cn")
		if code != 200 || !strings.Contains(body, "hello from the demo origin") {
			t.Errorf("filed-demo.cn: got %d %q, want 200 from the demo origin", code, body)
		}
		if code, reason, _ := httpGet(t, httpAddr[1], "blacklisted-demo.cn"); code != 403 || reason != "blacklisted" {
			t.Errorf("blacklisted-demo.cn: got %d %q, want 403 blacklisted", code, reason)
		}
		// Every command line of the tour runs and does what it says.
		curl, openssl := needTool(t, "curl"), needTool(t, "openssl")
		ran := 0
		for _, line := range strings.Split(tour, "\n") {
			line = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "</dev/null"))
			line, _, _ = strings.Cut(line, " | ") // the output filter is for people
			line = strings.ReplaceAll(line, "$ICPGATE_TOKEN", token[1])
			args := shellSplit(line)
			if len(args) == 0 {
				continue
			}
			blocked := strings.Contains(line, "unfiled-demo.cn") || strings.Contains(line, "blacklisted-demo.cn")
			switch {
			case args[0] == "curl" && strings.Contains(line, "https://"):
				err := exec.Command(curl, append([]string{"-sS", "-o", "/dev/null", "--max-time", "5"}, args[1:]...)...).Run()
				if blocked != (err != nil) {
					t.Errorf("%s: got error %v, want failure %v", line, err, blocked)
				}
			case args[0] == "curl":
				opts := []string{"-sS", "-o", "/dev/null", "--max-time", "5"}
				if !blocked && !strings.Contains(line, " -i ") {
					// A line meant to succeed must get a 2xx: the filed
					// sites, the API with the token, the whitelisted
					// domain after allow add.
					opts = append(opts, "--fail")
				}
				if err := exec.Command(curl, append(opts, args[1:]...)...).Run(); err != nil {
					t.Errorf("%s: %v", line, err)
				}
			case args[0] == "openssl":
				cmd := exec.Command(openssl, args[1:]...)
				cmd.Stdin = strings.NewReader("")
				out, _ := cmd.CombinedOutput()
				want := "BEGIN CERTIFICATE"
				if blocked {
					want = "alert access denied"
				}
				if !strings.Contains(string(out), want) {
					t.Errorf("%s: got %q, want it to contain %q", line, out, want)
				}
			case len(args) > 3 && args[0] == "go" && args[1] == "run":
				cmd := exec.Command(bin, args[3:]...)
				cmd.Env = append(os.Environ(), "ICPGATE_TOKEN="+token[1])
				err := cmd.Run()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				if want := map[bool]int{false: 0, true: 1}[blocked]; code != want {
					t.Errorf("%s: got exit %d (%v), want %d", line, code, err, want)
				}
			default:
				continue
			}
			ran++
		}
		if ran < 20 {
			t.Errorf("ran %d commands of the tour, want all of them (at least 20)", ran)
		}
		hc := exec.Command(bin, "healthcheck", "-url", "http://"+adminAddr[1]+"/healthz")
		if out, err := hc.CombinedOutput(); err != nil {
			t.Errorf("healthcheck: %v %s", err, out)
		}
		resp, err := http.Get("http://" + adminAddr[1] + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("readyz: got %d, want 200", resp.StatusCode)
		}
	})
}

// shellSplit splits a command line on spaces, honouring single quotes.
func shellSplit(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			inQuote, have = !inQuote, true
		case r == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// TestBinarySecondSignal: while a drain waits for an open tunnel, a second
// SIGTERM ends the process at once (killed by the signal, not exit 0).
func TestBinarySecondSignal(t *testing.T) {
	bin := buildBinary(t)
	o := startOrigin(t)
	path := writeConfig(t, t.TempDir(), o, "")
	cmd := exec.Command(bin, "serve", "-config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lt := tailLog(stderr)
	l := lt.wait(t, "listening", func(m map[string]any) bool { return m["listener"] == "tls" })
	if want := servedByEngine(); l["served_by"] != want {
		t.Errorf("the tls listener's log line: served_by %v, want %s", l["served_by"], want)
	}
	lt.wait(t, "icpgate started", nil)
	// An open passthrough tunnel keeps the drain waiting (timeouts.drain 2s).
	c, err := tls.Dial("tcp", l["address"].(string), &tls.Config{ServerName: "filed.cn", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	cmd.Process.Signal(syscall.SIGTERM)
	lt.wait(t, "proxy draining", nil)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		// A finished drain exits 0; only the signal's default action
		// reports -1.
		if !ok || ee.ExitCode() != -1 {
			t.Errorf("after a second SIGTERM: got %v, want killed by the signal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after the second SIGTERM")
	}
}
