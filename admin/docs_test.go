package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/registry"
)

// TestDocs: the release's documentation is served at /docs/ as HTML with
// GitHub-style heading anchors (what alert runbook links point at), by
// page name with or without .md, escaped, GET only, under the admin Host
// rules.
func TestDocs(t *testing.T) {
	fsys := fstest.MapFS{
		"operations.md": {Data: []byte("# Operating icpgate\n\n### IcpgateDown\n\nsee [security](security.md) <script>alert(1)</script>\n")},
		"security.md":   {Data: []byte("# Security\n")},
	}
	s := admin.New(admin.Config{Docs: fsys}, registry.New(registry.Options{}), nil, nil, nil)
	get := func(method, host, path string) (int, string) {
		r := httptest.NewRequest(method, path, nil)
		r.Host = host
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		b, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(b)
	}
	for _, p := range []string{"/docs/operations.md", "/docs/operations"} {
		code, body := get("GET", "127.0.0.1:9090", p)
		if code != 200 || !strings.Contains(body, `<h3 id="icpgatedown">IcpgateDown</h3>`) || !strings.Contains(body, `href="security.md"`) {
			t.Errorf("GET %s: %d\n%s", p, code, body)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("GET %s passed raw HTML through:\n%s", p, body)
		}
	}
	if code, body := get("GET", "127.0.0.1:9090", "/docs/"); code != 200 || !strings.Contains(body, `href="operations.md"`) {
		t.Errorf("index: %d\n%s", code, body)
	}
	for _, p := range []string{"/docs/missing.md", "/docs/sub/x.md"} {
		if code, _ := get("GET", "127.0.0.1:9090", p); code != http.StatusNotFound {
			t.Errorf("GET %s: got %d, want 404", p, code)
		}
	}
	// A path that leaves /docs/ is cleaned by the mux into a redirect out
	// of it, never served from the page directory.
	if code, body := get("GET", "127.0.0.1:9090", "/docs/../go.mod"); code == 200 {
		t.Errorf("GET /docs/../go.mod: 200\n%s", body)
	}
	if code, _ := get("POST", "127.0.0.1:9090", "/docs/operations.md"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: got %d, want 405", code)
	}
	if code, _ := get("GET", "evil.example", "/docs/operations.md"); code != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: got %d, want 421", code)
	}
	// Without Config.Docs there is no /docs/.
	none := admin.New(admin.Config{}, registry.New(registry.Options{}), nil, nil, nil)
	r := httptest.NewRequest("GET", "/docs/operations.md", nil)
	w := httptest.NewRecorder()
	none.Handler().ServeHTTP(w, r)
	if w.Code == 200 {
		t.Errorf("no Docs: got 200")
	}
}
