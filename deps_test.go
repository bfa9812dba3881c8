// Package icpgate_test holds repository-wide tests: the import-direction
// rules of docs/layout.md.
package icpgate_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/icpgate/icpgate"

// rule forbids package pkg (transitively) depending on what forbid
// matches.
type rule struct {
	pkg    string
	why    string
	forbid func(dep string) bool
}

// ours matches any package of this module.
func ours(dep string) bool { return dep == module || strings.HasPrefix(dep, module+"/") }

// pkgs matches the named packages of this module and their sub-packages.
func pkgs(names ...string) func(string) bool {
	return func(dep string) bool {
		for _, n := range names {
			p := module + "/" + n
			if dep == p || strings.HasPrefix(dep, p+"/") {
				return true
			}
		}
		return false
	}
}

// std matches standard-library packages (first path element without a
// dot; the standard library's vendored x/ packages start with "vendor/").
func std(dep string) bool {
	first, _, _ := strings.Cut(dep, "/")
	return !strings.Contains(first, ".")
}

var rules = []rule{
	{pkg: "sni", why: "sni is a leaf: nothing of ours", forbid: ours},
	{pkg: "sni", why: "sni uses only the standard library and golang.org/x/crypto", forbid: func(d string) bool {
		return !std(d) && !strings.HasPrefix(d, "golang.org/x/crypto/") && d != "golang.org/x/crypto" &&
			// x/crypto's own dependency; it comes only through x/crypto.
			!strings.HasPrefix(d, "golang.org/x/sys/")
	}},
	{pkg: "metrics", why: "metrics is a leaf: nothing of ours", forbid: ours},
	{pkg: "internal/blockid", why: "blockid is the request ID format both planes share: a leaf, nothing of ours", forbid: ours},
	{pkg: "internal/acme", why: "acme is the certmagic set-up the block page (proxy) and the admin listener (cmd) share: a leaf, nothing of ours", forbid: ours},
	{pkg: "proxy", why: "proxy declares Decider and never sees the registry", forbid: pkgs("registry")},
	{pkg: "proxy", why: "proxy is the data plane; the control plane sits beside it", forbid: pkgs("admin", "cmd")},
	{pkg: "admin", why: "admin talks to the registry, never to the data plane", forbid: pkgs("proxy", "cmd")},
	{pkg: "registry", why: "registry is below proxy and admin", forbid: pkgs("proxy", "admin", "cmd", "sni")},
	{pkg: "compliance", why: "compliance is a leaf beside proxy and admin (never proxy, admin or cmd): of ours, only the registry", forbid: func(d string) bool {
		return ours(d) && !pkgs("registry")(d)
	}},
	{pkg: "registry", why: "registry exposes counters; prometheus lives in metrics, admin and proxy", forbid: func(d string) bool {
		return strings.HasPrefix(d, "github.com/prometheus/")
	}},
}

// violations applies rules to deps (package path -> transitive
// dependencies) and returns one line per broken rule and dependency.
// A rule whose package is missing from deps is reported too, so a renamed
// package cannot make the test pass vacuously.
func violations(rules []rule, deps map[string][]string) []string {
	var out []string
	for _, r := range rules {
		p := module + "/" + r.pkg
		ds, ok := deps[p]
		if !ok {
			out = append(out, r.pkg+": package not found")
			continue
		}
		for _, d := range ds {
			if d != p && r.forbid(d) {
				out = append(out, r.pkg+" -> "+d+": "+r.why)
			}
		}
	}
	return out
}

func TestImportDirection(t *testing.T) {
	// go test puts the bin directory of its GOROOT first in PATH, so this
	// is the go that built the test.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"list", "-json=ImportPath,Deps"}
	seen := map[string]bool{}
	for _, r := range rules {
		if !seen[r.pkg] {
			seen[r.pkg] = true
			args = append(args, "./"+r.pkg)
		}
	}
	cmd := exec.Command(goTool, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	deps := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		deps[p.ImportPath] = p.Deps
	}
	for _, v := range violations(rules, deps) {
		t.Error(v)
	}
	statSources(t)
}

// statSources stats every Go file of the module. go test caches a passing
// result keyed on the files a test touched; the imports come from a go list
// child process, which the cache does not see, so without this an import
// added later could be hidden behind a cached "ok".
func statSources(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestImportRulesCatch proves the rules can fail: synthetic dependency
// lists, each breaking (or keeping) one rule.
func TestImportRulesCatch(t *testing.T) {
	all := func(over map[string][]string) map[string][]string {
		m := map[string][]string{}
		for _, r := range rules {
			m[module+"/"+r.pkg] = nil
		}
		for k, v := range over {
			m[module+"/"+k] = v
		}
		return m
	}
	tests := []struct {
		name string
		deps map[string][]string
		want []string // substrings, one per expected violation, in order
	}{
		{"clean", all(map[string][]string{
			"sni":   {"bytes", "golang.org/x/crypto/cryptobyte", "vendor/golang.org/x/net/dns/dnsmessage"},
			"proxy": {module + "/sni", module + "/metrics", "github.com/prometheus/client_golang/prometheus"},
			"admin": {module + "/registry", module + "/metrics"},
		}), nil},
		{"proxy imports registry", all(map[string][]string{"proxy": {module + "/registry"}}),
			[]string{"proxy -> " + module + "/registry"}},
		{"proxy imports admin", all(map[string][]string{"proxy": {module + "/admin"}}),
			[]string{"proxy -> " + module + "/admin"}},
		{"admin imports proxy", all(map[string][]string{"admin": {module + "/proxy"}}),
			[]string{"admin -> " + module + "/proxy"}},
		{"sni imports ours", all(map[string][]string{"sni": {module + "/metrics"}}),
			[]string{"sni -> " + module + "/metrics"}},
		{"sni imports a third party", all(map[string][]string{"sni": {"github.com/foo/bar"}}),
			[]string{"sni -> github.com/foo/bar"}},
		{"metrics imports ours", all(map[string][]string{"metrics": {module + "/registry"}}),
			[]string{"metrics -> " + module + "/registry"}},
		{"registry imports prometheus", all(map[string][]string{"registry": {"github.com/prometheus/client_golang/prometheus"}}),
			[]string{"registry -> github.com/prometheus/client_golang/prometheus"}},
		{"compliance imports proxy", all(map[string][]string{"compliance": {module + "/registry", module + "/proxy"}}),
			[]string{"compliance -> " + module + "/proxy"}},
		{"compliance imports cmd", all(map[string][]string{"compliance": {module + "/cmd/icpgate"}}),
			[]string{"compliance -> " + module + "/cmd/icpgate"}},
		{"package missing", map[string][]string{}, []string{"sni: package not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := violations(rules, tt.deps)
			if len(tt.want) == 0 && len(got) != 0 {
				t.Fatalf("got %q, want no violations", got)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
					t.Errorf("got %q, want a violation containing %q", got, w)
				}
			}
		})
	}
}
