package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/icpgate/icpgate/configs"
	"github.com/icpgate/icpgate/registry"
)

// TestSamplesLoad loads every sample an operator would copy: configs in
// configs/ and testdata/, the embedded config and every registry file.
func TestSamplesLoad(t *testing.T) {
	if _, err := LoadConfig(""); err != nil {
		t.Errorf("embedded config: %v", err)
	}
	for _, glob := range []string{"../../configs/*.yaml", "testdata/*.yaml"} {
		files, _ := filepath.Glob(glob)
		if len(files) == 0 {
			t.Errorf("%s: no files", glob)
		}
		for _, f := range files {
			if strings.HasPrefix(filepath.Base(f), "bad-") {
				continue
			}
			t.Run(f, func(t *testing.T) {
				c, err := LoadConfig(f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := registry.LoadFile(c.Registry.File); err != nil {
					t.Errorf("its registry.file: %v", err)
				}
			})
		}
	}
	regs, _ := filepath.Glob("../../configs/registry*")
	if len(regs) == 0 {
		t.Error("no sample registry in configs/")
	}
	for _, f := range regs {
		if _, err := registry.LoadFile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	reg := registry.New(registry.Options{})
	if err := loadEmbeddedRegistry(reg); err != nil {
		t.Errorf("embedded registry: %v", err)
	}
	if got := reg.Snapshot().Len(); got == 0 {
		t.Errorf("embedded registry: got %d records, want some", got)
	}
}

// TestDemoNamesInSample checks the names README and demo use against the
// sample registry.
func TestDemoNamesInSample(t *testing.T) {
	reg := registry.New(registry.Options{})
	if err := loadEmbeddedRegistry(reg); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host   string
		reason registry.Reason
	}{
		{demoFiled, registry.ReasonFiled},
		{"www." + demoFiled, registry.ReasonFiled},
		{demoCancelled, registry.ReasonCancelled},
		{demoBlacklisted, registry.ReasonBlacklisted},
		{demoUnfiled, registry.ReasonUnfiled},
		{demoNoAccess, registry.ReasonNoAccess},
	}
	for _, tt := range tests {
		d := reg.Decide(tt.host)
		if d.Reason != tt.reason {
			t.Errorf("%s: got %q, want %q", tt.host, d.Reason, tt.reason)
		}
	}
}

// yamlPaths lists the dotted yaml paths of every leaf field of t
// ("registry.file", "listeners[].name").
func yamlPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "-" {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		p := prefix + tag
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}):
			out = append(out, yamlPaths(ft, p+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, yamlPaths(ft.Elem(), p+"[].")...)
		default:
			out = append(out, p)
		}
	}
	return out
}

// documented finds path in the mapping node n and reports whether it is
// present and carries a comment (on the key, its line, or, for the first
// key of a list item, on the item).
func documented(n *yaml.Node, path string) (found, commented bool) {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	head, rest, _ := strings.Cut(path, ".")
	list := strings.HasSuffix(head, "[]")
	head = strings.TrimSuffix(head, "[]")
	if n.Kind != yaml.MappingNode {
		return false, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value != head {
			continue
		}
		if rest == "" {
			return true, k.HeadComment != "" || k.LineComment != "" || v.LineComment != "" || (i == 0 && n.HeadComment != "")
		}
		if list {
			// Documented in at least one item.
			for _, item := range v.Content {
				if f, c := documented(item, rest); f && c {
					return true, true
				} else if f {
					found = true
				}
			}
			return found, false
		}
		return documented(v, rest)
	}
	return false, false
}

// TestEveryFieldDocumented walks Config's yaml tags and requires each key
// to appear in configs/icpgate.yaml with a comment.
func TestEveryFieldDocumented(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal(configs.Config, &root); err != nil {
		t.Fatal(err)
	}
	paths := yamlPaths(reflect.TypeOf(Config{}), "")
	if len(paths) < 25 {
		t.Fatalf("got %d paths, want the whole Config: %q", len(paths), paths)
	}
	for _, p := range paths {
		found, commented := documented(&root, p)
		if !found {
			t.Errorf("%s: missing from configs/icpgate.yaml", p)
		} else if !commented {
			t.Errorf("%s: in configs/icpgate.yaml without a comment", p)
		}
	}
	// The checker itself must be able to fail.
	if f, _ := documented(&root, "registry.no_such_key"); f {
		t.Error("documented found a key that does not exist")
	}
}

// TestReadmeConfigReference requires the configuration reference
// (docs/configuration.md) to have a row for every key of Config, and no
// row for a key Config lacks.
func TestReadmeConfigReference(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	ref := string(doc)
	rows := map[string]bool{}
	for _, line := range strings.Split(ref, "\n") {
		if k, ok := strings.CutPrefix(line, "| `"); ok {
			if k, _, ok := strings.Cut(k, "`"); ok {
				rows[k] = true
			}
		}
	}
	paths := yamlPaths(reflect.TypeOf(Config{}), "")
	known := map[string]bool{}
	for _, p := range paths {
		known[p] = true
		if !rows[p] {
			t.Errorf("%s: no row in docs/configuration.md", p)
		}
	}
	for k := range rows {
		if !known[k] {
			t.Errorf("docs/configuration.md documents %s, which Config does not have", k)
		}
	}
}

const minimal = `
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: "127.0.0.1:18080"}
registry:
  file: reg.jsonl
`

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "icpgate.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"registry.file", c.Registry.File, filepath.Join(dir, "reg.jsonl")},
		{"registry.cache_size", c.Registry.CacheSize, 100000},
		{"registry.max_delete_fraction", c.Registry.MaxDeleteFraction, 0.5},
		{"listeners[0].forwarded_proto", c.Listeners[0].ForwardedProto, "http"},
		{"admin.address", c.Admin.Address, "127.0.0.1:9090"},
		{"policy.ip_access", c.Policy.IPAccess, "pass"},
		{"policy.tls_block", c.Policy.TLSBlock, "alert"},
		{"policy.quic_block", c.Policy.QUICBlock, "close"},
		{"timeouts.quic_idle", c.Timeouts.QUICIdle, 60 * time.Second},
		{"limits.max_quic_flows", c.Limits.MaxQUICFlows, 10000},
		{"proxy policy.quic_block", c.ProxyConfig().Policy.QUICBlock, "close"},
		{"proxy timeouts.quic_idle", c.ProxyConfig().Timeouts.QUICIdle, 60 * time.Second},
		{"proxy limits.max_quic_flows", c.ProxyConfig().Limits.MaxQUICFlows, 10000},
		{"proxy timeouts.body_grace", c.ProxyConfig().Timeouts.BodyGrace, 5 * time.Second},
		{"proxy limits.min_body_rate", c.ProxyConfig().Limits.MinBodyRate, 240},
		{"proxy timeouts.tunnel_idle", c.ProxyConfig().Timeouts.TunnelIdle, time.Duration(0)},
		{"policy.http_block_status", c.Policy.HTTPBlockStatus, 403},
		{"policy.time_zone", c.Policy.TimeZone, "Asia/Shanghai"},
		{"policy.show_node", c.Policy.ShowNode, false},
		{"policy.provider", c.Policy.Provider, ProviderConfig{}},
		{"timeouts.hello", c.Timeouts.Hello, 5 * time.Second},
		{"timeouts.dial", c.Timeouts.Dial, 3 * time.Second},
		{"timeouts.idle", c.Timeouts.Idle, time.Duration(0)},
		{"timeouts.drain", c.Timeouts.Drain, 30 * time.Second},
		{"limits.max_header_bytes", c.Limits.MaxHeaderBytes, 65536},
		{"limits.max_headers", c.Limits.MaxHeaders, 100},
		{"limits.max_conns", c.Limits.MaxConns, 100000},
		{"limits.max_conns_per_ip", c.Limits.MaxConnsPerIP, 1000},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, ""},
		{"node not empty", c.Node != "", true},
		{"embedded", c.Embedded(), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	pc := c.ProxyConfig()
	if got, want := pc.Listeners[0].Upstream, "127.0.0.1:18080"; got != want {
		t.Errorf("proxy listener upstream: got %q, want %q", got, want)
	}
	if got, want := pc.Timeouts.Drain, 30*time.Second; got != want {
		t.Errorf("proxy drain: got %v, want %v", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top-level key", minimal + "bogus: 1\n", []string{"line 6: bogus: unknown key; the keys here are admin, compliance, limits, listeners"}},
		{"unknown nested key", minimal + "policy:\n  tls_blok: alert\n", []string{"line 7: policy.tls_blok: unknown key (did you mean tls_block?)"}},
		{"unknown listener key", "listeners:\n  - {name: a, protocol: http, adress: x}\n", []string{"line 2: listeners[0].adress: unknown key (did you mean address?)"}},
		{"file and database", minimal + "  postgres: {dsn: \"postgres://u@127.0.0.1/icp\"}\n", []string{"registry: both registry.file and registry.postgres.dsn are set", "delete the registry.file line"}},
		{"misspelt section", minimal + "registy: {}\n", []string{"line 6: registy: unknown key (did you mean registry?)"}},
		{"word for a number", minimal + "limits: {max_conns: lots}\n", []string{`line 6: limits.max_conns: want a whole number, got "lots"`}},
		{"word for a duration", minimal + "timeouts:\n  idle: forever\n", []string{`line 7: timeouts.idle: want a duration such as 300ms, 5s or 2m, got "forever"`}},
		{"list for a duration", minimal + "timeouts: {hello: [1]}\n", []string{"timeouts.hello: want a duration such as 300ms, 5s or 2m, got a list"}},
		{"word for a switch", "listeners:\n  - {name: a, protocol: http, spoof_source: maybe}\n", []string{`line 2: listeners[0].spoof_source: want true or false, got "maybe"`}},
		{"every problem listed", minimal + "bogus: 1\nlimits: {max_conns: lots}\n", []string{"2 problems:", "line 6: bogus", "line 7: limits.max_conns"}},
		{"not yaml", "listeners: [\n", []string{"icpgate.yaml"}},
		{"two documents", minimal + "---\nnode: x\n", []string{"more than one YAML document"}},
		{"empty", "", []string{"registry.file: required"}},
		{"no listeners", "registry: {file: r.jsonl}\n", []string{"listeners: at least one listener"}},
		{"bad protocol", strings.Replace(minimal, "protocol: http", "protocol: ftp", 1), []string{"listeners[0].protocol: must be http, tls, quic or auto"}},
		{"original without transparent", strings.Replace(minimal, `upstream: "127.0.0.1:18080"`, "upstream: original", 1), []string{"listeners[0].transparent", "required"}},
		{"second listener address", minimal[:len(minimal)-len("registry:\n  file: reg.jsonl\n")] +
			"  - {name: b, protocol: tls, address: \"nohost\", upstream: \"127.0.0.1:1\"}\nregistry: {file: r.jsonl}\n",
			[]string{"listeners[1].address: must be host:port"}},
		{"duplicate name", strings.Replace(minimal, "registry:", "  - {name: web, protocol: tls, address: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}\nregistry:", 1),
			[]string{`listeners[1].name: "web" already used by listeners[0]`}},
		{"listen on a name", strings.Replace(minimal, `address: "127.0.0.1:0"`, `address: "gw.example:80"`, 1), []string{"listeners[0].address: listen host must be an IP address or localhost"}},
		{"upstream port 0", strings.Replace(minimal, "127.0.0.1:18080", "127.0.0.1:0", 1), []string{"listeners[0].upstream: bad port"}},
		{"upstream without host", strings.Replace(minimal, "127.0.0.1:18080", ":80", 1), []string{"listeners[0].upstream: host missing"}},
		{"forwarded_proto", strings.Replace(minimal, "upstream:", "forwarded_proto: ftp, upstream:", 1), []string{"listeners[0].forwarded_proto"}},
		{"tls_block", minimal + "policy: {tls_block: drop}\n", []string{"policy.tls_block: must be alert, reset or page"}},
		{"quic_block", minimal + "policy: {quic_block: alert}\n", []string{"policy.quic_block: must be close or drop"}},
		{"quic_idle", minimal + "timeouts: {quic_idle: -1s}\n", []string{"timeouts.quic_idle: must not be negative"}},
		{"max_quic_flows", minimal + "limits: {max_quic_flows: -1}\n", []string{"limits.max_quic_flows: must not be negative"}},
		{"tunnel_idle", minimal + "timeouts: {tunnel_idle: -1s}\n", []string{"timeouts.tunnel_idle: must not be negative"}},
		{"min_body_rate", minimal + "limits: {min_body_rate: -2}\n", []string{"limits.min_body_rate: must be a rate in bytes per second, or -1 to turn it off"}},
		{"ip_access", minimal + "policy: {ip_access: maybe}\n", []string{"policy.ip_access: must be pass or block"}},
		{"status", minimal + "policy: {http_block_status: 200}\n", []string{"policy.http_block_status: must be 400-599"}},
		{"redirect", minimal + "policy: {redirect_url: \"/notice\"}\n", []string{"policy.redirect_url"}},
		{"time_zone", minimal + "policy: {time_zone: Asia/Beijing}\n", []string{`policy.time_zone: must be an IANA time zone name such as Asia/Shanghai, got "Asia/Beijing"`}},
		{"support_url", minimal + "policy: {provider: {support_url: \"javascript:alert(1)\"}}\n", []string{`policy.provider.support_url: must be an absolute http or https URL, got "javascript:alert(1)"`}},
		{"filing_url", minimal + "policy: {provider: {filing_url: beian.example.com}}\n", []string{`policy.provider.filing_url: must be an absolute http or https URL`}},
		{"duration string", minimal + "timeouts: {hello: 5x}\n", []string{"line 6", "5x"}},
		{"duration int", minimal + "timeouts: {hello: 5}\n", []string{"line 6: timeouts.hello: want a duration such as 300ms, 5s or 2m, got \"5\": a number needs its unit"}},
		{"negative duration", minimal + "timeouts: {dial: -1s}\n", []string{"timeouts.dial: must not be negative"}},
		{"negative limit", minimal + "limits: {max_conns: -1}\n", []string{"limits.max_conns: must not be negative"}},
		{"tiny header limit", minimal + "limits: {max_header_bytes: 10}\n", []string{"limits.max_header_bytes: must be at least 1024"}},
		{"max_delete_fraction", strings.Replace(minimal, "file: reg.jsonl", "file: reg.jsonl\n  max_delete_fraction: 1.5", 1), []string{"registry.max_delete_fraction: must be above 0 and at most 1"}},
		{"log level", minimal + "log: {level: loud}\n", []string{"log.level: must be debug, info, warn or error"}},
		{"log format", minimal + "log: {format: xml}\n", []string{"log.format: must be json or text"}},
		{"admin address", minimal + "admin: {address: localhost}\n", []string{"admin.address: must be host:port"}},
		{"cache size", strings.Replace(minimal, "file: reg.jsonl", "file: reg.jsonl\n  cache_size: -5", 1), []string{"registry.cache_size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "icpgate.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil {
				t.Fatalf("got nil, want an error containing %q", tt.want)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("got %v, want it to wrap ErrConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
			// Operators read these: never Go's own words.
			for _, goish := range []string{"main.", "!!", "unmarshal", "not found in type"} {
				if strings.Contains(err.Error(), goish) {
					t.Errorf("got %q, which speaks Go (%q)", err, goish)
				}
			}
		})
	}
}

func TestConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrConfig wrapping ErrNotExist", err)
	}
}

// FuzzParseConfig: no input panics, and whatever parses also validates
// again and converts to a proxy config.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add(configs.Config)
	f.Add([]byte("listeners: [{name: a}]\nbogus: 1\n"))
	f.Add([]byte("timeouts: {hello: 5x}\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data, "/etc/icpgate/icpgate.yaml", "fuzz.yaml")
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want it to wrap ErrConfig", err)
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("validated once, then: %v", err)
		}
		if got, want := len(c.ProxyConfig().Listeners), len(c.Listeners); got != want {
			t.Fatalf("got %d proxy listeners, want %d", got, want)
		}
	})
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		format, level string
		wantPrefix    string // of the Info line; "" means the line is filtered
	}{
		{"json", "info", `{"time":`},
		{"text", "info", "time="},
		{"", "info", `{"time":`}, // not a terminal: JSON
		{"json", "warn", ""},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		lv := new(slog.LevelVar)
		log := newLogger(LogConfig{Format: tt.format, Level: tt.level}, &buf, lv)
		log.Info("hello", "k", 1)
		if got := buf.String(); !strings.HasPrefix(got, tt.wantPrefix) || (tt.wantPrefix == "" && got != "") {
			t.Errorf("format %q level %q: got %q, want prefix %q", tt.format, tt.level, got, tt.wantPrefix)
		}
	}
}

// TestRegistrySourceOneRule: the database commands, which read only the
// registry keys of a config, refuse a file source and a database source
// together with the same words as serve and check.
func TestRegistrySourceOneRule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "icpgate.yaml")
	both := minimal + "  postgres: {dsn: \"postgres://u@127.0.0.1/icp\"}\n"
	if err := os.WriteFile(path, []byte(both), 0o644); err != nil {
		t.Fatal(err)
	}
	_, loadErr := LoadConfig(path)
	t.Setenv("ICPGATE_DSN", "")
	empty, config := "", path
	_, dbErr := dbFlags{dsn: &empty, config: &config}.resolveDSN()
	if loadErr == nil || dbErr == nil {
		t.Fatalf("LoadConfig: %v; resolveDSN: %v; want both to refuse", loadErr, dbErr)
	}
	if loadErr.Error() != dbErr.Error() {
		t.Fatalf("serve says %q\ndb says %q\nwant the same words", loadErr, dbErr)
	}
}
