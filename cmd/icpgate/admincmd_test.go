package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/internal/pebbletest"
	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/registry"
)

// newToken runs `icpgate token create` for the config at path and returns
// the secret it printed. The token is named after the role.
func newToken(t *testing.T, path, role string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"token", "create", "-config", path, "--role", role, "--name", role + ".user"}, &out, &errb); code != exitOK {
		t.Fatalf("token create: exit %d: %s", code, errb.String())
	}
	secret := strings.TrimSpace(out.String())
	if !strings.HasPrefix(secret, "icpg_") || strings.Contains(secret, "\n") {
		t.Fatalf("token create printed %q, want one icpg_ secret", secret)
	}
	if !strings.Contains(errb.String(), "only time") {
		t.Errorf("token create: no warning to store the secret: %q", errb.String())
	}
	return secret
}

// cli runs an icpgate command with ICPGATE_TOKEN set to token.
func cli(t *testing.T, token string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv(tokenEnv, token)
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// startServe starts `icpgate serve` in-process like runServe, but returns
// a stop function that ends it and waits, so a test can restart it.
func startServe(t *testing.T, path string) (*Gateway, func()) {
	t.Helper()
	started := make(chan *Gateway, 1)
	ctx, cancel := context.WithCancel(context.Background())
	ctx = withStarted(ctx, func(g *Gateway) { started <- g })
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() { done <- run(ctx, []string{"serve", "-config", path}, io.Discard, &stderr) }()
	select {
	case g := <-started:
		stopped := false
		stop := func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("serve exit code: got %d, want 0; log:\n%s", code, stderr.String())
			}
		}
		t.Cleanup(stop)
		return g, stop
	case code := <-done:
		cancel()
		t.Fatalf("serve exited with %d before starting; log:\n%s", code, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("serve did not start; log:\n%s", stderr.String())
	}
	return nil, nil
}

// fileModeConfig writes a file-mode config with the control plane's state
// and tokens in dir.
func fileModeConfig(t *testing.T, dir string, o *origin) string {
	t.Helper()
	path := writeConfig(t, dir, o, "report:\n  file: unfiled.json\n")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("  tokens_file: tokens.jsonl\n"), []byte("  tokens_file: tokens.jsonl\n  state: admin.db\n"), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAdminCLI drives the admin commands against a gateway served
// in-process in file mode, with a real origin behind its listeners.
func TestAdminCLI(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	path := fileModeConfig(t, dir, o)
	g, stop := startServe(t, path)
	web := g.ProxyAddr("web").String()
	api := "http://" + g.AdminAddr().String()
	support := newToken(t, path, "support")
	viewer := newToken(t, path, "viewer")
	adminTok := newToken(t, path, "admin")
	with := func(args ...string) []string { return append(args, "--admin", api) }

	if code, reason, _ := httpGet(t, web, "www.unfiled.cn"); code != 403 || reason != "unfiled" {
		t.Fatalf("before the allow: got %d %q, want 403 unfiled", code, reason)
	}

	code, out, errOut := cli(t, support, with("allow", "add", "unfiled.cn", "--ticket", "SR-7", "--reason", "接入备案初审通过", "--ttl", "2h")...)
	if code != exitOK || !strings.Contains(out, "allowed unfiled.cn (domain scope)") {
		t.Fatalf("allow add: got %d %q %q", code, out, errOut)
	}
	if code, _, body := httpGet(t, web, "www.unfiled.cn"); code != 200 || !strings.Contains(body, "origin saw www.unfiled.cn") {
		t.Fatalf("after the allow: got %d %q, want 200 from the origin", code, body)
	}

	// ls: --json parses, the table names the override.
	list := func(args ...string) []admin.OverrideJSON {
		t.Helper()
		code, out, errOut := cli(t, viewer, with(append([]string{"allow", "ls", "--json"}, args...)...)...)
		if code != exitOK {
			t.Fatalf("allow ls --json: %d %s", code, errOut)
		}
		var l []admin.OverrideJSON
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("allow ls --json: %v in %q", err, out)
		}
		return l
	}
	l := list()
	if len(l) != 1 || l[0].Host != "unfiled.cn" || l[0].Ticket != "SR-7" || l[0].CreatedBy != "support.user" || l[0].Version != 1 {
		t.Fatalf("allow ls: got %+v, want the one allow by support.user", l)
	}
	id := l[0].ID
	if code, out, _ := cli(t, viewer, with("allow", "ls")...); code != exitOK ||
		!strings.Contains(out, "unfiled.cn") || !strings.Contains(out, "SR-7") || !strings.HasPrefix(out, "ID") {
		t.Errorf("allow ls table: got %d %q", code, out)
	}
	if got := list("--expired"); len(got) != 0 {
		t.Errorf("allow ls --expired: got %+v, want none", got)
	}

	// extend: GET then PATCH with If-Match.
	before := *l[0].Expires
	if code, out, errOut := cli(t, support, with("allow", "extend", id, "--ttl", "48h")...); code != exitOK || !strings.Contains(out, "now expires") {
		t.Fatalf("allow extend: got %d %q %q", code, out, errOut)
	}
	l = list()
	if len(l) != 1 || l[0].Version != 2 || !l[0].Expires.After(before.Add(45*time.Hour)) {
		t.Errorf("after extend: got %+v, want version 2 expiring about 48h from now", l)
	}

	// explain: the running gateway's decision, exit codes like check.
	if code, out, _ := cli(t, viewer, with("explain", "www.unfiled.cn")...); code != exitOK || !strings.Contains(out, "override_allow") {
		t.Errorf("explain allowed host: got %d %q, want 0 and the allow in the trace", code, out)
	}
	code, out, _ = cli(t, viewer, with("explain", "--json", "filed.cn", "cancelled.cn")...)
	if code != exitBlocked {
		t.Errorf("explain with a blocked host: got exit %d, want 1", code)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var reasons []string
	for sc.Scan() {
		var e admin.Explanation
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("explain --json line %q: %v", sc.Text(), err)
		}
		reasons = append(reasons, e.Reason)
	}
	if strings.Join(reasons, ",") != "filed,cancelled" {
		t.Errorf("explain --json: got reasons %q, want filed,cancelled", reasons)
	}

	// Roles: a viewer cannot allow, support cannot deny; the message says
	// which role is needed and which the token has.
	for _, tt := range []struct {
		token string
		args  []string
		want  []string
	}{
		{viewer, []string{"allow", "add", "x.cn", "--ticket", "T", "--reason", "R"}, []string{"support", "viewer"}},
		{support, []string{"deny", "add", "filed.cn", "--reason", "R", "--ttl", "1h"}, []string{"admin", "support"}},
		{support, []string{"allow", "add", "cancelled.cn", "--ticket", "T", "--reason", "R"}, []string{"cancelled", "--confirm"}},
		{support, []string{"allow", "add", "blacklisted.cn", "--ticket", "T", "--reason", "R", "--confirm"}, []string{"blacklisted"}},
		{support, []string{"allow", "add", "pending.cn", "--reason", "R"}, []string{"--ticket"}},
		{support, []string{"allow", "rm", "999"}, []string{"not_found"}},
		{"icpg_not-a-real-token", []string{"allow", "ls"}, []string{"ICPGATE_TOKEN was not accepted"}},
		{"", []string{"allow", "ls"}, []string{"ICPGATE_TOKEN is not set"}},
	} {
		code, _, errOut := cli(t, tt.token, with(tt.args...)...)
		if code != exitError {
			t.Errorf("%q: got exit %d, want 2", tt.args, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%q: got %q, want it to mention %q", tt.args, errOut, w)
			}
		}
	}
	if code, _, errOut := cli(t, support, "allow", "ls", "--admin", "http://127.0.0.1:1"); code != exitError ||
		!strings.Contains(errOut, "isn't running at 127.0.0.1:1") {
		t.Errorf("no gateway: got %d %q, want exit 2 saying the gateway isn't running", code, errOut)
	}

	// A deny by an admin, seen by explain; then removed.
	if code, out, errOut := cli(t, adminTok, with("deny", "add", "www.filed.cn", "--reason", "abuse", "--ttl", "1h", "--json")...); code != exitOK {
		t.Errorf("deny add: %d %s", code, errOut)
	} else {
		var d admin.OverrideJSON
		if err := json.Unmarshal([]byte(out), &d); err != nil || d.Action != "deny" || d.Scope != "exact" {
			t.Errorf("deny add --json: got %+v %v", d, err)
		}
		if code, reason, _ := httpGet(t, web, "www.filed.cn"); code != 403 || reason != "override_deny" {
			t.Errorf("denied host: got %d %q, want 403 override_deny", code, reason)
		}
		if code, _, errOut := cli(t, support, with("allow", "rm", d.ID)...); code != exitError || !strings.Contains(errOut, "is a deny") {
			t.Errorf("allow rm of a deny: got %d %q", code, errOut)
		}
		if code, _, errOut := cli(t, adminTok, with("deny", "rm", d.ID)...); code != exitOK {
			t.Errorf("deny rm: %d %s", code, errOut)
		}
	}

	// The report has the blocked domains, as a table, JSON and CSV.
	httpGet(t, web, "nobody-filed-this.cn")
	if code, out, _ := cli(t, viewer, with("report", "unfiled")...); code != exitOK || !strings.Contains(out, "nobody-filed-this.cn") {
		t.Errorf("report unfiled: got %d %q", code, out)
	}
	csvPath := filepath.Join(dir, "report.csv")
	if code, _, errOut := cli(t, viewer, with("report", "unfiled", "--csv", "-o", csvPath, "--reason", "unfiled")...); code != exitOK {
		t.Errorf("report unfiled --csv: %d %s", code, errOut)
	}
	if f, err := os.Open(csvPath); err != nil {
		t.Error(err)
	} else {
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil || len(recs) < 2 || strings.Join(recs[0], ",") != "domain,reason,hits,hits_error,first_seen,last_seen,destinations" {
			t.Errorf("report CSV: got %q %v", recs, err)
		}
		found := false
		for _, r := range recs[1:] {
			if r[0] == "nobody-filed-this.cn" {
				found = true
				// Where the request would have gone, not the gateway's listener.
				if want := o.http.Addr().String(); r[6] != want {
					t.Errorf("report CSV destinations: got %q, want the listener's upstream %q", r[6], want)
				}
				// In policy.time_zone (default Asia/Shanghai), with the offset.
				if !strings.HasSuffix(r[4], "+08:00") || !strings.HasSuffix(r[5], "+08:00") {
					t.Errorf("report CSV times: got %q and %q, want them at +08:00", r[4], r[5])
				}
			}
			if r[1] != "unfiled" {
				t.Errorf("report CSV --reason unfiled: row %q", r)
			}
		}
		if !found {
			t.Errorf("report CSV: no row for nobody-filed-this.cn in %q", recs)
		}
	}
	// --bom: for Excel on Chinese Windows, which reads CSV without it as GBK.
	if code, out, errOut := cli(t, viewer, with("report", "unfiled", "--csv", "--bom")...); code != exitOK ||
		!strings.HasPrefix(out, "\ufeffdomain,reason,hits,") {
		t.Errorf("report unfiled --csv --bom: got %d %q %s, want the CSV after a UTF-8 byte order mark", code, out, errOut)
	}
	if code, _, errOut := cli(t, viewer, with("report", "unfiled", "--bom")...); code != exitError || !strings.Contains(errOut, "--bom: only with --csv") {
		t.Errorf("report unfiled --bom without --csv: got %d %q, want an error", code, errOut)
	}

	// rm: blocked again.
	if code, out, errOut := cli(t, support, with("allow", "rm", id)...); code != exitOK || !strings.Contains(out, "removed allow") {
		t.Fatalf("allow rm: got %d %q %q", code, out, errOut)
	}
	if code, reason, _ := httpGet(t, web, "www.unfiled.cn"); code != 403 || reason != "unfiled" {
		t.Errorf("after rm: got %d %q, want 403 unfiled", code, reason)
	}

	// The audit log has it all, with who did it.
	code, out, errOut = cli(t, viewer, with("audit", "ls", "--json", "--limit", "200")...)
	if code != exitOK {
		t.Fatalf("audit ls: %d %s", code, errOut)
	}
	var entries []admin.AuditEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("audit ls --json: %v", err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Action+" "+e.Who+" "+e.Outcome] = true
		for _, tok := range []string{support, viewer, adminTok} {
			if strings.Contains(out, tok) {
				t.Fatal("a token secret appears in the audit log")
			}
		}
	}
	for _, want := range []string{
		"override.create support.user ok", "override.update support.user ok", "override.delete support.user ok",
		"override.create viewer.user denied", "override.create admin.user ok", "override.create support.user rejected",
	} {
		if !seen[want] {
			t.Errorf("audit: no entry %q in %v", want, seen)
		}
	}
	if code, out, _ := cli(t, viewer, with("audit", "ls", "--who", "support.user", "--action", "override.delete", "--since", "1h")...); code != exitOK ||
		!strings.Contains(out, "override.delete") || strings.Contains(out, "override.create") {
		t.Errorf("audit ls filtered: got %d %q", code, out)
	}

	// Revoking a token works at once.
	if code, _, errOut := cli(t, "", "token", "revoke", "-config", path, "viewer.user"); code != exitOK {
		t.Fatalf("token revoke: %d %s", code, errOut)
	}
	if code, _, errOut := cli(t, viewer, with("allow", "ls")...); code != exitError || !strings.Contains(errOut, "not accepted") {
		t.Errorf("revoked token: got %d %q", code, errOut)
	}
	code, out, _ = cli(t, "", "token", "ls", "-config", path, "--json")
	var toks []tokenJSON
	if err := json.Unmarshal([]byte(out), &toks); code != exitOK || err != nil || len(toks) != 3 {
		t.Fatalf("token ls --json: got %d %q %v", code, out, err)
	}
	for _, tk := range toks {
		if tk.Revoked != (tk.Name == "viewer.user") || tk.Token != "" {
			t.Errorf("token ls: got %+v", tk)
		}
	}

	// Overrides are in admin.state: they survive a restart and apply at
	// once.
	if code, _, errOut := cli(t, support, with("allow", "add", "pending-review.cn", "--ticket", "SR-8", "--reason", "R")...); code != exitOK {
		t.Fatalf("allow add: %d %s", code, errOut)
	}
	stop()
	if _, err := os.Stat(filepath.Join(dir, "unfiled.json")); err != nil {
		t.Errorf("report.file not saved at exit: %v", err)
	}
	g, _ = startServe(t, path)
	if code, _, body := httpGet(t, g.ProxyAddr("web").String(), "pending-review.cn"); code != 200 {
		t.Errorf("allow after a restart: got %d %q, want 200", code, body)
	}
	api = "http://" + g.AdminAddr().String()
	code, out, _ = cli(t, support, "report", "unfiled", "--json", "--admin", api)
	var rows []admin.ReportRow
	if err := json.Unmarshal([]byte(out), &rows); code != exitOK || err != nil {
		t.Fatalf("report --json after restart: %d %q %v", code, out, err)
	}
	found := false
	for _, r := range rows {
		found = found || r.Domain == "nobody-filed-this.cn"
	}
	if !found {
		t.Errorf("report after a restart: %+v lacks nobody-filed-this.cn (report.file not restored)", rows)
	}
}

// TestAdminClientAddress: without --admin the commands find the API at
// the config's admin.address, on loopback for an any-address listener,
// over HTTPS to the first tls_names name when set.
func TestAdminClientAddress(t *testing.T) {
	t.Setenv(tokenEnv, "icpg_x")
	dir := t.TempDir()
	for _, tt := range []struct {
		admin   string
		base    string
		where   string
		wantErr string
	}{
		{"address: \"0.0.0.0:9191\"", "http://127.0.0.1:9191", "127.0.0.1:9191", ""},
		{"address: \"[::]:9191\"", "http://[::1]:9191", "[::1]:9191", ""},
		{"address: \"10.1.2.3:9191\"", "http://10.1.2.3:9191", "10.1.2.3:9191", ""},
		{"address: \"127.0.0.1:9443\"\n  tls_names: [gw.example.cn]", "https://gw.example.cn:9443", "127.0.0.1:9443", ""},
	} {
		path := filepath.Join(dir, "c.yaml")
		cfg := "registry: {file: r.jsonl}\nlisteners:\n  - {name: w, protocol: http, address: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}\nadmin:\n  " + tt.admin + "\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := newAdminClient(&clientFlags{config: path})
		if err != nil {
			t.Errorf("%s: %v", tt.admin, err)
			continue
		}
		if c.base.String() != tt.base || c.where != tt.where {
			t.Errorf("%s: got %s via %s, want %s via %s", tt.admin, c.base, c.where, tt.base, tt.where)
		}
	}
	for _, tt := range []struct{ flag, base, err string }{
		{"127.0.0.1:9000", "http://127.0.0.1:9000", ""},
		{"https://gw.example.cn:9443/", "https://gw.example.cn:9443", ""},
		{"ftp://x", "", "--admin: must be an http(s) URL"},
	} {
		c, err := newAdminClient(&clientFlags{admin: tt.flag})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("--admin %s: got %v, want %q", tt.flag, err, tt.err)
			}
			continue
		}
		if err != nil || c.base.String() != tt.base {
			t.Errorf("--admin %s: got %v %v, want %s", tt.flag, c, err, tt.base)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"24h", now.Add(-24 * time.Hour), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"2026-11-01T00:00:00+08:00", time.Date(2026, 10, 31, 16, 0, 0, 0, time.UTC), false},
		{"yesterday", time.Time{}, true},
		{"-5h", time.Time{}, true},
		{"xd", time.Time{}, true},
	} {
		got, err := parseWhen(tt.in, now)
		if (err != nil) != tt.err || (!tt.err && !got.Equal(tt.want)) {
			t.Errorf("parseWhen(%q): got %v %v, want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestAdminShutdownKeepsTraffic: stopping the admin listener touches
// nothing of the data plane: a long-lived HTTP stream through the gateway
// keeps flowing, and new HTTP and TLS connections still pass.
func TestAdminShutdownKeepsTraffic(t *testing.T) {
	o := startOrigin(t)
	// A streaming origin: one line every 10 ms until the client leaves.
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "tick %d\n", i); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})}
	go stream.Serve(sl)
	t.Cleanup(func() { stream.Close() })
	dir := t.TempDir()
	path := writeConfig(t, dir, o, "")
	b, _ := os.ReadFile(path)
	b = bytes.Replace(b, []byte("listeners:\n"), []byte(fmt.Sprintf("listeners:\n  - {name: stream, protocol: http, address: \"127.0.0.1:0\", upstream: %q}\n", sl.Addr().String())), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	g := runServe(t, path)

	req, _ := http.NewRequest("GET", "http://"+g.ProxyAddr("stream").String()+"/", nil)
	req.Host = "filed.cn"
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	read := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if !lines.Scan() {
				t.Fatalf("stream ended after the admin shutdown: %v", lines.Err())
			}
		}
	}
	read(3)
	adminAddr := g.AdminAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.admin.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", adminAddr, time.Second); err == nil {
		c.Close()
		t.Fatalf("admin listener %s still accepts after Shutdown", adminAddr)
	}
	read(20) // the stream keeps flowing
	if code, _, body := httpGet(t, g.ProxyAddr("web").String(), "www.filed.cn"); code != 200 {
		t.Errorf("new HTTP connection after the admin shutdown: got %d %q", code, body)
	}
	if err := tlsHandshake(g.ProxyAddr("tls").String(), "filed.cn"); err != nil {
		t.Errorf("new TLS connection after the admin shutdown: %v", err)
	}
	if err := tlsHandshake(g.ProxyAddr("tls").String(), "unfiled.cn"); err == nil {
		t.Error("unfiled TLS passed after the admin shutdown")
	}
}

// TestPostgresControlPlane: two gateways on one filing database share
// tokens and overrides: an allow made on gateway A's API opens the host on
// gateway B, through the database's NOTIFY.
func TestPostgresControlPlane(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDB(t)
	if code, out, errOut := runCmd(t, dbCmd, "migrate", "-dsn", dsn); code != exitOK {
		t.Fatalf("db migrate: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, importCmd, "-dsn", dsn, filepath.Join("testdata", "import.jsonl")); code != exitOK {
		t.Fatalf("import: %s", errOut)
	}
	o := startOrigin(t)
	config := func(name string) string {
		dir := t.TempDir()
		cfg := fmt.Sprintf(`node: %s
registry:
  postgres:
    dsn: %q
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
timeouts:
  drain: 2s
log:
  level: debug
`, name, dsn, o.http.Addr().String())
		path := filepath.Join(dir, "icpgate.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pathA, pathB := config("a"), config("b")
	// Config validation: file-mode keys are refused with a dsn.
	if _, err := parseConfig([]byte("registry: {postgres: {dsn: \"postgres://x@db/y\"}}\nlisteners: [{name: w, protocol: http, address: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}]\nadmin: {state: a.db}\n"), "/x/c.yaml", "c.yaml"); err == nil || !strings.Contains(err.Error(), "admin.state: not used with registry.postgres.dsn") {
		t.Errorf("admin.state with a dsn: got %v", err)
	}
	gA, gB := runServe(t, pathA), runServe(t, pathB)
	waitReady := func(g *Gateway) {
		deadline := time.Now().Add(15 * time.Second)
		for !g.Registry().Loaded() {
			if time.Now().After(deadline) {
				t.Fatal("registry not loaded from the database within 15 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitReady(gA)
	waitReady(gB)
	webB := gB.ProxyAddr("web").String()
	// The token is made with B's config and used on A: one token table.
	token := newToken(t, pathB, "support")
	if code, reason, _ := httpGet(t, webB, "www.unfiled.cn"); code != 403 || reason != "unfiled" {
		t.Fatalf("B before the allow: got %d %q, want 403 unfiled", code, reason)
	}
	added := time.Now()
	if code, _, errOut := cli(t, token, "allow", "add", "unfiled.cn", "--ticket", "SR-9", "--reason", "R", "--admin", "http://"+gA.AdminAddr().String()); code != exitOK {
		t.Fatalf("allow add on A: %d %s", code, errOut)
	}
	// Bounded poll: the change must reach B through NOTIFY (B's poll
	// interval is the default 10 s, longer than the bound).
	var took time.Duration
	for {
		if gB.Registry().Decide("www.unfiled.cn").Verdict.String() == "pass" {
			took = time.Since(added)
			break
		}
		if time.Since(added) > 8*time.Second {
			t.Fatal("gateway B did not pass the host within 8 s of the allow on A")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("allow on A reached B's decisions in %s", took)
	if code, _, body := httpGet(t, webB, "www.unfiled.cn"); code != 200 {
		t.Errorf("B after the allow: got %d %q, want 200", code, body)
	}
	// The audit log is shared: B's API lists A's change.
	code, out, _ := cli(t, token, "audit", "ls", "--json", "--action", "override.create", "--admin", "http://"+gB.AdminAddr().String())
	var entries []admin.AuditEntry
	if err := json.Unmarshal([]byte(out), &entries); code != exitOK || err != nil || len(entries) == 0 || entries[0].Who != "support.user" {
		t.Errorf("audit on B: got %d %q %v", code, out, err)
	}
	// token create is audited in the database.
	code, out, _ = cli(t, token, "audit", "ls", "--json", "--action", "token.create", "--admin", "http://"+gB.AdminAddr().String())
	if err := json.Unmarshal([]byte(out), &entries); code != exitOK || err != nil || len(entries) != 1 || entries[0].Target != "support.user" {
		t.Errorf("token.create audit: got %d %q %v", code, out, err)
	}
}

// TestAdminClientHTTPS: with admin.tls_names the commands reach the admin
// listener over HTTPS under its name (SNI and Host) at admin.address, with
// a certificate from a real ACME CA (pebble).
func TestAdminClientHTTPS(t *testing.T) {
	port := pebbletest.FreePorts(t, 1)[0]
	ca := pebbletest.Start(t, port)
	o := startOrigin(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, o, fmt.Sprintf("policy:\n  tls_page:\n    acme_directory: %q\n    ca_roots_file: %q\n", ca.Directory, ca.TLSRootsFile))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`address: "127.0.0.1:0"`+"\n  tokens_file"),
		fmt.Appendf(nil, "address: \"127.0.0.1:%d\"\n  tls_names: [admin.example.cn]\n  tokens_file", port), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runServe(t, path)
	t.Setenv(tokenEnv, newToken(t, path, "viewer"))
	c, err := newAdminClient(&clientFlags{config: path})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.base.String(), fmt.Sprintf("https://admin.example.cn:%d", port); got != want {
		t.Fatalf("base URL: got %s, want %s", got, want)
	}
	// The system roots do not hold pebble's: trust its root as an
	// operator would with SSL_CERT_FILE.
	c.hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: ca.Roots}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var e admin.Explanation
		_, err := c.getJSON(context.Background(), "/v1/explain", url.Values{"host": {"www.filed.cn"}}, &e)
		if err == nil {
			if e.Reason != "filed" {
				t.Errorf("explain over HTTPS: got %+v, want reason filed", e)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("explain over HTTPS: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAdminCLIEscapesStoredText: text the API now refuses (bidi
// controls, line separators, terminal escapes) but that is already stored,
// from an older version or a direct database write, is printed by
// allow ls, deny ls, audit ls and explain as visible escapes.
func TestAdminCLIEscapesStoredText(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	path := fileModeConfig(t, dir, o)
	viewer := newToken(t, path, "viewer")

	st, err := adminstore.OpenBolt(filepath.Join(dir, "admin.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	exp := time.Now().Add(24 * time.Hour)
	for _, ov := range []registry.Override{
		{Host: "unfiled.cn", Scope: registry.ScopeDomain, Action: registry.ActionAllow, Expires: exp,
			Reason: "备案通过 \u202etxt.exe\u2028x", Ticket: "SR-\u202e1", Who: "li.wei\u200f"},
		{Host: "filed.cn", Scope: registry.ScopeDomain, Action: registry.ActionDeny, Expires: exp,
			Reason: "\u2066abuse\u2069 \x1b[31mred", Ticket: "T\u2029", Who: "ops"},
	} {
		if _, err := st.CreateOverride(ctx, ov, admin.AuditEntry{Who: "ops\u202e", Action: "override.create", Remote: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AppendAudit(ctx, admin.AuditEntry{Who: "x", Action: "login", Outcome: "rejected", Remote: "127.0.0.1:1",
		Detail: "bad\u2028detail\u0085\ufeff"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	g, _ := startServe(t, path)
	api := "http://" + g.AdminAddr().String()
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"allow", "ls"}, []string{`备案通过 \u202etxt.exe\u2028x`, `SR-\u202e1`, `li.wei\u200f`}},
		{[]string{"deny", "ls"}, []string{`\u2066abuse\u2069 \u001b[31mred`, `T\u2029`}},
		{[]string{"audit", "ls"}, []string{`ops\u202e`, `bad\u2028detail\u0085\ufeff`}},
		{[]string{"explain", "www.unfiled.cn"}, []string{`ticket=SR-\u202e1`}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := cli(t, viewer, append(tt.args, "--admin", api)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %s:\n%s", w, out)
				}
			}
			for _, r := range out {
				if r != '\n' && admin.DisplayUnsafe(r) {
					t.Errorf("output holds U+%04X raw:\n%q", r, out)
				}
			}
		})
	}
}

func TestEscapeText(t *testing.T) {
	for _, tt := range []struct {
		in   string
		most int
		want string
	}{
		{"plain 中文 👨‍💻", 0, "plain 中文 👨‍💻"},
		{"a\u202eb", 0, `a\u202eb`},
		{"tag\U000E0041", 0, `tag\U000e0041`},
		{"bad\xffbyte", 0, `bad\xffbyte`},
		{"real \ufffd stays", 0, "real \ufffd stays"},
		{"tab\tand\nline", 0, `tab\u0009and\u000aline`},
		{"abcdef", 4, "abc…"},
		{"ab\u202ecd", 6, "ab…"}, // never half an escape
		{"ab\u202e", 8, `ab\u202e`},
	} {
		if got := escapeText(tt.in, tt.most); got != tt.want {
			t.Errorf("escapeText(%q, %d) = %q, want %q", tt.in, tt.most, got, tt.want)
		}
	}
}
