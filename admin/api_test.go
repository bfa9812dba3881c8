package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/admin/unfiled"
	"github.com/icpgate/icpgate/registry"
)

// t0 is the injected "now" every API test starts at.
var t0 = time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)

// clock is the shared injected clock of the admin server and the
// registry.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *clock) Now() time.Time       { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)      { c.ns.Store(t.UnixNano()) }
func (c *clock) Add(d time.Duration)  { c.ns.Add(int64(d)) }
func (c *clock) Since() time.Duration { return c.Now().Sub(t0) }

// env is an admin server over loopback with a real bbolt backend, a real
// token file and a registry that Apply feeds the stored overrides, as
// cmd/icpgate wires file mode.
type env struct {
	t      *testing.T
	clock  *clock
	reg    *registry.Registry
	store  *adminstore.Bolt
	tokens *adminstore.TokenFile
	srv    *admin.Server
	base   string
	addr   string
	// secret maps a token name to its secret: viewer, support, support2,
	// admin (named after their roles).
	secret  map[string]string
	applied atomic.Int64
}

func newEnv(t *testing.T, tweak func(*admin.Config)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := adminstore.OpenBolt(filepath.Join(dir, "admin.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tokens, err := adminstore.OpenTokenFile(filepath.Join(dir, "tokens.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: newClock(t0), store: store, tokens: tokens, secret: map[string]string{}}
	for _, tk := range []struct {
		name string
		role admin.Role
	}{{"viewer", admin.RoleViewer}, {"support", admin.RoleSupport}, {"support2", admin.RoleSupport}, {"admin", admin.RoleAdmin}} {
		secret, tok, err := admin.NewToken(tk.name, tk.role, t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := tokens.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		e.secret[tk.name] = secret
	}
	e.reg = registry.New(registry.Options{Clock: e.clock.Now})
	snap, err := registry.LoadSnapshot("testdata/api_registry.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Swap(snap)
	cfg := admin.Config{
		Address: "127.0.0.1:0",
		Backend: store,
		Tokens:  tokens,
		// What cmd/icpgate does in file mode: the stored overrides
		// replace the snapshot's.
		Apply: func(ctx context.Context) error {
			e.applied.Add(1)
			return e.reg.Update(func(old *registry.Snapshot) (*registry.Snapshot, error) {
				ovs, err := store.Overrides(ctx)
				if err != nil {
					return nil, err
				}
				return old.WithOverrides(ovs)
			})
		},
		Hosts: []string{"Admin.Example.NET."},
		Now:   e.clock.Now,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e.srv = admin.New(cfg, e.reg, prometheus.NewRegistry(), nil, nil)
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	e.addr = e.srv.Addr().String()
	e.base = "http://" + e.addr
	return e
}

// req is one API request.
type req struct {
	method, path string
	token        string // secret for Authorization: Bearer
	body         string
	host         string // Host header, when not the address
	from         string // local IP to dial from (127.0.0.0/8)
	cookie       *http.Cookie
	header       map[string]string
}

// resp is an answer.
type resp struct {
	status int
	header http.Header
	body   string
}

// obj decodes the body as a JSON object.
func (r resp) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
	return m
}

func (e *env) do(q req) resp {
	e.t.Helper()
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	r, err := http.NewRequest(q.method, e.base+q.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if q.token != "" {
		r.Header.Set("Authorization", "Bearer "+q.token)
	}
	if q.host != "" {
		r.Host = q.host
	}
	if q.cookie != nil {
		r.AddCookie(q.cookie)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if q.from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(q.from)}
	}
	c := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := c.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: string(b)}
}

// wantError checks an error answer's status, code and field.
func wantError(t *testing.T, r resp, status int, code, field string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status: got %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	m := r.obj(t)
	if m["error"] != code {
		t.Errorf("error: got %v, want %q; body %s", m["error"], code, r.body)
	}
	if got, _ := m["field"].(string); got != field {
		t.Errorf("field: got %q, want %q; body %s", got, field, r.body)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("message: got none; body %s", r.body)
	}
	return m
}

// create posts an override body with a token and returns the answer.
func (e *env) create(token, body string) resp {
	e.t.Helper()
	return e.do(req{method: "POST", path: "/v1/overrides", token: token, body: body})
}

// mustCreate creates an override and returns its JSON and ETag.
func (e *env) mustCreate(token, body string) (map[string]any, string) {
	e.t.Helper()
	r := e.create(token, body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create %s: got %d %s, want 201", body, r.status, r.body)
	}
	return r.obj(e.t), r.header.Get("ETag")
}

// audit returns every audit entry, newest first, and the raw JSON.
func (e *env) audit(query string) ([]admin.AuditEntry, string) {
	e.t.Helper()
	r := e.do(req{method: "GET", path: "/v1/audit?limit=1000" + query, token: e.secret["viewer"]})
	if r.status != http.StatusOK {
		e.t.Fatalf("audit: got %d %s", r.status, r.body)
	}
	var out struct {
		Entries []admin.AuditEntry `json:"entries"`
		Next    string             `json:"next"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		e.t.Fatal(err)
	}
	return out.Entries, r.body
}

// allowBody is a valid allow create body for host.
func allowBody(host string) string {
	return fmt.Sprintf(`{"host":%q,"action":"allow","reason":"接入备案办理中","ticket":"SR-2026-1182"}`, host)
}

func TestOpenEndpointsNeedNoToken(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := e.do(req{method: "GET", path: p}); r.status != http.StatusOK {
			t.Errorf("GET %s: got %d, want 200", p, r.status)
		}
		r := e.do(req{method: "POST", path: p})
		wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed", "")
		if got := r.header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("POST %s Allow: got %q, want %q", p, got, "GET, HEAD")
		}
		// The open endpoints are no DNS-rebinding target: they answer
		// whatever the Host (Prometheus scrapes by name).
		if r := e.do(req{method: "GET", path: p, host: "evil.example"}); r.status != http.StatusOK {
			t.Errorf("GET %s with a foreign Host: got %d, want 200", p, r.status)
		}
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	revokedSecret, revoked, err := admin.NewToken("gone", admin.RoleAdmin, t0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.tokens.Create(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	if r := e.do(req{method: "GET", path: "/v1/explain?host=filed.cn", token: revokedSecret}); r.status != http.StatusOK {
		t.Fatalf("before revoking: got %d, want 200", r.status)
	}
	if err := e.tokens.Revoke(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header string
		status int
	}{
		{"no token", "", 401},
		{"unknown token", "Bearer icpg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401},
		{"not bearer", "Basic dXNlcjpwYXNz", 401},
		{"bearer without token", "Bearer ", 401},
		{"revoked token", "Bearer " + revokedSecret, 401},
		{"viewer", "Bearer " + e.secret["viewer"], 200},
		{"scheme is case-insensitive", "bearer " + e.secret["viewer"], 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Add(time.Minute) // keep the failed-login bucket full
			r := e.do(req{method: "GET", path: "/v1/explain?host=filed.cn", header: map[string]string{"Authorization": tt.header}})
			if tt.status == 200 {
				if r.status != 200 {
					t.Fatalf("got %d %s, want 200", r.status, r.body)
				}
				return
			}
			wantError(t, r, tt.status, "unauthenticated", "")
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate: got %q, want Bearer", got)
			}
		})
	}
}

func TestNoTokenStoreMeansNoOneGetsIn(t *testing.T) {
	e := newEnv(t, func(c *admin.Config) { c.Tokens = nil })
	for _, p := range []string{"/v1/explain?host=filed.cn", "/v1/overrides", "/v1/audit", "/v1/session"} {
		wantError(t, e.do(req{method: "GET", path: p, token: e.secret["admin"]}), 401, "unauthenticated", "")
	}
	wantError(t, e.create(e.secret["admin"], allowBody("unfiled.cn")), 401, "unauthenticated", "")
	wantError(t, e.do(req{method: "POST", path: "/v1/session", body: `{"token":"` + e.secret["admin"] + `"}`}), 401, "unauthenticated", "")
}

func TestNoBackend(t *testing.T) {
	e := newEnv(t, func(c *admin.Config) { c.Backend = nil })
	tok := e.secret["admin"]
	wantError(t, e.do(req{method: "GET", path: "/v1/overrides", token: tok}), 503, "unavailable", "")
	wantError(t, e.do(req{method: "GET", path: "/v1/overrides/1", token: tok}), 503, "unavailable", "")
	wantError(t, e.do(req{method: "GET", path: "/v1/audit", token: tok}), 503, "unavailable", "")
	wantError(t, e.create(tok, allowBody("unfiled.cn")), 503, "unavailable", "")
	if r := e.do(req{method: "GET", path: "/v1/explain?host=filed.cn", token: tok}); r.status != 200 {
		t.Errorf("explain without a backend: got %d, want 200", r.status)
	}
}

func TestRoles(t *testing.T) {
	e := newEnv(t, nil)
	deny := `{"host":"filed.cn","action":"deny","reason":"phishing","ttl":"24h"}`
	// Support owns allows; deny overrides and bulk need admin.
	m := wantError(t, e.create(e.secret["viewer"], allowBody("unfiled.cn")), 403, "forbidden", "")
	if m["need_role"] != "support" {
		t.Errorf("viewer creating an allow: need_role got %v, want support", m["need_role"])
	}
	m = wantError(t, e.create(e.secret["support"], deny), 403, "forbidden", "")
	if m["need_role"] != "admin" {
		t.Errorf("support creating a deny: need_role got %v, want admin", m["need_role"])
	}
	m = wantError(t, e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["support"], body: `{"overrides":[]}`}), 403, "forbidden", "")
	if m["need_role"] != "admin" {
		t.Errorf("support bulk: need_role got %v, want admin", m["need_role"])
	}
	d, etag := e.mustCreate(e.secret["admin"], deny)
	id := d["id"].(string)
	for _, method := range []string{"PATCH", "DELETE"} {
		r := e.do(req{method: method, path: "/v1/overrides/" + id, token: e.secret["support"], body: `{"reason":"x"}`,
			header: map[string]string{"If-Match": etag}})
		if m := wantError(t, r, 403, "forbidden", ""); m["need_role"] != "admin" {
			t.Errorf("support %s of a deny: need_role got %v, want admin", method, m["need_role"])
		}
	}
	// A viewer reads everything.
	for _, p := range []string{"/v1/overrides", "/v1/overrides/" + id, "/v1/audit", "/v1/explain?host=x.cn", "/v1/session"} {
		if r := e.do(req{method: "GET", path: p, token: e.secret["viewer"]}); r.status != 200 {
			t.Errorf("viewer GET %s: got %d %s, want 200", p, r.status, r.body)
		}
	}
	a, _ := e.mustCreate(e.secret["support"], allowBody("unfiled.cn"))
	if a["created_by"] != "support" {
		t.Errorf("created_by: got %v, want support", a["created_by"])
	}
}

func TestHostCheck(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.secret["admin"]
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"localhost", true},
		{"LOCALHOST:9090", true},
		{"localhost.", true},
		{"admin.example.net:9090", true}, // Config.Hosts, case and root dot ignored
		{"127.0.0.1:9090", true},
		{"[::1]:9090", true},
		{"10.1.2.3", true},
		{"evil.example", false},
		{"admin.example.net.evil.example", false},
		{"sub.localhost", false},
	} {
		r := e.do(req{method: "GET", path: "/v1/explain?host=filed.cn", token: tok, host: tt.host})
		if tt.ok {
			if r.status != 200 {
				t.Errorf("Host %q: got %d %s, want 200", tt.host, r.status, r.body)
			}
			continue
		}
		wantError(t, r, 421, "misdirected", "")
		if r := e.do(req{method: "GET", path: "/console/", host: tt.host}); r.status != 421 {
			t.Errorf("console with Host %q: got %d, want 421", tt.host, r.status)
		}
	}
	// A refused mutation attempt is audited.
	wantError(t, e.do(req{method: "POST", path: "/v1/overrides", token: tok, host: "evil.example", body: allowBody("unfiled.cn")}), 421, "misdirected", "")
	entries, _ := e.audit("&action=override.create")
	if len(entries) != 1 || entries[0].Outcome != "denied" || !strings.Contains(entries[0].Detail, "evil.example") {
		t.Fatalf("audit after a rebinding attempt: got %+v, want one denied override.create naming the Host", entries)
	}
}

func TestConsoleMounted(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(req{method: "GET", path: "/"})
	if r.status != http.StatusFound || r.header.Get("Location") != "/console/" {
		t.Errorf("GET /: got %d Location %q, want 302 to /console/", r.status, r.header.Get("Location"))
	}
	r = e.do(req{method: "GET", path: "/console/"})
	if r.status != 200 || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") || r.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("GET /console/: got %d CSP %q XFO %q", r.status, r.header.Get("Content-Security-Policy"), r.header.Get("X-Frame-Options"))
	}
	wantError(t, e.do(req{method: "POST", path: "/console/"}), 405, "method_not_allowed", "")
	if r := e.do(req{method: "GET", path: "/nope"}); r.status != 404 {
		t.Errorf("GET /nope: got %d, want 404", r.status)
	}
	wantError(t, e.do(req{method: "GET", path: "/v1/nope", token: e.secret["viewer"]}), 404, "not_found", "")
	r = e.do(req{method: "PUT", path: "/v1/overrides", token: e.secret["admin"]})
	wantError(t, r, 405, "method_not_allowed", "")
	if got := r.header.Get("Allow"); got != "GET, HEAD, POST" {
		t.Errorf("Allow: got %q, want %q", got, "GET, HEAD, POST")
	}
}

// login signs in with a secret and returns the session cookie and CSRF
// token.
func (e *env) login(secret string) (*http.Cookie, string) {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/v1/session", body: `{"token":"` + secret + `"}`})
	if r.status != 200 {
		e.t.Fatalf("login: got %d %s", r.status, r.body)
	}
	res := http.Response{Header: r.header}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "icpgate_session" {
			ck = c
		}
	}
	if ck == nil {
		e.t.Fatalf("login: no icpgate_session cookie in %v", r.header)
	}
	m := r.obj(e.t)
	return &http.Cookie{Name: ck.Name, Value: ck.Value}, m["csrf"].(string)
}

func TestSessionAndCSRF(t *testing.T) {
	e := newEnv(t, nil)
	// Sign-in sets a cookie scripts cannot read and other sites cannot send.
	r := e.do(req{method: "POST", path: "/v1/session", body: `{"token":"` + e.secret["support"] + `"}`})
	if r.status != 200 {
		t.Fatalf("login: got %d %s", r.status, r.body)
	}
	sc := r.header.Get("Set-Cookie")
	for _, want := range []string{"icpgate_session=", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q: want %q", sc, want)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Errorf("Set-Cookie %q: Secure over plain HTTP", sc)
	}
	m := r.obj(t)
	if m["name"] != "support" || m["role"] != "support" || len(m["csrf"].(string)) < 40 {
		t.Errorf("login body: got %v", m)
	}
	ck, csrf := e.login(e.secret["support"])

	r = e.do(req{method: "GET", path: "/v1/session", cookie: ck})
	if m := r.obj(t); r.status != 200 || m["name"] != "support" || m["csrf"] != csrf {
		t.Errorf("GET /v1/session: got %d %v, want support with the csrf", r.status, m)
	}
	// Reads need no CSRF token.
	if r := e.do(req{method: "GET", path: "/v1/overrides", cookie: ck}); r.status != 200 {
		t.Errorf("cookie GET: got %d, want 200", r.status)
	}
	own := "http://" + e.addr
	for _, tt := range []struct {
		name   string
		header map[string]string
	}{
		{"missing token", nil},
		{"wrong token", map[string]string{"X-CSRF-Token": csrf[:len(csrf)-2] + "xx"}},
		{"foreign origin", map[string]string{"X-CSRF-Token": csrf, "Origin": "http://evil.example"}},
		{"null origin", map[string]string{"X-CSRF-Token": csrf, "Origin": "null"}},
		{"cross-site fetch", map[string]string{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, e.do(req{method: "POST", path: "/v1/overrides", cookie: ck, header: tt.header, body: allowBody("unfiled.cn")}), 403, "csrf", "")
		})
	}
	r = e.do(req{method: "POST", path: "/v1/overrides", cookie: ck, body: allowBody("unfiled.cn"),
		header: map[string]string{"X-CSRF-Token": csrf, "Origin": own, "Sec-Fetch-Site": "same-origin"}})
	if r.status != 201 {
		t.Fatalf("cookie POST with CSRF token and own Origin: got %d %s, want 201", r.status, r.body)
	}
	// A CSRF token from another session does not do.
	ck2, csrf2 := e.login(e.secret["support2"])
	wantError(t, e.do(req{method: "POST", path: "/v1/overrides", cookie: ck, body: allowBody("x.cn"),
		header: map[string]string{"X-CSRF-Token": csrf2}}), 403, "csrf", "")
	// Sign-in from another site's page is refused.
	wantError(t, e.do(req{method: "POST", path: "/v1/session", body: `{"token":"` + e.secret["support"] + `"}`,
		header: map[string]string{"Origin": "http://evil.example"}}), 403, "csrf", "")
	// Sign-out needs the CSRF token too, then the cookie is dead.
	wantError(t, e.do(req{method: "DELETE", path: "/v1/session", cookie: ck}), 403, "csrf", "")
	r = e.do(req{method: "DELETE", path: "/v1/session", cookie: ck, header: map[string]string{"X-CSRF-Token": csrf}})
	if r.status != 204 || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("DELETE /v1/session: got %d Set-Cookie %q, want 204 clearing the cookie", r.status, r.header.Get("Set-Cookie"))
	}
	wantError(t, e.do(req{method: "GET", path: "/v1/session", cookie: ck}), 401, "unauthenticated", "")
	// Revoking the token ends its sessions at once.
	if r := e.do(req{method: "GET", path: "/v1/session", cookie: ck2}); r.status != 200 {
		t.Fatalf("second session: got %d", r.status)
	}
	if err := e.tokens.Revoke(context.Background(), "support2"); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.do(req{method: "GET", path: "/v1/session", cookie: ck2}), 401, "unauthenticated", "")
	// Sessions end after 12 hours.
	ck3, _ := e.login(e.secret["viewer"])
	e.clock.Add(12*time.Hour - time.Nanosecond)
	if r := e.do(req{method: "GET", path: "/v1/session", cookie: ck3}); r.status != 200 {
		t.Fatalf("session just before 12 h: got %d", r.status)
	}
	e.clock.Add(time.Nanosecond)
	wantError(t, e.do(req{method: "GET", path: "/v1/session", cookie: ck3}), 401, "unauthenticated", "")
	// Bad sign-in bodies.
	wantError(t, e.do(req{method: "POST", path: "/v1/session", body: `{"token":"x","user":"y"}`}), 400, "invalid", "user")
	wantError(t, e.do(req{method: "POST", path: "/v1/session", body: `{}`}), 400, "invalid", "token")
	wantError(t, e.do(req{method: "POST", path: "/v1/session", body: `{"token":"` + strings.Repeat("a", 5000) + `"}`}), 413, "too_large", "")
}

func TestFailedLoginRateLimit(t *testing.T) {
	e := newEnv(t, func(c *admin.Config) { c.FailedLoginsPerMinute = 3 })
	bad := "Bearer icpg_" + strings.Repeat("B", 43)
	from := "127.0.0.2"
	probe := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	if c, err := probe.Dial("tcp", e.addr); err != nil {
		t.Skipf("cannot dial from %s: %v", from, err)
	} else {
		c.Close()
	}
	// Three failures: one bad bearer, one failed sign-in, one malformed header.
	wantError(t, e.do(req{method: "GET", path: "/v1/overrides", from: from, header: map[string]string{"Authorization": bad}}), 401, "unauthenticated", "")
	wantError(t, e.do(req{method: "POST", path: "/v1/session", from: from, body: `{"token":"wrong"}`}), 401, "unauthenticated", "")
	wantError(t, e.do(req{method: "GET", path: "/v1/audit", from: from, header: map[string]string{"Authorization": "Token x"}}), 401, "unauthenticated", "")
	// Now every attempt from there is refused, the right token too.
	for _, r := range []resp{
		e.do(req{method: "GET", path: "/v1/overrides", from: from, token: e.secret["admin"]}),
		e.do(req{method: "POST", path: "/v1/session", from: from, body: `{"token":"` + e.secret["admin"] + `"}`}),
		e.do(req{method: "POST", path: "/v1/overrides", from: from, token: e.secret["admin"], body: allowBody("unfiled.cn")}),
	} {
		wantError(t, r, 429, "rate_limited", "")
		if got := r.header.Get("Retry-After"); got != "20" {
			t.Errorf("Retry-After: got %q, want 20 (one of 3 a minute)", got)
		}
	}
	// Another address is not affected.
	if r := e.do(req{method: "GET", path: "/v1/overrides", from: "127.0.0.3", token: e.secret["admin"]}); r.status != 200 {
		t.Errorf("other address: got %d %s, want 200", r.status, r.body)
	}
	// Until the bucket refills.
	e.clock.Add(19 * time.Second)
	wantError(t, e.do(req{method: "GET", path: "/v1/overrides", from: from, token: e.secret["admin"]}), 429, "rate_limited", "")
	e.clock.Add(time.Second)
	if r := e.do(req{method: "GET", path: "/v1/overrides", from: from, token: e.secret["admin"]}); r.status != 200 {
		t.Errorf("after refill: got %d %s, want 200", r.status, r.body)
	}
	// The refused mutation and the sign-ins are audited, without a token.
	entries, raw := e.audit("")
	var denied429, logins int
	for _, en := range entries {
		if en.Outcome == "denied" && strings.Contains(en.Detail, "too many") {
			denied429++
		}
		if en.Action == "login" {
			logins++
		}
	}
	if denied429 != 2 || logins != 2 {
		t.Errorf("audit: got %d rate-limited denials and %d logins, want 2 and 2:\n%s", denied429, logins, raw)
	}
	if strings.Contains(raw, e.secret["admin"]) || strings.Contains(raw, "wrong") || strings.Contains(raw, strings.Repeat("B", 43)) {
		t.Errorf("audit holds a token:\n%s", raw)
	}
}

func TestMutationRateLimit(t *testing.T) {
	e := newEnv(t, func(c *admin.Config) { c.MutationsPerMinute = 3 })
	// Rejected attempts count too: the limit is on attempts.
	for i := range 3 {
		wantError(t, e.create(e.secret["support"], `{}`), 400, "invalid", "action")
		_ = i
	}
	r := e.create(e.secret["support"], allowBody("unfiled.cn"))
	wantError(t, r, 429, "rate_limited", "")
	if got := r.header.Get("Retry-After"); got != "20" {
		t.Errorf("Retry-After: got %q, want 20", got)
	}
	// Reads are not limited; other tokens have their own bucket.
	if r := e.do(req{method: "GET", path: "/v1/overrides", token: e.secret["support"]}); r.status != 200 {
		t.Errorf("read while limited: got %d", r.status)
	}
	e.mustCreate(e.secret["support2"], allowBody("unfiled.cn"))
	e.clock.Add(20 * time.Second)
	e.mustCreate(e.secret["support"], allowBody("unfiled.cn"))
	entries, _ := e.audit("&who=support&action=override.create")
	if len(entries) != 5 || entries[1].Outcome != "denied" || entries[0].Outcome != "ok" {
		t.Errorf("audit: got %+v, want 5 entries: 3 rejected, 1 denied, 1 ok", entries)
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("a", 63)
	longest := strings.Join([]string{long, long, long, strings.Repeat("b", 58)}, ".") + ".cn" // 253 bytes
	tooLong := strings.Join([]string{long, long, long, strings.Repeat("b", 59)}, ".") + ".cn" // 254 bytes
	type row struct {
		name   string
		role   string
		body   string
		status int
		code   string
		field  string
		check  func(t *testing.T, m map[string]any)
	}
	wantHost := func(host, scope string) func(*testing.T, map[string]any) {
		return func(t *testing.T, m map[string]any) {
			if m["host"] != host || m["scope"] != scope {
				t.Errorf("got host %v scope %v, want %s %s", m["host"], m["scope"], host, scope)
			}
		}
	}
	wantExpires := func(d time.Duration) func(*testing.T, map[string]any) {
		return func(t *testing.T, m map[string]any) {
			got, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["expires"]))
			if err != nil {
				t.Fatalf("expires %v: %v", m["expires"], err)
			}
			if want := e.clock.Now().Add(d); !got.Equal(want) {
				t.Errorf("expires: got %v, want %v", got, want)
			}
		}
	}
	const r, tk = `"reason":"接入备案办理中"`, `"ticket":"SR-1"`
	allow := func(host, extra string) string {
		return `{"host":"` + host + `","action":"allow",` + r + `,` + tk + extra + `}`
	}
	rows := []row{
		{"registrable domain defaults to scope domain and 45 days", "support", allow("unfiled.cn", ""), 201, "", "", func(t *testing.T, m map[string]any) {
			wantHost("unfiled.cn", "domain")(t, m)
			wantExpires(45*24*time.Hour)(t, m)
			if m["action"] != "allow" || m["active"] != true || m["version"] != 1.0 || m["created_by"] != "support" {
				t.Errorf("got %v", m)
			}
		}},
		{"subdomain defaults to exact", "support", allow("WWW.Unfiled.CN.", ""), 201, "", "", wantHost("www.unfiled.cn", "exact")},
		{"unicode host stored as A-label", "support", allow("例子.中国", ""), 201, "", "", wantHost("xn--fsqu00a.xn--fiqs8s", "domain")},
		{"exact on a registrable domain", "support", allow("unfiled.cn", `,"scope":"exact"`), 201, "", "", wantHost("unfiled.cn", "exact")},
		{"private-section suffix is a domain", "support", allow("github.io", ""), 201, "", "", wantHost("github.io", "domain")},
		{"name under a private suffix", "support", allow("x.github.io", ""), 201, "", "", wantHost("x.github.io", "exact")},
		{"scope domain on a subdomain", "support", allow("www.unfiled.cn", `,"scope":"domain"`), 400, "invalid", "scope", func(t *testing.T, m map[string]any) {
			if !strings.Contains(m["message"].(string), `"unfiled.cn"`) {
				t.Errorf("message %q does not name the registrable domain", m["message"])
			}
		}},
		{"unknown scope", "support", allow("unfiled.cn", `,"scope":"wildcard"`), 400, "invalid", "scope", nil},
		{"no host", "support", `{"action":"allow",` + r + `,` + tk + `}`, 400, "invalid", "host", nil},
		{"IPv4 literal", "support", allow("1.2.3.4", ""), 400, "invalid", "host", nil},
		{"IPv6 literal", "support", allow("[2001:db8::1]", ""), 400, "invalid", "host", nil},
		{"wildcard", "support", allow("*.unfiled.cn", ""), 400, "invalid", "host", nil},
		{"253 bytes", "support", allow(longest, ""), 201, "", "", wantHost(longest, "exact")},
		{"over 253 bytes", "support", allow(tooLong, ""), 400, "invalid", "host", nil},
		{"public suffix", "support", allow("com.cn", ""), 400, "invalid", "host", nil},
		{"top-level domain", "support", allow("cn", ""), 400, "invalid", "host", nil},
		{"space in host", "support", allow("a b.cn", ""), 400, "invalid", "host", nil},
		{"host with a path", "support", allow("unfiled.cn/x", ""), 400, "invalid", "host", nil},
		{"host not a string", "support", `{"host":5,"action":"allow",` + r + `,` + tk + `}`, 400, "invalid", "host", nil},
		{"no action", "support", `{"host":"unfiled.cn",` + r + `,` + tk + `}`, 400, "invalid", "action", nil},
		{"unknown action", "support", `{"host":"unfiled.cn","action":"block",` + r + `,` + tk + `}`, 400, "invalid", "action", nil},
		{"no reason", "support", `{"host":"unfiled.cn","action":"allow",` + tk + `}`, 400, "invalid", "reason", nil},
		{"blank reason", "support", `{"host":"unfiled.cn","action":"allow","reason":"   ",` + tk + `}`, 400, "invalid", "reason", nil},
		{"reason of 500 characters", "support", `{"host":"unfiled.cn","action":"allow","reason":"` + strings.Repeat("备", 500) + `",` + tk + `}`, 201, "", "", nil},
		{"reason of 501 characters", "support", `{"host":"unfiled.cn","action":"allow","reason":"` + strings.Repeat("备", 501) + `",` + tk + `}`, 400, "invalid", "reason", nil},
		{"control character in reason", "support", `{"host":"unfiled.cn","action":"allow","reason":"a\u0007b",` + tk + `}`, 400, "invalid", "reason", nil},
		{"token pasted in reason", "support", `{"host":"unfiled.cn","action":"allow","reason":"see icpg_` + strings.Repeat("Z", 43) + `",` + tk + `}`, 400, "invalid", "reason", nil},
		{"allow without ticket", "support", `{"host":"unfiled.cn","action":"allow",` + r + `}`, 400, "invalid", "ticket", nil},
		{"ticket of 101 characters", "support", `{"host":"unfiled.cn","action":"allow",` + r + `,"ticket":"` + strings.Repeat("t", 101) + `"}`, 400, "invalid", "ticket", nil},
		{"deny without ticket", "admin", `{"host":"filed.cn","action":"deny",` + r + `,"ttl":"1h"}`, 201, "", "", wantExpires(time.Hour)},
		{"deny without expiry", "admin", `{"host":"filed.cn","action":"deny",` + r + `}`, 400, "invalid", "ttl", nil},
		{"deny of 365 days", "admin", `{"host":"filed.cn","action":"deny",` + r + `,"ttl":"365d"}`, 201, "", "", wantExpires(365 * 24 * time.Hour)},
		{"deny of 366 days", "admin", `{"host":"filed.cn","action":"deny",` + r + `,"ttl":"366d"}`, 400, "invalid", "ttl", nil},
		{"ttl in days", "support", allow("unfiled.cn", `,"ttl":"30d"`), 201, "", "", wantExpires(30 * 24 * time.Hour)},
		{"ttl Go syntax", "support", allow("unfiled.cn", `,"ttl":"720h30m"`), 201, "", "", wantExpires(720*time.Hour + 30*time.Minute)},
		{"ttl at the cap", "support", allow("unfiled.cn", `,"ttl":"90d"`), 201, "", "", wantExpires(90 * 24 * time.Hour)},
		{"ttl over the cap", "support", allow("unfiled.cn", `,"ttl":"2161h"`), 400, "invalid", "ttl", nil},
		{"negative ttl", "support", allow("unfiled.cn", `,"ttl":"-1h"`), 400, "invalid", "ttl", nil},
		{"zero days", "support", allow("unfiled.cn", `,"ttl":"0d"`), 400, "invalid", "ttl", nil},
		{"fractional days", "support", allow("unfiled.cn", `,"ttl":"1.5d"`), 400, "invalid", "ttl", nil},
		{"ttl garbage", "support", allow("unfiled.cn", `,"ttl":"soon"`), 400, "invalid", "ttl", nil},
		{"ttl a number", "support", allow("unfiled.cn", `,"ttl":3600`), 400, "invalid", "ttl", nil},
		{"ttl and expires", "support", allow("unfiled.cn", `,"ttl":"1h","expires":"2026-12-01T00:00:00Z"`), 400, "invalid", "ttl", nil},
		{"empty expires is absent", "support", allow("unfiled.cn", `,"ttl":"2h","expires":""`), 201, "", "", wantExpires(2 * time.Hour)},
		{"expires", "support", allow("unfiled.cn", `,"expires":"`+t0.Add(10*24*time.Hour+time.Hour).Format(time.RFC3339)+`"`), 201, "", "", nil},
		{"expires in the past", "support", allow("unfiled.cn", `,"expires":"2020-01-01T00:00:00Z"`), 400, "invalid", "expires", nil},
		{"expires past the cap", "support", allow("unfiled.cn", `,"expires":"2030-01-01T00:00:00+08:00"`), 400, "invalid", "expires", nil},
		{"expires not RFC 3339", "support", allow("unfiled.cn", `,"expires":"tomorrow"`), 400, "invalid", "expires", nil},
		{"blacklisted", "admin", allow("blacklisted.cn", ""), 422, "not_allowed", "", nil},
		{"blacklisted even confirmed", "admin", allow("blacklisted.cn", `,"confirm":true`), 422, "not_allowed", "", nil},
		{"subdomain of blacklisted", "support", allow("www.blacklisted.cn", ""), 422, "not_allowed", "", nil},
		{"deny of blacklisted is fine", "admin", `{"host":"blacklisted.cn","action":"deny",` + r + `,"ttl":"1h"}`, 201, "", "", nil},
		{"cancelled needs confirmation", "support", allow("cancelled.cn", ""), 409, "confirmation_required", "", func(t *testing.T, m map[string]any) {
			if m["state"] != "cancelled" {
				t.Errorf("state: got %v, want cancelled", m["state"])
			}
		}},
		{"cancelled confirmed", "support", allow("cancelled.cn", `,"confirm":true`), 201, "", "", nil},
		{"filing pending needs confirmation", "support", allow("www.pending.cn", ""), 409, "confirmation_required", "", func(t *testing.T, m map[string]any) {
			if m["state"] != "filing_pending" {
				t.Errorf("state: got %v, want filing_pending", m["state"])
			}
		}},
		{"confirm not a boolean", "support", allow("pending.cn", `,"confirm":"yes"`), 400, "invalid", "confirm", nil},
		{"unknown field", "support", allow("unfiled.cn", `,"note":"x"`), 400, "invalid", "note", nil},
		{"field names are exact", "support", `{"Host":"unfiled.cn","action":"allow",` + r + `,` + tk + `}`, 400, "invalid", "Host", nil},
		{"field given twice", "support", allow("unfiled.cn", `,"host":"filed.cn"`), 400, "invalid", "host", nil},
		{"not an object", "support", `[]`, 400, "invalid", "", nil},
		{"null", "support", `null`, 400, "invalid", "", nil},
		{"empty body", "support", ``, 400, "invalid", "", nil},
		{"trailing data", "support", allow("unfiled.cn", "") + `{}`, 400, "invalid", "", nil},
		{"malformed", "support", `{"host":"unfiled.cn",`, 400, "invalid", "", nil},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Add(time.Minute) // a fresh mutation token each time
			res := e.create(e.secret[tt.role], tt.body)
			var m map[string]any
			if tt.status == 201 {
				if res.status != 201 {
					t.Fatalf("got %d %s, want 201", res.status, res.body)
				}
				m = res.obj(t)
				if res.header.Get("Location") != "/v1/overrides/"+m["id"].(string) || res.header.Get("ETag") != `"1"` {
					t.Errorf("Location %q ETag %q", res.header.Get("Location"), res.header.Get("ETag"))
				}
			} else {
				m = wantError(t, res, tt.status, tt.code, tt.field)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
	// Every attempt is in the audit log: as many entries as rows.
	entries, _ := e.audit("&action=override.create")
	if len(entries) != len(rows) {
		t.Errorf("audit: got %d override.create entries, want %d", len(entries), len(rows))
	}
}

func TestBodyLimits(t *testing.T) {
	e := newEnv(t, nil)
	big := `{"host":"unfiled.cn","action":"allow","reason":"` + strings.Repeat("r", 1<<20) + `","ticket":"T"}`
	wantError(t, e.create(e.secret["support"], big), 413, "too_large", "")
	entries, _ := e.audit("")
	if len(entries) != 1 || entries[0].Outcome != "rejected" || len(entries[0].Input) > 9000 {
		t.Fatalf("audit of a too-large body: got %d entries (%+v), want one rejected with its input cut", len(entries), entries)
	}
	if !strings.Contains(entries[0].Detail, "cut") {
		t.Errorf("detail %q does not say the input was cut", entries[0].Detail)
	}
	// Bulk takes up to 4 MiB; each item is then judged on its own.
	item := `{"host":"unfiled.cn","action":"allow","reason":"` + strings.Repeat("r", 3<<20) + `","ticket":"T"}`
	r := e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["admin"], body: `{"overrides":[` + item + `]}`})
	if r.status != 200 || !strings.Contains(r.body, `"field": "overrides[0].reason"`) {
		t.Errorf("bulk of 3 MiB: got %d %.300s, want 200 with the item refused", r.status, r.body)
	}
	e.clock.Add(time.Minute)
	item = `{"host":"unfiled.cn","action":"allow","reason":"` + strings.Repeat("r", 4<<20) + `","ticket":"T"}`
	r = e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["admin"], body: `{"overrides":[` + item + `]}`})
	wantError(t, r, 413, "too_large", "")
}

func TestBulk(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"overrides":[` + allowBody("a.cn") + `,` + allowBody("1.2.3.4") + `,` +
		`{"host":"filed.cn","action":"deny","reason":"abuse","ttl":"7d"}` + `,` + allowBody("blacklisted.cn") + `,{"bogus":1}]}`
	r := e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["admin"], body: body})
	if r.status != 200 {
		t.Fatalf("bulk: got %d %s", r.status, r.body)
	}
	var out struct {
		Results []struct {
			Override *admin.OverrideJSON `json:"override"`
			Error    *struct {
				Status int    `json:"status"`
				Code   string `json:"error"`
				Field  string `json:"field"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	want := []string{"ok", "400 invalid overrides[1].host", "ok", "422 not_allowed ", "400 invalid overrides[4].bogus"}
	if len(out.Results) != len(want) {
		t.Fatalf("got %d results, want %d: %s", len(out.Results), len(want), r.body)
	}
	for i, res := range out.Results {
		got := "ok"
		if res.Error != nil {
			got = fmt.Sprintf("%d %s %s", res.Error.Status, res.Error.Code, res.Error.Field)
		} else if res.Override == nil || res.Override.ID == "" {
			got = "empty"
		}
		if got != want[i] {
			t.Errorf("result %d: got %q, want %q", i, got, want[i])
		}
	}
	if e.applied.Load() != 1 {
		t.Errorf("Apply ran %d times, want once for the batch", e.applied.Load())
	}
	if d := e.reg.Decide("www.a.cn"); d.Reason != registry.ReasonOverrideAllow {
		t.Errorf("after bulk, www.a.cn: got %s, want override_allow", d.Reason)
	}
	entries, _ := e.audit("&action=override.create")
	outcomes := map[string]int{}
	for _, en := range entries {
		outcomes[en.Outcome]++
	}
	if outcomes["ok"] != 2 || outcomes["rejected"] != 3 {
		t.Errorf("audit outcomes: got %v, want 2 ok and 3 rejected, each item on its own", outcomes)
	}
	wantError(t, e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["admin"], body: `{"overrides":[]}`}), 400, "invalid", "overrides")
	wantError(t, e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["admin"], body: `{"overrides":{}}`}), 400, "invalid", "overrides")
	wantError(t, e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["admin"], body: `{"overrides":[` + strings.Repeat(`{},`, 1000) + `{}]}`}), 400, "invalid", "overrides")
}

func TestETagFlow(t *testing.T) {
	e := newEnv(t, nil)
	o, etag := e.mustCreate(e.secret["support"], allowBody("unfiled.cn"))
	id := o["id"].(string)
	path := "/v1/overrides/" + id
	if etag != `"1"` {
		t.Fatalf("ETag: got %q, want \"1\"", etag)
	}
	r := e.do(req{method: "GET", path: path, token: e.secret["viewer"]})
	if r.status != 200 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("GET: got %d ETag %q", r.status, r.header.Get("ETag"))
	}
	wantError(t, e.do(req{method: "PATCH", path: path, token: e.secret["support"], body: `{"reason":"x"}`}), 428, "if_match_required", "")
	wantError(t, e.do(req{method: "DELETE", path: path, token: e.secret["support"]}), 428, "if_match_required", "")
	wantError(t, e.do(req{method: "PATCH", path: path, token: e.secret["support"], body: `{"reason":"x"}`, header: map[string]string{"If-Match": "1"}}), 400, "invalid", "If-Match")

	// Two staff read version 1 and both try to change it at once: one
	// wins, the other is told to re-read.
	var wg sync.WaitGroup
	results := make([]resp, 2)
	for i, who := range []string{"support", "support2"} {
		wg.Go(func() {
			results[i] = e.do(req{method: "PATCH", path: path, token: e.secret[who], body: `{"reason":"changed by ` + who + `"}`,
				header: map[string]string{"If-Match": `"1"`}})
		})
	}
	wg.Wait()
	statuses := []int{results[0].status, results[1].status}
	won, lost := results[0], results[1]
	if won.status != 200 {
		won, lost = lost, won
	}
	if won.status != 200 || lost.status != 412 {
		t.Fatalf("racing PATCHes: got %v, want one 200 and one 412", statuses)
	}
	wantError(t, lost, 412, "conflict", "")
	if won.header.Get("ETag") != `"2"` {
		t.Errorf("winner's ETag: got %q, want \"2\"", won.header.Get("ETag"))
	}
	// The loser re-reads and retries.
	cur := e.do(req{method: "GET", path: path, token: e.secret["support2"]})
	r = e.do(req{method: "PATCH", path: path, token: e.secret["support2"], body: `{"ttl":"60d","ticket":"SR-2"}`,
		header: map[string]string{"If-Match": cur.header.Get("ETag")}})
	if r.status != 200 || r.header.Get("ETag") != `"3"` {
		t.Fatalf("retry: got %d %s ETag %q", r.status, r.body, r.header.Get("ETag"))
	}
	m := r.obj(t)
	if m["ticket"] != "SR-2" || m["expires"] != t0.Add(60*24*time.Hour).Format(time.RFC3339) || m["created_by"] != "support" {
		t.Errorf("after PATCH: got %v", m)
	}
	// What cannot change, and what is out of bounds.
	for _, tt := range []struct{ body, field string }{
		{`{"host":"other.cn"}`, "host"},
		{`{"scope":"exact"}`, "scope"},
		{`{"action":"deny"}`, "action"},
		{`{"confirm":true}`, "confirm"},
		{`{"version":4}`, "version"},
		{`{}`, ""},
		{`{"ttl":"91d"}`, "ttl"},
		{`{"expires":"2020-01-01T00:00:00Z"}`, "expires"},
		{`{"ticket":""}`, "ticket"},
		{`{"reason":""}`, "reason"},
	} {
		wantError(t, e.do(req{method: "PATCH", path: path, token: e.secret["support"], body: tt.body,
			header: map[string]string{"If-Match": `"3"`}}), 400, "invalid", tt.field)
	}
	wantError(t, e.do(req{method: "PATCH", path: "/v1/overrides/999", token: e.secret["support"], body: `{"reason":"x"}`,
		header: map[string]string{"If-Match": `"1"`}}), 404, "not_found", "")
	wantError(t, e.do(req{method: "GET", path: "/v1/overrides/abc", token: e.secret["viewer"]}), 404, "not_found", "")
	// Delete with a stale version, then the current one.
	wantError(t, e.do(req{method: "DELETE", path: path, token: e.secret["support"], header: map[string]string{"If-Match": `"2"`}}), 412, "conflict", "")
	r = e.do(req{method: "DELETE", path: path, token: e.secret["support"], header: map[string]string{"If-Match": `"3"`}})
	if r.status != 200 || r.obj(t)["id"] != id {
		t.Fatalf("DELETE: got %d %s, want 200 with the deleted override", r.status, r.body)
	}
	wantError(t, e.do(req{method: "GET", path: path, token: e.secret["viewer"]}), 404, "not_found", "")

	entries, _ := e.audit("&target=" + id)
	var kinds []string
	for _, en := range entries {
		kinds = append(kinds, en.Action+":"+en.Outcome)
	}
	if len(entries) < 15 || kinds[0] != "override.delete:ok" || kinds[len(kinds)-1] != "override.create:ok" {
		t.Errorf("audit of override %s: got %v", id, kinds)
	}
	for _, en := range entries {
		if en.Action == "override.update" && en.Outcome == "ok" && (len(en.Before) == 0 || len(en.After) == 0) {
			t.Errorf("update entry without before/after: %+v", en)
		}
	}
}

func TestExtendAllowOfNowBlacklistedDomain(t *testing.T) {
	e := newEnv(t, nil)
	o, _ := e.mustCreate(e.secret["support"], allowBody("later.cn"))
	// The domain gets blacklisted after the allow was made.
	snap, err := registry.LoadSnapshot("testdata/api_registry.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	snap, err = snap.Apply([]registry.Record{{Domain: "later.cn", State: registry.StateBlacklisted}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Swap(snap)
	path := "/v1/overrides/" + o["id"].(string)
	wantError(t, e.do(req{method: "PATCH", path: path, token: e.secret["support"], body: `{"ttl":"60d"}`,
		header: map[string]string{"If-Match": `"1"`}}), 422, "not_allowed", "")
	// Shortening it or changing the reason is fine.
	if r := e.do(req{method: "PATCH", path: path, token: e.secret["support"], body: `{"ttl":"1d","reason":"blacklisted meanwhile"}`,
		header: map[string]string{"If-Match": `"1"`}}); r.status != 200 {
		t.Errorf("shorten: got %d %s", r.status, r.body)
	}
}

// TestAllowStopsAtExpiry: an allow pushed into the registry by Apply
// passes until the instant it expires, and not a nanosecond longer, even
// with the decision cached.
func TestAllowStopsAtExpiry(t *testing.T) {
	e := newEnv(t, nil)
	host := "www.unfiled.cn"
	if d := e.reg.Decide(host); d.Verdict != registry.Block || d.Reason != registry.ReasonUnfiled {
		t.Fatalf("before: got %s %s, want block unfiled", d.Verdict, d.Reason)
	}
	o, _ := e.mustCreate(e.secret["support"], `{"host":"unfiled.cn","action":"allow","reason":"r","ticket":"T","ttl":"1h"}`)
	expires := t0.Add(time.Hour)
	if o["expires"] != expires.Format(time.RFC3339) {
		t.Fatalf("expires: got %v, want %v", o["expires"], expires)
	}
	d := e.reg.Decide(host)
	if d.Verdict != registry.Pass || d.Reason != registry.ReasonOverrideAllow || !d.ValidUntil.Equal(expires) {
		t.Fatalf("after create: got %s %s valid until %v, want pass override_allow until %v", d.Verdict, d.Reason, d.ValidUntil, expires)
	}
	e.clock.Set(expires.Add(-time.Nanosecond))
	if d := e.reg.Decide(host); d.Verdict != registry.Pass {
		t.Errorf("1 ns before expiry: got %s %s, want pass", d.Verdict, d.Reason)
	}
	e.clock.Set(expires)
	if d := e.reg.Decide(host); d.Verdict != registry.Block || d.Reason != registry.ReasonUnfiled {
		t.Errorf("at expiry: got %s %s, want block unfiled", d.Verdict, d.Reason)
	}
	// The API agrees: it is listed as inactive now.
	r := e.do(req{method: "GET", path: "/v1/overrides?active=false", token: e.secret["viewer"]})
	if !strings.Contains(r.body, `"active": false`) || !strings.Contains(r.body, `"host": "unfiled.cn"`) {
		t.Errorf("active=false at expiry: got %s", r.body)
	}

	// A deny applies at once and is gone at once on delete.
	e.clock.Set(t0)
	dn, etag := e.mustCreate(e.secret["admin"], `{"host":"filed.cn","action":"deny","reason":"phishing","ttl":"2h"}`)
	if d := e.reg.Decide("filed.cn"); d.Reason != registry.ReasonOverrideDeny {
		t.Errorf("after deny: got %s, want override_deny", d.Reason)
	}
	if r := e.do(req{method: "DELETE", path: "/v1/overrides/" + dn["id"].(string), token: e.secret["admin"], header: map[string]string{"If-Match": etag}}); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if d := e.reg.Decide("filed.cn"); d.Reason != registry.ReasonFiled {
		t.Errorf("after deleting the deny: got %s, want filed", d.Reason)
	}
}

func TestApplyFailureStillSucceeds(t *testing.T) {
	e := newEnv(t, func(c *admin.Config) {
		c.Apply = func(context.Context) error { return fmt.Errorf("registry unavailable") }
	})
	o, _ := e.mustCreate(e.secret["support"], allowBody("unfiled.cn"))
	if r := e.do(req{method: "GET", path: "/v1/overrides/" + o["id"].(string), token: e.secret["viewer"]}); r.status != 200 {
		t.Errorf("stored override: got %d", r.status)
	}
}

func TestListOverrides(t *testing.T) {
	e := newEnv(t, nil)
	for _, h := range []string{"a.cn", "b.cn", "例子.中国", "c.cn"} {
		e.mustCreate(e.secret["support"], allowBody(h))
	}
	e.mustCreate(e.secret["admin"], `{"host":"filed.cn","action":"deny","reason":"x","ttl":"1h"}`)
	e.mustCreate(e.secret["support"], `{"host":"short.cn","action":"allow","reason":"x","ticket":"T","ttl":"1m"}`)
	e.clock.Add(2 * time.Minute)
	list := func(q string) (hosts []string, next string) {
		t.Helper()
		r := e.do(req{method: "GET", path: "/v1/overrides" + q, token: e.secret["viewer"]})
		if r.status != 200 {
			t.Fatalf("list %s: got %d %s", q, r.status, r.body)
		}
		var out struct {
			Overrides []admin.OverrideJSON `json:"overrides"`
			Next      *string              `json:"next"`
		}
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatal(err)
		}
		if out.Overrides == nil || out.Next == nil {
			t.Fatalf("list %s: overrides or next missing: %s", q, r.body)
		}
		for _, o := range out.Overrides {
			hosts = append(hosts, o.Host)
		}
		return hosts, *out.Next
	}
	for _, tt := range []struct {
		q    string
		want string
	}{
		{"", "a.cn b.cn xn--fsqu00a.xn--fiqs8s c.cn filed.cn short.cn"},
		{"?action=deny", "filed.cn"},
		{"?action=allow&active=true", "a.cn b.cn xn--fsqu00a.xn--fiqs8s c.cn"},
		{"?active=false", "short.cn"},
		{"?q=" + "例子", "xn--fsqu00a.xn--fiqs8s"},
		{"?q=B.CN", "b.cn"},
		{"?q=nothing", ""},
	} {
		hosts, next := list(tt.q)
		if got := strings.Join(hosts, " "); got != tt.want || next != "" {
			t.Errorf("list %q: got %q next %q, want %q and no next", tt.q, got, next, tt.want)
		}
	}
	// Pages of two.
	var all []string
	q := "?limit=2"
	for range 10 {
		hosts, next := list(q)
		all = append(all, hosts...)
		if next == "" {
			break
		}
		q = "?limit=2&after=" + next
	}
	if got := strings.Join(all, " "); got != "a.cn b.cn xn--fsqu00a.xn--fiqs8s c.cn filed.cn short.cn" {
		t.Errorf("paged: got %q", got)
	}
	for _, tt := range []struct{ q, field string }{
		{"?action=block", "action"}, {"?active=yes", "active"}, {"?limit=0", "limit"}, {"?limit=1001", "limit"},
		{"?after=x", "after"}, {"?acton=deny", "acton"}, {"?limit=1&limit=2", "limit"},
	} {
		wantError(t, e.do(req{method: "GET", path: "/v1/overrides" + tt.q, token: e.secret["viewer"]}), 400, "invalid", tt.field)
	}
}

// TestAuditLog checks the entries of each kind of outcome and that no
// token secret appears anywhere in the audit log's JSON.
func TestAuditLog(t *testing.T) {
	e := newEnv(t, nil)
	const from = "127.0.0.1"
	// ok
	o, _ := e.mustCreate(e.secret["support"], `{"host":"例子.中国","action":"allow","reason":"接入备案办理中","ticket":"SR-9"}`)
	// denied: no token, bad token, role, CSRF
	wantError(t, e.create("", allowBody("x.cn")), 401, "unauthenticated", "")
	badSecret := "icpg_" + strings.Repeat("Q", 43)
	wantError(t, e.create(badSecret, allowBody("x.cn")), 401, "unauthenticated", "")
	wantError(t, e.create(e.secret["viewer"], allowBody("x.cn")), 403, "forbidden", "")
	ck, _ := e.login(e.secret["support"])
	wantError(t, e.do(req{method: "POST", path: "/v1/overrides", cookie: ck, body: allowBody("x.cn")}), 403, "csrf", "")
	// rejected: 400, 409, 412, 422, and a token pasted in the input
	wantError(t, e.create(e.secret["support"], allowBody("com.cn")), 400, "invalid", "host")
	wantError(t, e.create(e.secret["support"], allowBody("cancelled.cn")), 409, "confirmation_required", "")
	wantError(t, e.create(e.secret["support"], allowBody("blacklisted.cn")), 422, "not_allowed", "")
	wantError(t, e.do(req{method: "PATCH", path: "/v1/overrides/" + o["id"].(string), token: e.secret["support"], body: `{"reason":"y"}`,
		header: map[string]string{"If-Match": `"7"`}}), 412, "conflict", "")
	wantError(t, e.create(e.secret["support"], `{"host":"x.cn","action":"allow","reason":"token `+e.secret["admin"]+`","ticket":"T"}`), 400, "invalid", "reason")
	// logins
	wantError(t, e.do(req{method: "POST", path: "/v1/session", body: `{"token":"` + badSecret + `"}`}), 401, "unauthenticated", "")
	wantError(t, e.do(req{method: "POST", path: "/v1/session", body: `{"token":"not-even-a-token"}`}), 401, "unauthenticated", "")

	entries, raw := e.audit("")
	type key struct{ action, outcome, who string }
	count := map[key]int{}
	for _, en := range entries {
		count[key{en.Action, en.Outcome, en.Who}]++
		if !strings.HasPrefix(en.Remote, from+":") {
			t.Errorf("remote: got %q, want %s:port", en.Remote, from)
		}
		if !en.At.Equal(t0) {
			t.Errorf("at: got %v, want the injected clock %v", en.At, t0)
		}
	}
	for k, want := range map[key]int{
		{"override.create", "ok", "support"}:       1,
		{"override.create", "denied", ""}:          2,
		{"override.create", "denied", "viewer"}:    1,
		{"override.create", "denied", "support"}:   1,
		{"override.create", "rejected", "support"}: 4,
		{"override.update", "rejected", "support"}: 1,
		{"login", "ok", "support"}:                 1,
		{"login", "denied", ""}:                    2,
	} {
		if count[k] != want {
			t.Errorf("audit %v: got %d entries, want %d", k, count[k], want)
		}
	}
	if len(entries) != 13 {
		t.Errorf("got %d entries, want 13:\n%s", len(entries), raw)
	}
	// The successful create holds who, role, raw input, normalised host
	// and the override after.
	last := entries[len(entries)-1]
	if last.Role != "support" || last.Normalized != "xn--fsqu00a.xn--fiqs8s" || !strings.Contains(string(last.Input), "例子.中国") ||
		last.Target != o["id"] || !strings.Contains(compact(t, last.After), `"ticket":"SR-9"`) || last.Before != nil {
		t.Errorf("create entry: got %+v", last)
	}
	for name, secret := range e.secret {
		if strings.Contains(raw, secret) || strings.Contains(raw, secret[5:]) {
			t.Errorf("audit holds %s's token", name)
		}
	}
	for _, s := range []string{badSecret, "not-even-a-token", "Bearer icpg"} {
		if strings.Contains(raw, s) {
			t.Errorf("audit holds %q", s)
		}
	}
	if !strings.Contains(raw, "icpg_[redacted]") {
		t.Errorf("the pasted token is not shown redacted:\n%s", raw)
	}
	// Filters and pages.
	got, _ := e.audit("&who=viewer")
	if len(got) != 1 || got[0].Who != "viewer" {
		t.Errorf("who=viewer: got %+v", got)
	}
	got, _ = e.audit("&action=login&since=" + t0.Format(time.RFC3339) + "&until=" + t0.Add(time.Second).Format(time.RFC3339))
	if len(got) != 3 {
		t.Errorf("action=login in the window: got %d, want 3", len(got))
	}
	var ids []int64
	before := ""
	for range 20 {
		r := e.do(req{method: "GET", path: "/v1/audit?limit=5" + before, token: e.secret["viewer"]})
		var page struct {
			Entries []admin.AuditEntry `json:"entries"`
			Next    string             `json:"next"`
		}
		if err := json.Unmarshal([]byte(r.body), &page); err != nil {
			t.Fatal(err)
		}
		for _, en := range page.Entries {
			ids = append(ids, en.ID)
		}
		if page.Next == "" {
			break
		}
		before = "&before=" + page.Next
	}
	if len(ids) != 13 {
		t.Errorf("paged audit: got %d entries, want 13", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Errorf("audit not newest first: %v", ids)
			break
		}
	}
	wantError(t, e.do(req{method: "GET", path: "/v1/audit?since=yesterday", token: e.secret["viewer"]}), 400, "invalid", "since")
	wantError(t, e.do(req{method: "POST", path: "/v1/audit", token: e.secret["admin"]}), 405, "method_not_allowed", "")
}

func TestExplainNeedsViewer(t *testing.T) {
	e := newEnv(t, nil)
	wantError(t, e.do(req{method: "GET", path: "/v1/explain?host=filed.cn"}), 401, "unauthenticated", "")
	wantError(t, e.do(req{method: "GET", path: "/v1/explain", token: e.secret["viewer"]}), 400, "invalid", "host")
	r := e.do(req{method: "GET", path: "/v1/explain?host=WWW.Filed.cn.", token: e.secret["viewer"]})
	var x admin.Explanation
	if err := json.Unmarshal([]byte(r.body), &x); err != nil {
		t.Fatal(err)
	}
	if x.Host != "WWW.Filed.cn." || x.Normalized != "www.filed.cn" || x.Domain != "filed.cn" || x.Verdict != "pass" ||
		x.Reason != "filed" || x.FilingNumber != "京ICP备10206937号-1" || x.Record == nil {
		t.Errorf("explain: got %+v", x)
	}
	r = e.do(req{method: "GET", path: "/v1/explain?host=rectifying.cn", token: e.secret["viewer"]})
	if err := json.Unmarshal([]byte(r.body), &x); err != nil {
		t.Fatal(err)
	}
	if x.Record == nil || x.Record.RectifyDeadline == nil || x.ValidUntil == nil || !x.ValidUntil.Equal(*x.Record.RectifyDeadline) {
		t.Errorf("rectifying: got %+v", x)
	}
	if r := e.do(req{method: "HEAD", path: "/v1/explain?host=filed.cn", token: e.secret["viewer"]}); r.status != 200 || r.body != "" {
		t.Errorf("HEAD: got %d %q", r.status, r.body)
	}
}

func TestReportDisabled(t *testing.T) {
	e := newEnv(t, nil)
	wantError(t, e.do(req{method: "GET", path: "/v1/report/unfiled", token: e.secret["viewer"]}), 404, "not_found", "")
}

// TestReport answers the unfiled-site report from the real unfiled
// package, as JSON and CSV.
func TestReport(t *testing.T) {
	var rep *unfiled.Report
	e := newEnv(t, func(c *admin.Config) {
		rep = unfiled.New(unfiled.Options{Now: c.Now})
		c.Report = rep
	})
	dst := netip.MustParseAddrPort("203.0.113.7:443")
	for range 3 {
		rep.Observe("unfiled", "many.cn", dst)
	}
	rep.Observe("unfiled", "once.cn", dst)
	rep.Observe("cancelled", "cancelled.cn", netip.MustParseAddrPort("203.0.113.8:80"))

	r := e.do(req{method: "GET", path: "/v1/report/unfiled", token: e.secret["viewer"]})
	var out struct {
		Rows []admin.ReportRow `json:"rows"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || r.status != 200 {
		t.Fatalf("report: %d %s %v", r.status, r.body, err)
	}
	if len(out.Rows) != 3 || out.Rows[0].Domain != "many.cn" || out.Rows[0].Hits != 3 ||
		len(out.Rows[0].Destinations) != 1 || out.Rows[0].Destinations[0] != dst.String() || !out.Rows[0].FirstSeen.Equal(t0) {
		t.Errorf("report rows: got %+v", out.Rows)
	}
	r = e.do(req{method: "GET", path: "/v1/report/unfiled?n=1&reason=unfiled", token: e.secret["viewer"]})
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || len(out.Rows) != 1 || out.Rows[0].Domain != "many.cn" {
		t.Errorf("n=1 reason=unfiled: got %s", r.body)
	}
	r = e.do(req{method: "GET", path: "/v1/report/unfiled?reason=cancelled", token: e.secret["viewer"]})
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || len(out.Rows) != 1 || out.Rows[0].Domain != "cancelled.cn" {
		t.Errorf("reason=cancelled: got %s", r.body)
	}
	wantError(t, e.do(req{method: "GET", path: "/v1/report/unfiled?reason=filed", token: e.secret["viewer"]}), 400, "invalid", "reason")
	wantError(t, e.do(req{method: "GET", path: "/v1/report/unfiled?n=0", token: e.secret["viewer"]}), 400, "invalid", "n")
	wantError(t, e.do(req{method: "GET", path: "/v1/report/unfiled?format=xml", token: e.secret["viewer"]}), 400, "invalid", "format")
	wantError(t, e.do(req{method: "GET", path: "/v1/report/unfiled"}), 401, "unauthenticated", "")

	for _, q := range []req{
		{method: "GET", path: "/v1/report/unfiled?format=csv", token: e.secret["viewer"]},
		{method: "GET", path: "/v1/report/unfiled", token: e.secret["viewer"], header: map[string]string{"Accept": "text/csv;q=0.9, */*;q=0.1"}},
	} {
		r := e.do(q)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
			t.Fatalf("csv: got %d %q", r.status, r.header.Get("Content-Type"))
		}
		lines := strings.Split(strings.TrimSpace(r.body), "\n")
		if len(lines) != 4 || lines[0] != "domain,reason,hits,hits_error,first_seen,last_seen,destinations" ||
			!strings.HasPrefix(lines[1], "many.cn,unfiled,3,0,"+t0.Format(time.RFC3339)) {
			t.Errorf("csv: got %q", r.body)
		}
	}
	// Excel on Chinese Windows reads CSV without a byte order mark as GBK.
	r = e.do(req{method: "GET", path: "/v1/report/unfiled?format=csv&bom=1", token: e.secret["viewer"]})
	if r.status != 200 || !strings.HasPrefix(r.body, "\ufeffdomain,reason,") {
		t.Errorf("bom=1: got %d %q, want the CSV after a UTF-8 byte order mark", r.status, r.body)
	}
	r = e.do(req{method: "GET", path: "/v1/report/unfiled?format=csv&bom=0", token: e.secret["viewer"]})
	if r.status != 200 || !strings.HasPrefix(r.body, "domain,reason,") {
		t.Errorf("bom=0: got %d %q, want the CSV without a byte order mark", r.status, r.body)
	}
	wantError(t, e.do(req{method: "GET", path: "/v1/report/unfiled?format=csv&bom=yes", token: e.secret["viewer"]}), 400, "invalid", "bom")
}

// compact returns JSON without insignificant white space.
func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compacting %q: %v", raw, err)
	}
	return b.String()
}
