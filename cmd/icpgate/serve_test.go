package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/icpgate/icpgate/internal/syncbuf"
	"github.com/icpgate/icpgate/registry"
)

// origin is a real upstream that counts what reached it: HTTP requests by
// Host, TLS handshakes by SNI.
type origin struct {
	http, tls net.Listener
	srv       *http.Server
	mu        sync.Mutex
	hosts     map[string]int // guarded by mu
}

func startOrigin(t *testing.T) *origin {
	t.Helper()
	cert, err := selfSigned([]string{"filed.cn", "*.filed.cn", "pending.cn", "unfiled.cn", "cancelled.cn", "blacklisted.cn"})
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{hosts: map[string]int{}}
	o.http, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.tls = tls.NewListener(tl, &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			o.count("tls:" + h.ServerName)
			return nil, nil
		},
	})
	o.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			o.count("http:" + r.Host)
		}
		fmt.Fprintf(w, "origin saw %s\n", r.Host)
	})}
	go o.srv.Serve(o.http)
	go o.srv.Serve(o.tls)
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func (o *origin) count(k string) {
	o.mu.Lock()
	o.hosts[k]++
	o.mu.Unlock()
}

func (o *origin) seen() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[string]int, len(o.hosts))
	for k, v := range o.hosts {
		m[k] = v
	}
	return m
}

// writeConfig writes a config for o into dir, with the test registry.
func writeConfig(t *testing.T, dir string, o *origin, extra string) string {
	t.Helper()
	reg, err := os.ReadFile("testdata/registry.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "registry.jsonl"), reg, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`node: test-node
registry:
  file: registry.jsonl
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
  - {name: tls, protocol: tls, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
  tokens_file: tokens.jsonl
timeouts:
  drain: 2s
log:
  level: debug
  format: json
%s`, o.http.Addr().String(), o.tls.Addr().String(), extra)
	path := filepath.Join(dir, "icpgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runServe starts `icpgate serve` in-process and returns the gateway once
// its listeners are bound. Cleanup cancels and requires exit code 0.
func runServe(t testing.TB, path string) *Gateway {
	t.Helper()
	started := make(chan *Gateway, 1)
	ctx, cancel := context.WithCancel(context.Background())
	ctx = withStarted(ctx, func(g *Gateway) { started <- g })
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() { done <- run(ctx, []string{"serve", "-config", path}, io.Discard, &stderr) }()
	select {
	case g := <-started:
		t.Cleanup(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("serve exit code: got %d, want 0; log:\n%s", code, stderr.String())
			}
		})
		return g
	case code := <-done:
		cancel()
		t.Fatalf("serve exited with %d before starting; log:\n%s", code, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("serve did not start; log:\n%s", stderr.String())
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer = syncbuf.Buffer

// httpGet sends one request with Host host to addr on a fresh connection.
func httpGet(t *testing.T, addr, host string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/path", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s Host %s: %v", addr, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Icpgate-Reason"), string(b)
}

// tlsHandshake runs a crypto/tls handshake with SNI name through addr.
func tlsHandshake(addr, name string) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	return c.Close()
}

// needTool returns the path of an external client, skipping outside CI
// when it is missing (CI installs it: there a missing tool fails).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (CI must install it: see .ci/run)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

var e2eCases = []struct {
	host   string
	pass   bool
	reason string
}{
	{"filed.cn", true, ""},
	{"www.filed.cn", true, ""},
	{"WWW.Filed.CN.", true, ""},
	{"pending.cn", true, ""},
	{"unfiled.cn", false, "unfiled"},
	{"cancelled.cn", false, "cancelled"},
	{"a.blacklisted.cn", false, "blacklisted"},
}

func TestEndToEnd(t *testing.T) {
	o := startOrigin(t)
	g := runServe(t, writeConfig(t, t.TempDir(), o, ""))
	httpAddr, tlsAddr := g.ProxyAddr("web").String(), g.ProxyAddr("tls").String()

	t.Run("go http client", func(t *testing.T) {
		for _, tt := range e2eCases {
			code, reason, body := httpGet(t, httpAddr, tt.host)
			if tt.pass {
				if code != 200 || !strings.Contains(body, "origin saw") {
					t.Errorf("%s: got %d %q, want 200 from the origin", tt.host, code, body)
				}
				continue
			}
			if code != 403 || reason != tt.reason {
				t.Errorf("%s: got %d reason %q, want 403 reason %q", tt.host, code, reason, tt.reason)
			}
		}
	})
	t.Run("go tls client", func(t *testing.T) {
		for _, tt := range e2eCases {
			err := tlsHandshake(tlsAddr, strings.TrimSuffix(strings.ToLower(tt.host), "."))
			if tt.pass && err != nil {
				t.Errorf("%s: got %v, want a handshake with the origin", tt.host, err)
			}
			if !tt.pass && err == nil {
				t.Errorf("%s: got a handshake, want it refused", tt.host)
			}
		}
	})
	t.Run("curl", func(t *testing.T) {
		curl := needTool(t, "curl")
		_, port, _ := net.SplitHostPort(tlsAddr)
		for _, tt := range e2eCases {
			out, _ := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: "+tt.host, "http://"+httpAddr+"/").Output()
			want := "403"
			if tt.pass {
				want = "200"
			}
			if got := string(out); got != want {
				t.Errorf("curl http %s: got %q, want %q", tt.host, got, want)
			}
			name := strings.TrimSuffix(strings.ToLower(tt.host), ".")
			err := exec.Command(curl, "-sk", "-o", "/dev/null", "--max-time", "5",
				"--resolve", name+":"+port+":127.0.0.1", "https://"+name+":"+port+"/").Run()
			if tt.pass && err != nil {
				t.Errorf("curl https %s: got %v, want success", name, err)
			}
			if !tt.pass && err == nil {
				t.Errorf("curl https %s: got success, want a refused handshake", name)
			}
		}
	})
	t.Run("openssl", func(t *testing.T) {
		openssl := needTool(t, "openssl")
		for _, tt := range []struct {
			name string
			want string
		}{
			{"filed.cn", "BEGIN CERTIFICATE"},
			{"blacklisted.cn", "alert access denied"},
		} {
			cmd := exec.Command(openssl, "s_client", "-connect", tlsAddr, "-servername", tt.name)
			cmd.Stdin = strings.NewReader("")
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("openssl %s: got %q, want it to contain %q", tt.name, out, tt.want)
			}
		}
	})
	t.Run("origin saw only passing traffic", func(t *testing.T) {
		passing := map[string]bool{}
		for _, tt := range e2eCases {
			if tt.pass {
				passing[strings.TrimSuffix(strings.ToLower(tt.host), ".")] = true
			}
		}
		seen := o.seen()
		for k := range seen {
			_, host, _ := strings.Cut(k, ":")
			if !passing[strings.TrimSuffix(strings.ToLower(host), ".")] {
				t.Errorf("origin got traffic for %q, a blocked host", k)
			}
		}
		for _, k := range []string{"http:filed.cn", "http:www.filed.cn"} {
			if seen[k] == 0 {
				t.Errorf("origin: got no traffic for %q, want some", k)
			}
		}
	})
	t.Run("admin", func(t *testing.T) {
		admin := "http://" + g.AdminAddr().String()
		token := newToken(t, g.Config().path, "viewer")
		httpGet(t, httpAddr, "unfiled.cn") // at least one decision to count
		for _, tt := range []struct {
			path string
			want string
		}{
			{"/healthz", "ok"},
			{"/readyz", `"ready": true`},
			{"/v1/explain?host=www.cancelled.cn", `"reason": "cancelled"`},
			{"/metrics", `icpgate_decisions_total{protocol="http",reason="unfiled",verdict="block"}`},
			{"/metrics", `icpgate_registry_records{state="filed"} 1`},
		} {
			req, err := http.NewRequest("GET", admin+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tt.path, "/v1/") {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), tt.want) {
				if len(b) > 2000 {
					b = append(b[:2000], "..."...)
				}
				t.Errorf("%s: got %d %q, want 200 containing %q", tt.path, resp.StatusCode, b, tt.want)
			}
		}
		var out bytes.Buffer
		if code := run(context.Background(), []string{"healthcheck", "-url", admin + "/healthz"}, &out, &out); code != 0 {
			t.Errorf("healthcheck: got exit %d %q, want 0", code, out.String())
		}
		if code := run(context.Background(), []string{"healthcheck", "-url", admin + "/nope"}, &out, &out); code != 1 {
			t.Errorf("healthcheck of a 404: got exit %d, want 1", code)
		}
	})
}

func TestReload(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, o, "")
	g := runServe(t, path)
	addr := g.ProxyAddr("web").String()

	steps := []struct {
		name     string
		config   string // "" keeps the file
		registry string // appended to the registry file when set
		wantErr  string
		host     string
		wantCode int
	}{
		{"before", "", "", "", "unfiled.cn", 403},
		{"status 451", "policy: {http_block_status: 451}\n", "", "", "unfiled.cn", 451},
		{"broken config refused", "policy: {http_block_status: 451}\nbogus: 1\n", "", "bogus: unknown key", "unfiled.cn", 451},
		{"invalid value refused", "policy: {http_block_status: 200}\n", "", "policy.http_block_status", "unfiled.cn", 451},
		{"registry change applies", "policy: {http_block_status: 451}\n", `{"domain":"unfiled.cn","state":"filed","filing_number":"京ICP备10206938号-1"}` + "\n", "", "unfiled.cn", 200},
	}
	for _, st := range steps {
		if st.config != "" {
			writeConfig(t, dir, o, st.config) // also rewrites registry.jsonl from testdata
		}
		if st.registry != "" {
			f, err := os.OpenFile(filepath.Join(dir, "registry.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(st.registry)
			f.Close()
		}
		err := g.Reload()
		switch {
		case st.wantErr == "" && err != nil:
			t.Errorf("%s: reload: got %v, want nil", st.name, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Errorf("%s: reload: got %v, want an error containing %q", st.name, err, st.wantErr)
		}
		if code, _, _ := httpGet(t, addr, st.host); code != st.wantCode {
			t.Errorf("%s: %s: got %d, want %d", st.name, st.host, code, st.wantCode)
		}
	}
	// A truncated registry file (3 of 5 records gone) is refused by the
	// shrink guard; the previous registry keeps serving.
	regPath := filepath.Join(dir, "registry.jsonl")
	b, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	if err := os.WriteFile(regPath, append(first, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); !errors.Is(err, registry.ErrShrink) {
		t.Errorf("truncated registry: got %v, want ErrShrink", err)
	}
	if code, reason, _ := httpGet(t, addr, "cancelled.cn"); code != 451 || reason != "cancelled" {
		t.Errorf("after refused registry: got %d %q, want 451 cancelled (old registry)", code, reason)
	}
	resp, err := http.Get("http://" + g.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"icpgate_registry_last_reload_failed 1", `icpgate_registry_reloads_total{result="failure"} 1`} {
		if !bytes.Contains(mb, []byte(want+"\n")) {
			t.Errorf("metrics after a refused registry: missing %q", want)
		}
	}
	if got := g.Config().Policy.HTTPBlockStatus; got != 451 {
		t.Errorf("config in effect: got status %d, want 451", got)
	}
}

func TestCheck(t *testing.T) {
	o := startOrigin(t)
	path := writeConfig(t, t.TempDir(), o, "")
	suffixes, err := filepath.Abs("testdata/suffixes-cn-only.txt")
	if err != nil {
		t.Fatal(err)
	}
	suffixCfg := writeConfig(t, t.TempDir(), o, "") + ".suffixes.yaml"
	badSuffixCfg := suffixCfg + ".bad.yaml"
	cfgText, _ := os.ReadFile(path)
	for p, s := range map[string]string{suffixCfg: suffixes, badSuffixCfg: suffixes + ".nope"} {
		text := strings.Replace(string(cfgText), "file: registry.jsonl", "file: "+filepath.Join(filepath.Dir(path), "registry.jsonl")+"\n  suffixes: "+s, 1)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"all pass", []string{"-config", path, "filed.cn", "www.filed.cn"}, 0,
			[]string{"input:      \"filed.cn\"", "domain:     filed.cn", "filing_number=京ICP备10206937号-1", "verdict:    pass (filed)"}},
		{"one blocked", []string{"-config", path, "filed.cn", "cancelled.cn"}, 1,
			[]string{"verdict:    block (cancelled)", "what to do: A cancelled filing number cannot be restored"}},
		{"json after hosts", []string{"-config", path, "www.filed.cn", "--json"}, 0,
			[]string{`"host":"www.filed.cn"`, `"normalized":"www.filed.cn"`, `"domain":"filed.cn"`, `"verdict":"pass"`, `"reason":"filed"`, `"filing_number":"京ICP备10206937号-1"`, `"state":"filed"`}},
		{"json unfiled", []string{"--json", "-config", path, "unfiled.cn"}, 1, []string{`"reason":"unfiled"`, `"filing_number":""`}},
		{"embedded", []string{"filed-demo.cn"}, 0, []string{"verdict:    pass (filed)"}},
		{"invalid host", []string{"-config", path, "bad host"}, 1, []string{"invalid_host"}},
		{"no hosts", []string{"-config", path}, 2, nil},
		{"missing config", []string{"-config", path + ".nope", "filed.cn"}, 2, nil},
		{"bad flag", []string{"-nope", "filed.cn"}, 2, nil},
		{"host after --", []string{"-config", path, "--", "-json"}, 1, []string{`input:      "-json"`}},
		{"default suffixes", []string{"-config", path, "unfiled.com"}, 1, []string{"verdict:    block (unfiled)"}},
		{"registry.suffixes", []string{"-config", suffixCfg, "unfiled.com"}, 1, []string{"verdict:    block (suffix_not_fileable)"}},
		{"registry.suffixes missing", []string{"-config", badSuffixCfg, "filed.cn"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"check"}, tt.args...), &out, &errb)
			if code != tt.wantCode {
				t.Fatalf("exit: got %d, want %d; stdout %q stderr %q", code, tt.wantCode, out.String(), errb.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout: got %q, want it to contain %q", out.String(), w)
				}
			}
			if strings.Contains(strings.Join(tt.args, " "), "--json") && tt.wantCode != 2 {
				for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Errorf("line %q: %v", line, err)
					}
					for _, k := range []string{"host", "normalized", "domain", "verdict", "reason", "filing_number"} {
						if _, ok := m[k]; !ok {
							t.Errorf("line %q: missing field %q", line, k)
						}
					}
				}
			}
		})
	}
}

func TestRunVerbs(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"version"}, 0, "icpgate "},
		{[]string{"help"}, 0, "Usage: icpgate"},
		{nil, 2, "Usage: icpgate"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"allow"}, 2, "Usage: icpgate allow add|ls|rm|extend"},
		{[]string{"allow", "frob"}, 2, `unknown subcommand "frob"`},
		{[]string{"allow", "add"}, 2, "want exactly one HOST"},
		{[]string{"report"}, 2, "Usage: icpgate report unfiled"},
		{[]string{"audit"}, 2, "Usage: icpgate audit ls"},
		{[]string{"token"}, 2, "Usage: icpgate token create"},
		{[]string{"token", "create", "--name", "x"}, 2, `--role: role must be "viewer", "support" or "admin", got ""`},
		{[]string{"token", "create", "--role", "admin"}, 2, "--name: required"},
		{[]string{"token", "ls"}, 2, "admin.tokens_file is not set in the embedded config"},
		{[]string{"explain"}, 2, "Usage: icpgate explain"},
		{[]string{"serve", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"serve", "-config", "testdata/nope.yaml"}, 2, "nope.yaml"},
		{[]string{"healthcheck", "-url", "http://127.0.0.1:1/healthz", "-timeout", "1s"}, 1, "healthcheck"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), tt.args, &out, &out)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("got %d %q, want %d containing %q", code, out.String(), tt.wantCode, tt.wantOut)
			}
		})
	}
}

// TestMetricsLint builds the Prometheus registry exactly as serve does and
// lints every metric on it.
func TestMetricsLint(t *testing.T) {
	o := startOrigin(t)
	cfg, err := LoadConfig(writeConfig(t, t.TempDir(), o, ""))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGateway(cfg, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g.reg.Decide("filed.cn")
	problems, err := testutil.GatherAndLint(g.prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	mfs, err := g.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	// Every gateway metric is in docs/monitoring.md's table.
	doc, err := os.ReadFile("../../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range names {
		if strings.HasPrefix(name, "icpgate_") && !bytes.Contains(doc, []byte(name)) {
			t.Errorf("metric %s is not documented in docs/monitoring.md", name)
		}
	}
	for _, want := range []string{"icpgate_build_info", "icpgate_registry_records", "icpgate_registry_cache_requests_total",
		"icpgate_registry_last_success_timestamp_seconds", "icpgate_registry_last_reload_failed", "go_goroutines", "process_open_fds"} {
		if !names[want] {
			t.Errorf("gathered metrics: missing %s", want)
		}
	}
}

// TestDeciderAdapter checks the adapter copies every field and does not
// allocate for a cached host.
func TestDeciderAdapter(t *testing.T) {
	o := startOrigin(t)
	cfg, err := LoadConfig(writeConfig(t, t.TempDir(), o, ""))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGateway(cfg, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := decider{g.reg}
	got := d.Decide("WWW.filed.cn")
	if !got.Pass || got.Reason != "filed" || got.Host != "www.filed.cn" || got.Domain != "filed.cn" || got.FilingNumber != "京ICP备10206937号-1" {
		t.Errorf("got %+v, want a pass for www.filed.cn with its filing number", got)
	}
	if got := d.Decide("cancelled.cn"); got.Pass || got.Reason != "cancelled" {
		t.Errorf("got %+v, want a block for cancelled", got)
	}
	// The data plane passes hosts that alias a pooled buffer: nothing of
	// the decision may change when the buffer is reused.
	buf := []byte("api.filed.cn")
	got = d.Decide(unsafe.String(&buf[0], len(buf)))
	copy(buf, "xxxxxxxxxxxx")
	if got.Host != "api.filed.cn" || got.Domain != "filed.cn" {
		t.Errorf("after reusing the buffer: got host %q domain %q, want api.filed.cn filed.cn", got.Host, got.Domain)
	}
	host := "www.filed.cn"
	if n := testing.AllocsPerRun(100, func() { d.Decide(host) }); n != 0 {
		t.Errorf("allocs per cached decision: got %v, want 0", n)
	}
}

func BenchmarkDeciderCached(b *testing.B) {
	reg := newTestRegistryB(b)
	d := decider{reg}
	d.Decide("www.filed.cn")
	b.ReportAllocs()
	for b.Loop() {
		d.Decide("www.filed.cn")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTestRegistryB(b *testing.B) *registry.Registry {
	snap, err := registry.LoadSnapshot("testdata/registry.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	reg := registry.New(registry.Options{})
	reg.Swap(snap)
	return reg
}
