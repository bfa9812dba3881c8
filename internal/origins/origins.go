//go:build linux

// Package origins runs real HTTP origin servers for tests: nginx, Apache
// httpd, Node.js's http module and Go's net/http, each on a loopback port
// with keep-alive, each logging every request it parsed as one JSON line
// (method, target, Host, body bytes read, X-Request-Id, X-Forwarded-For).
//
// Every origin answers a request with a header naming it, and with the
// same line as the body where the status allows one:
//
//	X-Saw: nginx|<X-Request-Id>|<method>|<Host>|<target>
//
// so a client can tell whether each response it read belongs to the
// request it sent. A target whose path ends in ".204" or ".304" is
// answered with that status and no body; ".103" gets a 103 Early Hints
// first where the server can send one (Go and Node.js).
//
// Usage:
//
//	o := origins.Nginx(t) // skips, or fails under CI=true, without nginx
//	... send traffic to o.Addr ...
//	entries, err := o.Log()
//
// The external servers run as child processes with configurations
// written into t.TempDir() (templates embedded from this package) and are
// stopped on cleanup; nothing is installed, no system service is touched.
package origins

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/icpgate/icpgate/internal/syncbuf"
)

// SawHeader names the response field in which an origin names the
// request it answers.
const SawHeader = "X-Saw"

// Entry is one request an origin parsed.
type Entry struct {
	// Origin is the server's name: "go", "nginx", "apache" or "node".
	Origin string `json:"origin"`
	// Method, Target and Host are as the origin parsed them; Target is
	// the request-target as sent (path and query).
	Method string `json:"method"`
	Target string `json:"target"`
	Host   string `json:"host"`
	// RequestID and XFF are the X-Request-Id and X-Forwarded-For fields
	// ("" when absent).
	RequestID string `json:"id"`
	XFF       string `json:"xff"`
	// BodyLen is the number of body bytes the origin read; -1 when it did
	// not read the body to its end (a parse error, a cut connection).
	BodyLen int64 `json:"body"`
	// Status is the status the origin answered (0 when unknown).
	Status int `json:"status"`
}

func (e Entry) String() string {
	id := e.RequestID
	if id == "" {
		id = "(no X-Request-Id)"
	}
	return fmt.Sprintf("%s %q host %q id %s body %d status %d", e.Method, e.Target, e.Host, id, e.BodyLen, e.Status)
}

// Saw is what an origin's X-Saw field says about the request answered.
type Saw struct {
	Origin, RequestID, Method, Host, Target string
}

// ParseSaw parses an X-Saw value.
func ParseSaw(v string) (Saw, bool) {
	p := strings.SplitN(v, "|", 5)
	if len(p) != 5 {
		return Saw{}, false
	}
	return Saw{p[0], p[1], p[2], p[3], p[4]}, true
}

// StatusFor is the final status every origin answers a request for
// target with: 204 or 304 for a path ending in ".204" or ".304", else 200.
func StatusFor(target string) int {
	path, _, _ := strings.Cut(target, "?")
	switch {
	case strings.HasSuffix(path, ".204"):
		return 204
	case strings.HasSuffix(path, ".304"):
		return 304
	}
	return 200
}

// Origin is a running origin server.
type Origin struct {
	// Name is the server's name, as in Entry.Origin.
	Name string
	// Addr is the host:port it listens on.
	Addr string
	log  func() ([]Entry, error)
}

// Log returns every request the origin has logged so far, in order.
func (o *Origin) Log() ([]Entry, error) { return o.log() }

//go:embed nginx.conf.tmpl apache.conf.tmpl origin.lua origin.js
var files embed.FS

// render writes the embedded template name, executed with data, to path.
func render(t testing.TB, name, path string, data any) {
	t.Helper()
	tmpl, err := template.ParseFS(files, name)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyFile writes the embedded file name to path.
func copyFile(t testing.TB, name, path string) {
	t.Helper()
	b, err := files.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// spawn starts cmd in its own process group, stopped when the test ends,
// and returns its exit. Output not claimed by the caller goes to out.
func spawn(t testing.TB, name string, cmd *exec.Cmd, out *syncbuf.Buffer) <-chan error {
	t.Helper()
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM is a fast shutdown for nginx, httpd and node alike; the
		// whole group, so no worker outlives the test.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	return exited
}

// startProcess runs cmd until the test ends and waits until addr accepts
// connections.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, addr string) {
	t.Helper()
	var out syncbuf.Buffer
	exited := spawn(t, name, cmd, &out)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("%s exited before listening (%v):\n%s", name, err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after 15s:\n%s", name, addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fileLog returns a Log function reading JSON lines from path with parse;
// a last line without its newline is still being written and is left for
// the next call.
func fileLog(path string, parse func([]byte) (Entry, error)) func() ([]Entry, error) {
	return func() ([]Entry, error) {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		} else {
			b = nil
		}
		var out []Entry
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			e, err := parse(sc.Bytes())
			if err != nil {
				return out, fmt.Errorf("%s: line %d %q: %w", filepath.Base(path), len(out)+1, sc.Bytes(), err)
			}
			out = append(out, e)
		}
		return out, sc.Err()
	}
}

// rawEntry is a log line as the external servers write it: numbers that
// may be "-" are strings.
type rawEntry struct {
	Method, Target, Request, Host, ID, XFF, Body, Status string
	// BodyBytes is nginx's $request_body, whose length is the body read.
	BodyBytes *string `json:"body_bytes"`
}

// entry converts a log line, deriving the target from the request line
// when the server logs only that.
func (r rawEntry) entry(origin string) Entry {
	for _, v := range []*string{&r.Host, &r.ID, &r.XFF} {
		if *v == "-" {
			*v = "" // httpd's "absent"
		}
	}
	e := Entry{Origin: origin, Method: r.Method, Target: r.Target, Host: r.Host, RequestID: r.ID, XFF: r.XFF, BodyLen: -1}
	if e.Target == "" && r.Request != "" {
		if f := strings.Fields(r.Request); len(f) >= 2 {
			e.Target = f[1]
		}
	}
	if n, err := strconv.ParseInt(r.Body, 10, 64); err == nil {
		e.BodyLen = n
	}
	if r.BodyBytes != nil {
		e.BodyLen = int64(len(*r.BodyBytes))
	}
	e.Status, _ = strconv.Atoi(r.Status)
	return e
}

// unescapeApache turns Apache's log escapes (\" \\ \xhh) into JSON ones.
func unescapeApache(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' {
			if v, err := strconv.ParseUint(string(b[i+2:i+4]), 16, 8); err == nil {
				out = fmt.Appendf(out, `\u%04x`, v)
				i += 3
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}

// parseJSONLine parses a log line of nginx, httpd or node.
func parseJSONLine(origin string, apache bool) func([]byte) (Entry, error) {
	return func(line []byte) (Entry, error) {
		if apache {
			line = unescapeApache(line)
		}
		var r rawEntry
		if err := json.Unmarshal(line, &r); err != nil {
			return Entry{}, err
		}
		return r.entry(origin), nil
	}
}
