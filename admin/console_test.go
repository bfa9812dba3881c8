package admin

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/icpgate/icpgate/registry"
)

// consoleGet fetches p from the console handler over a real connection.
func consoleGet(t *testing.T, srv *httptest.Server, p string) (*http.Response, []byte) {
	t.Helper()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(srv.URL + p)
	if err != nil {
		t.Fatalf("GET %s: %v", p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", p, err)
	}
	return resp, b
}

func TestConsoleHeaders(t *testing.T) {
	srv := httptest.NewServer(consoleHandler())
	defer srv.Close()
	cases := []struct {
		path, status, ctype string
	}{
		{"/console/", "200", "text/html"},
		{"/console/app.js", "200", "text/javascript"},
		{"/console/app.css", "200", "text/css"},
		{"/console/favicon.svg", "200", "image/svg+xml"},
		{"/console/i18n/zh-CN.json", "200", "application/json"},
		{"/", "302", ""},
		{"/console/missing.js", "404", ""},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp, _ := consoleGet(t, srv, c.path)
			if got := resp.Status[:3]; got != c.status {
				t.Errorf("status: got %s, want %s", got, c.status)
			}
			if c.ctype != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) {
				t.Errorf("Content-Type: got %q, want %s...", resp.Header.Get("Content-Type"), c.ctype)
			}
			h := resp.Header
			for name, want := range map[string]string{
				"X-Frame-Options":        "DENY",
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
			} {
				if got := h.Get(name); got != want {
					t.Errorf("%s: got %q, want %q", name, got, want)
				}
			}
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-") {
				t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
			}
			if c.status == "302" {
				if got := h.Get("Location"); got != "/console/" {
					t.Errorf("Location: got %q, want /console/", got)
				}
			}
		})
	}
}

// consoleIndex parses the embedded index.html.
func consoleIndex(t *testing.T) *html.Node {
	t.Helper()
	b, err := fs.ReadFile(consoleFS, "console/index.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parsing index.html: %v", err)
	}
	return doc
}

// walk calls f for every element under n.
func walk(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := range n.ChildNodes() {
		walk(c, f)
	}
}

func attr(n *html.Node, name string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val, true
		}
	}
	return "", false
}

// moduleImport matches the static imports of the console's ES modules.
var moduleImport = regexp.MustCompile(`(?m)^\s*import\s+(?:[^"']*?\s+from\s+)?["']([^"']+)["']`)

// TestConsoleAssetsExist checks that everything index.html and the
// modules refer to is served, and that every embedded file is used.
func TestConsoleAssetsExist(t *testing.T) {
	srv := httptest.NewServer(consoleHandler())
	defer srv.Close()
	base, _ := url.Parse("/console/")

	var refs []string
	walk(consoleIndex(t), func(n *html.Node) {
		for _, a := range []string{"src", "href"} {
			v, ok := attr(n, a)
			if !ok || strings.HasPrefix(v, "#") {
				continue
			}
			if strings.HasPrefix(v, "/v1/") {
				continue // an API link (the CSV download), not an asset
			}
			u, err := url.Parse(v)
			if err != nil || u.Scheme != "" || u.Host != "" {
				t.Errorf("<%s %s=%q>: only same-origin relative references are allowed", n.Data, a, v)
				continue
			}
			refs = append(refs, base.ResolveReference(u).Path)
		}
	})
	// Follow the module graph from the scripts index.html loads.
	seen := map[string]bool{}
	queue := slices.Clone(refs)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		resp, body := consoleGet(t, srv, p)
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("%s: got status %d with %d bytes, want 200 with content", p, resp.StatusCode, len(body))
			continue
		}
		if strings.HasSuffix(p, ".js") {
			for _, m := range moduleImport.FindAllStringSubmatch(string(body), -1) {
				u, err := url.Parse(m[1])
				if err != nil || !strings.HasPrefix(m[1], "./") {
					t.Errorf("%s imports %q: want a relative ./ path", p, m[1])
					continue
				}
				queue = append(queue, (&url.URL{Path: p}).ResolveReference(u).Path)
			}
		}
	}
	for _, l := range consoleLangs {
		p := "/console/i18n/" + l + ".json"
		if resp, _ := consoleGet(t, srv, p); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", p, resp.StatusCode)
		}
		seen[p] = true
	}
	// Every embedded file is used: no stale module lingers in the binary.
	fs.WalkDir(consoleFS, "console", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if p == "console/index.html" {
			return nil
		}
		if !seen["/"+p] {
			t.Errorf("%s is embedded but neither index.html nor a module refers to it", p)
		}
		return nil
	})
}

// TestConsoleNoInline checks index.html for what the CSP would block (and
// the modules for what would let data become markup).
func TestConsoleNoInline(t *testing.T) {
	walk(consoleIndex(t), func(n *html.Node) {
		switch n.Data {
		case "script":
			if _, ok := attr(n, "src"); !ok {
				t.Errorf("inline <script> (CSP default-src 'self' blocks it)")
			}
			if n.FirstChild != nil && strings.TrimSpace(n.FirstChild.Data) != "" {
				t.Errorf("<script> with a body: %q", n.FirstChild.Data)
			}
		case "style":
			t.Errorf("<style> element (CSP blocks inline styles): use app.css")
		}
		for _, a := range n.Attr {
			k := strings.ToLower(a.Key)
			switch {
			case k == "style":
				t.Errorf("<%s style=%q>: inline style (CSP blocks it)", n.Data, a.Val)
			case strings.HasPrefix(k, "on"):
				t.Errorf("<%s %s=%q>: inline event handler (CSP blocks it)", n.Data, a.Key, a.Val)
			case (k == "href" || k == "src" || k == "action") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:"):
				t.Errorf("<%s %s=%q>: javascript: URL", n.Data, a.Key, a.Val)
			case (k == "href" || k == "src") && strings.HasPrefix(strings.ToLower(a.Val), "data:"):
				t.Errorf("<%s %s=%q>: data: URL (CSP blocks it)", n.Data, a.Key, a.Val)
			}
		}
	})
	// The modules build the page with textContent and attributes only.
	forbidden := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(\s*["'](?:style|on)|createContextualFragment|DOMParser`)
	for _, p := range consoleFiles(t, ".js") {
		b, _ := fs.ReadFile(consoleFS, p)
		for i, line := range strings.Split(string(b), "\n") {
			if m := forbidden.FindString(line); m != "" {
				t.Errorf("%s:%d: %s turns strings into markup or code; use el()/textContent", p, i+1, m)
			}
		}
	}
}

// consoleLangs are the console's languages; the first is the default.
var consoleLangs = []string{"zh-CN", "en"}

func consoleFiles(t *testing.T, ext string) []string {
	t.Helper()
	var out []string
	fs.WalkDir(consoleFS, "console", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ext) {
			out = append(out, p)
		}
		return err
	})
	if len(out) == 0 {
		t.Fatalf("no %s files embedded", ext)
	}
	return out
}

func loadDict(t *testing.T, lang string) map[string]string {
	t.Helper()
	b, err := fs.ReadFile(consoleFS, "console/i18n/"+lang+".json")
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]string
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("i18n/%s.json: %v", lang, err)
	}
	return d
}

var placeholder = regexp.MustCompile(`\{\w+\}`)

// TestConsoleTranslations checks that both languages have the same keys
// and placeholders, that every key the page and modules use exists, that
// every reason code, state and role is explained, and that no key is
// dead.
func TestConsoleTranslations(t *testing.T) {
	zh, en := loadDict(t, "zh-CN"), loadDict(t, "en")
	for k, v := range zh {
		w, ok := en[k]
		if !ok {
			t.Errorf("en lacks %q", k)
			continue
		}
		if strings.TrimSpace(v) == "" || strings.TrimSpace(w) == "" {
			t.Errorf("%q: empty text", k)
		}
		pz, pe := placeholder.FindAllString(v, -1), placeholder.FindAllString(w, -1)
		sort.Strings(pz)
		sort.Strings(pe)
		if !slices.Equal(pz, pe) {
			t.Errorf("%q: placeholders differ: zh-CN %v, en %v", k, pz, pe)
		}
	}
	for k := range en {
		if _, ok := zh[k]; !ok {
			t.Errorf("zh-CN lacks %q", k)
		}
	}

	// Keys named in index.html, whose default (Chinese) text must match
	// the table so the page reads the same before and after the script.
	used := map[string]bool{}
	walk(consoleIndex(t), func(n *html.Node) {
		for _, a := range n.Attr {
			if !strings.HasPrefix(a.Key, "data-i18n") {
				continue
			}
			used[a.Val] = true
			want, ok := zh[a.Val]
			if !ok {
				t.Errorf("<%s %s=%q>: no such key", n.Data, a.Key, a.Val)
				continue
			}
			var got string
			if a.Key == "data-i18n" {
				got = strings.TrimSpace(textOf(n))
			} else {
				got, _ = attr(n, strings.TrimPrefix(a.Key, "data-i18n-"))
			}
			if got != want && a.Val != "lang.switch" && a.Val != "lang.switch_label" {
				t.Errorf("<%s %s=%q>: the page says %q, zh-CN.json %q", n.Data, a.Key, a.Val, got, want)
			}
		}
	})

	// Keys named in the modules: string literals in a key namespace.
	// Literals ending in "." or "_" (and template literals) are prefixes
	// of keys built at run time.
	namespaces := map[string]bool{}
	for k := range zh {
		namespaces[strings.SplitN(k, ".", 2)[0]] = true
	}
	literal := regexp.MustCompile(`"([a-z_]+(?:\.[a-z0-9_]+)*[._]?)"`)
	template := regexp.MustCompile("`([a-z_]+\\.[a-z0-9_.]*)\\$\\{")
	var prefixes []string
	for _, p := range consoleFiles(t, ".js") {
		b, _ := fs.ReadFile(consoleFS, p)
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			s := m[1]
			if !strings.Contains(s, ".") || !namespaces[strings.SplitN(s, ".", 2)[0]] {
				continue
			}
			if strings.HasSuffix(s, ".") || strings.HasSuffix(s, "_") {
				prefixes = append(prefixes, s)
				continue
			}
			used[s] = true
			if _, ok := zh[s]; !ok {
				t.Errorf("%s uses key %q, which zh-CN.json lacks", p, s)
			}
		}
		for _, m := range template.FindAllStringSubmatch(string(b), -1) {
			prefixes = append(prefixes, m[1])
		}
	}

	// Codes the server sends, explained in plain words.
	need := func(k string) {
		used[k] = true
		if _, ok := zh[k]; !ok {
			t.Errorf("no text for %q", k)
		}
	}
	for _, r := range append(registry.Reasons(), "unknown") {
		for _, part := range []string{"title", "meaning", "tell", "whitelist"} {
			need("reason." + string(r) + "." + part)
		}
	}
	for _, s := range registry.States() {
		need("state." + s.String())
	}
	for _, r := range []Role{RoleViewer, RoleSupport, RoleAdmin} {
		need("role." + r.String())
	}
	for _, a := range []string{"override.create", "override.update", "override.delete", "override.bulk", "login", "logout", "token.create", "token.revoke"} {
		need("audit.action." + a)
	}
	for _, o := range []string{"ok", "denied", "rejected"} {
		need("audit.outcome." + o)
	}

	for k := range zh {
		if used[k] || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			continue
		}
		t.Errorf("key %q is used nowhere", k)
	}
}

// textOf returns the text under n.
func textOf(n *html.Node) string {
	var b strings.Builder
	var f func(*html.Node)
	f = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := range n.ChildNodes() {
			f(c)
		}
	}
	f(n)
	return b.String()
}

// TestConsoleProblemTexts checks that every problem code the API sends
// (apiError.because in this package's sources) has a text in the
// console's tables, so the Chinese console never falls back to the
// server's English for a known problem.
func TestConsoleProblemTexts(t *testing.T) {
	zh := loadDict(t, "zh-CN")
	code := regexp.MustCompile(`because\("([a-z_]+)"`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range code.FindAllStringSubmatch(string(b), -1) {
			seen++
			if _, ok := zh["problem."+m[1]]; !ok {
				t.Errorf("%s: problem %q has no text (problem.%s in i18n/*.json)", f, m[1], m[1])
			}
		}
	}
	if seen < 20 {
		t.Errorf("found %d problem codes in the sources; the pattern no longer matches how they are set", seen)
	}
}
