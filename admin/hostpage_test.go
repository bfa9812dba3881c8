package admin_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestUnknownHostPage: a browser opening the console under a name not in
// admin.hosts reads a page saying which setting to change; API clients
// keep the JSON error.
func TestUnknownHostPage(t *testing.T) {
	e := newEnv(t, nil)
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, path := range []string{"/", "/console/", "/console/app.js", "/v1/nothing"} {
		r := e.do(req{method: "GET", path: path, host: "console.example.org:9090", header: map[string]string{"Accept": browser}})
		if r.status != http.StatusMisdirectedRequest {
			t.Errorf("%s: status %d, want 421", path, r.status)
		}
		if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q, want HTML", path, ct)
		}
		for _, want := range []string{"console.example.org:9090", "admin.hosts", "hosts: [console.example.org]", "无法通过这个地址打开控制台", "This address cannot open the console"} {
			if !strings.Contains(r.body, want) {
				t.Errorf("%s: page lacks %q", path, want)
			}
		}
		if r.header.Get("X-Frame-Options") != "DENY" || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s: headers %v", path, r.header)
		}
	}
	// The Host is the client's text: escaped, never markup.
	r := e.do(req{method: "GET", path: "/console/", host: "<b>x</b>.example", header: map[string]string{"Accept": "text/html"}})
	if strings.Contains(r.body, "<b>x</b>") {
		t.Errorf("the Host is not escaped:\n%s", r.body)
	}
	// API clients and the console's own fetches keep JSON.
	for _, accept := range []string{"", "application/json", "*/*"} {
		r := e.do(req{method: "GET", path: "/console/", host: "console.example.org", header: map[string]string{"Accept": accept}})
		wantError(t, r, http.StatusMisdirectedRequest, "misdirected", "")
	}
	r = e.do(req{method: "GET", path: "/v1/explain?host=a.cn", host: "console.example.org", token: e.secret["viewer"],
		header: map[string]string{"Accept": "application/json"}})
	wantError(t, r, http.StatusMisdirectedRequest, "misdirected", "")
}
