package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAdminConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "icpgate.yaml")
	cfg := minimal + "admin:\n  state: data/admin.db\n  tokens_file: tokens.jsonl\n  hosts: [GW.Example.CN., 例子.中国]\nreport: {file: /var/lib/icpgate/unfiled.json}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		got  any
		want any
	}{
		{"admin.state", c.Admin.State, filepath.Join(dir, "data/admin.db")},
		{"admin.tokens_file", c.Admin.TokensFile, filepath.Join(dir, "tokens.jsonl")},
		{"admin.hosts", strings.Join(c.Admin.Hosts, ","), "gw.example.cn,xn--fsqu00a.xn--fiqs8s"},
		{"admin.default_allow_ttl", c.Admin.DefaultAllowTTL, 45 * 24 * time.Hour},
		{"admin.max_allow_ttl", c.Admin.MaxAllowTTL, 90 * 24 * time.Hour},
		{"admin.max_deny_ttl", c.Admin.MaxDenyTTL, 365 * 24 * time.Hour},
		{"admin.mutations_per_minute", c.Admin.MutationsPerMinute, 60},
		{"admin.failed_logins_per_minute", c.Admin.FailedLoginsPerMinute, 10},
		{"report.file", c.Report.File, "/var/lib/icpgate/unfiled.json"},
		{"report.capacity", c.Report.Capacity, 10000},
		{"report.max_destinations", c.Report.MaxDestinations, 8},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	// The embedded config names no control-plane files.
	e, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if e.Admin.State != "" || e.Admin.TokensFile != "" || e.Report.File != "" {
		t.Errorf("embedded config: got state %q tokens %q report %q, want none", e.Admin.State, e.Admin.TokensFile, e.Report.File)
	}
}

func TestAdminConfigErrors(t *testing.T) {
	pg := strings.Replace(minimal, "file: reg.jsonl", "postgres: {dsn: \"postgres://u@db/x\"}", 1)
	for _, tt := range []struct {
		name, yaml, want string
	}{
		{"host is an IP", minimal + "admin: {hosts: [\"10.0.0.1\"]}\n", "admin.hosts[0]: must be a DNS name"},
		{"host wildcard", minimal + "admin: {hosts: [ok.cn, \"*.example.cn\"]}\n", "admin.hosts[1]: must be a DNS name"},
		{"state with postgres", pg + "admin: {state: a.db}\n", "admin.state: not used with registry.postgres.dsn"},
		{"tokens with postgres", pg + "admin: {tokens_file: t.jsonl}\n", "admin.tokens_file: not used with registry.postgres.dsn"},
		{"negative ttl", minimal + "admin: {max_deny_ttl: -1h}\n", "admin.max_deny_ttl: must not be negative"},
		{"tiny ttl", minimal + "admin: {max_allow_ttl: 5s}\n", "admin.max_allow_ttl: must be at least 1m"},
		{"default above max", minimal + "admin: {default_allow_ttl: 2400h}\n", "admin.default_allow_ttl: 2400h0m0s is longer than admin.max_allow_ttl"},
		{"ttl in days", minimal + "admin: {max_allow_ttl: 90d}\n", "90d"},
		{"mutations", minimal + "admin: {mutations_per_minute: -1}\n", "admin.mutations_per_minute: must not be negative"},
		{"failed logins", minimal + "admin: {failed_logins_per_minute: -3}\n", "admin.failed_logins_per_minute: must not be negative"},
		{"capacity", minimal + "report: {capacity: -1}\n", "report.capacity: must be 1-"},
		{"capacity huge", minimal + "report: {capacity: 100000000}\n", "report.capacity: must be 1-"},
		{"destinations", minimal + "report: {max_destinations: 5000}\n", "report.max_destinations: must be 1-1024"},
		{"same file twice", minimal + "admin: {state: x.db}\nreport: {file: x.db}\n", "report.file: "},
		{"state is the tokens file", minimal + "admin: {state: x, tokens_file: x}\n", "admin.tokens_file: "},
		{"unknown admin key", minimal + "admin: {token_file: x}\n", "line 6: admin.token_file: unknown key (did you mean tokens_file?)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "icpgate.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrConfig containing %q", err, tt.want)
			}
		})
	}
}

// TestAdminReload: a SIGHUP reload keeps the stored overrides applied
// across a registry reload, and names the control-plane keys that only a
// restart changes.
func TestAdminReload(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	path := fileModeConfig(t, dir, o)
	g := runServe(t, path)
	web := g.ProxyAddr("web").String()
	token := newToken(t, path, "support")
	if code, _, errOut := cli(t, token, "allow", "add", "unfiled.cn", "--ticket", "T-1", "--reason", "R", "--admin", "http://"+g.AdminAddr().String()); code != exitOK {
		t.Fatalf("allow add: %s", errOut)
	}
	// A registry change and a config change reload; the allow stays.
	f, err := os.OpenFile(filepath.Join(dir, "registry.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"domain":"newly-filed.cn","state":"filed","filing_number":"京ICP备10206939号-1"}` + "\n")
	f.Close()
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := httpGet(t, web, "newly-filed.cn"); code != 200 {
		t.Errorf("reloaded registry: newly-filed.cn got %d, want 200", code)
	}
	if code, _, _ := httpGet(t, web, "unfiled.cn"); code != 200 {
		t.Errorf("allow after a registry reload: got %d, want 200", code)
	}

	old := g.Config()
	next := *old
	next.Admin.Hosts = []string{"gw.example.cn"}
	next.Admin.MaxAllowTTL = time.Hour
	next.Admin.State = "/elsewhere.db"
	next.Report.Capacity = 5
	got := restartOnly(old, &next)
	for _, k := range []string{"admin.hosts", "admin.max_allow_ttl", "admin.state", "report"} {
		if !slices.Contains(got, k) {
			t.Errorf("restartOnly: got %q, want it to name %s", got, k)
		}
	}
	if got := restartOnly(old, old); len(got) != 0 {
		t.Errorf("restartOnly of an unchanged config: got %q", got)
	}
}

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"24h", "7d", "2026-11-01T00:00:00+08:00", "", "d", "-1d", "99999999999d", "1h30m"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		at, err := parseWhen(s, now)
		if err == nil && at.After(now) && !strings.Contains(s, "T") {
			t.Errorf("parseWhen(%q) = %v: a duration ago is in the future", s, at)
		}
	})
}

// TestControlPlaneWithoutFiles: file mode without admin.state or
// admin.tokens_file starts, warns that whitelist changes are not persisted
// and that no one can sign in, and removes its temporary state at close.
func TestControlPlaneWithoutFiles(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, o, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("  tokens_file: tokens.jsonl\n"), nil, 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	g, err := NewGateway(cfg, slog.New(slog.NewJSONHandler(&logBuf, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"whitelist changes are not persisted", "no one can sign in"} {
		if !strings.Contains(logBuf.String(), want) {
			t.Errorf("log: no warning %q in\n%s", want, logBuf.String())
		}
	}
	tmp := g.cp.tmpDir
	if st, err := os.Stat(filepath.Join(tmp, "admin.db")); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("temporary state: %v %v, want a private file", st, err)
	}
	if dst, err := os.Stat(tmp); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("temporary state directory: %v %v, want mode 0700", dst, err)
	}
	if err := g.cp.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary state directory %s left behind: %v", tmp, err)
	}
}

// TestTokenFileOwner: root running `icpgate token create` leaves the token
// file to the owner of its directory (the gateway's user), not to root.
func TestTokenFileOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a file for another user")
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 65534, 65534 // nobody
	if err := os.Chown(state, uid, gid); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "icpgate.yaml")
	if err := os.WriteFile(path, []byte(minimal+"admin: {tokens_file: state/tokens.jsonl}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newToken(t, path, "admin")
	for _, p := range []string{"tokens.jsonl", "tokens.jsonl.lock"} {
		fi, err := os.Stat(filepath.Join(state, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: got uid %d gid %d mode %v, want %d:%d 0600", p, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
		}
	}
}
