package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/admin/unfiled"
	"github.com/icpgate/icpgate/internal/browsertest"
	"github.com/icpgate/icpgate/registry"
)

// consoleEnv is a real admin server (bbolt store, token file, unfiled
// report, registry) for the console to talk to.
type consoleEnv struct {
	url     string
	reg     *registry.Registry
	secrets map[string]string // token name -> secret
	// node is the gateway's node name; started is about when the report's
	// rows were seen (unfiled-shop.cn, elsewhere.cn).
	node    string
	started time.Time
}

func startConsoleEnv(t *testing.T) *consoleEnv {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	now := time.Now()
	snap, err := registry.NewSnapshot([]registry.Record{
		{Domain: "filed.cn", State: registry.StateFiled, FilingNumber: "京ICP备10206937号-1", Subject: "北京测试科技有限公司", SubjectType: "enterprise", Province: "京", UpdatedAt: now.Add(-24 * time.Hour)},
		{Domain: "cancelled.cn", State: registry.StateCancelled, FilingNumber: "豫ICP备16054321号-1", Subject: "郑州测试有限公司", SubjectType: "enterprise", Province: "豫"},
		{Domain: "blacklisted.cn", State: registry.StateBlacklisted, Subject: "测试主体"},
		{Domain: "elsewhere.cn", State: registry.StateNoAccess, FilingNumber: "沪ICP备12345678号-3", Subject: "上海某某网络有限公司", SubjectType: "enterprise", Province: "沪"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{})
	reg.Swap(snap)

	backend, err := adminstore.OpenBolt(filepath.Join(dir, "admin.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	tokens, err := adminstore.OpenTokenFile(filepath.Join(dir, "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	env := &consoleEnv{reg: reg, secrets: map[string]string{}, node: "gw-bj-1", started: now}
	for _, p := range []struct {
		name string
		role admin.Role
	}{{"li.wei", admin.RoleSupport}, {"wang.fang", admin.RoleSupport}, {"zhao.min", admin.RoleViewer}} {
		secret, tok, err := admin.NewToken(p.name, p.role, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := tokens.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		env.secrets[p.name] = secret
	}

	report := unfiled.New(unfiled.Options{})
	dst := netip.MustParseAddrPort("203.0.113.7:443")
	for range 5 {
		report.Observe("unfiled", "unfiled-shop.cn", dst)
	}
	report.Observe("no_access", "elsewhere.cn", netip.MustParseAddrPort("203.0.113.8:80"))

	// File mode: every stored change goes into the registry at once.
	apply := func(ctx context.Context) error {
		ovs, err := backend.Overrides(ctx)
		if err != nil {
			return err
		}
		return reg.Update(func(old *registry.Snapshot) (*registry.Snapshot, error) { return old.WithOverrides(ovs) })
	}
	srv := admin.New(admin.Config{Address: "127.0.0.1:0", Backend: backend, Tokens: tokens, Apply: apply, Report: report, Node: env.node},
		reg, prometheus.NewRegistry(), nil, nil)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	env.url = "http://" + srv.Addr().String()
	return env
}

// apiAs calls the admin API with a Bearer token, as a script or another
// support engineer would.
func (e *consoleEnv) apiAs(t *testing.T, who, method, path, ifMatch, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.secrets[who])
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// override returns the stored override of host, read through the API.
func (e *consoleEnv) override(t *testing.T, host string) (admin.OverrideJSON, bool) {
	t.Helper()
	var list struct{ Overrides []admin.OverrideJSON }
	if st := e.apiAs(t, "wang.fang", "GET", "/v1/overrides?q="+host, "", "", &list); st != http.StatusOK {
		t.Fatalf("listing overrides: status %d", st)
	}
	for _, o := range list.Overrides {
		if o.Host == host {
			return o, true
		}
	}
	return admin.OverrideJSON{}, false
}

var (
	css = func(s string) chromedp.CSS { return chromedp.CSS(s) }
	id  = func(s string) chromedp.ID { return chromedp.ID(s) }
)

// TestConsoleBrowser drives the console in headless Chromium against a
// real admin server: sign-in, explain, the whitelist with every answer the
// server can give (400 with a field, 409 confirmation, 412 conflict, 422,
// 403 with the role needed), extend and remove, the audit log, the report
// and its CSV, the English switch (remembered across a reload), a narrow
// window, and a viewer's read-only view.
func TestConsoleBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	env := startConsoleEnv(t)
	b := browsertest.New(t, 1280, 900)

	// Sign in: a pasted password is caught before the server, a wrong
	// token by the server, a right one signs in.
	b.Do(t, "open the console",
		chromedp.Navigate(env.url+"/"),
		chromedp.WaitVisible(id("signin-token")),
	)
	if loc := browsertest.Run(t, b, "location", chromedp.Location()); !strings.HasSuffix(loc, "/console/") {
		t.Errorf("/ should redirect to /console/, got %s", loc)
	}
	b.Screenshot(t, "01-signin")
	b.Do(t, "sign in with a password",
		chromedp.SendKeys(id("signin-token"), "hunter2"),
		chromedp.Click(id("signin-submit")),
		chromedp.WaitVisible(css(`#signin-token[aria-invalid="true"]`)),
	)
	if got := b.Text(t, "#signin-token-err"); !strings.Contains(got, "icpg_") {
		t.Errorf("client-side token check: got %q, want it to mention icpg_", got)
	}
	b.Do(t, "sign in with an unknown token",
		chromedp.SetValue(id("signin-token"), "icpg_"+strings.Repeat("A", 43)),
		chromedp.Click(id("signin-submit")),
		chromedp.WaitVisible(css(`#signin-msg.msg-error[data-code="unauthenticated"] .err-summary`)),
	)
	b.Do(t, "sign in as li.wei",
		chromedp.SetValue(id("signin-token"), env.secrets["li.wei"]),
		chromedp.Click(id("signin-submit")),
		chromedp.WaitVisible(id("whoami")),
		chromedp.WaitVisible(id("explain-host")),
	)
	if got := b.Text(t, "#whoami"); !strings.Contains(got, "li.wei") || !strings.Contains(got, "客服") {
		t.Errorf("whoami: got %q, want li.wei and the support role", got)
	}

	// Explain a pasted URL of an unfiled site.
	b.Do(t, "explain a URL",
		chromedp.SendKeys(id("explain-host"), "https://www.unfiled-shop.cn/cart?id=1"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#explain-verdict[data-reason="unfiled"]`)),
	)
	if got := b.Text(t, "#explain-result .note"); !strings.Contains(got, "www.unfiled-shop.cn") {
		t.Errorf("extracted-host note: got %q", got)
	}
	if got := b.Text(t, "#explain-verdict .verdict-word"); got != "拦截" {
		t.Errorf("verdict: got %q, want 拦截", got)
	}
	if got := b.Text(t, "#explain-tell"); !strings.Contains(got, "备案") {
		t.Errorf("what to tell the customer: got %q", got)
	}
	facts := b.Text(t, "#explain-result dl.facts")
	for _, want := range []string{"www.unfiled-shop.cn", "unfiled-shop.cn", "备案库中没有这个域名的记录"} {
		if !strings.Contains(facts, want) {
			t.Errorf("explain details lack %q:\n%s", want, facts)
		}
	}
	b.Screenshot(t, "02-explain-unfiled")

	// A filed site shows its record.
	b.Do(t, "explain filed.cn",
		chromedp.SetValue(id("explain-host"), "www.filed.cn"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#explain-verdict[data-reason="filed"]`)),
	)
	facts = b.Text(t, "#explain-result dl.facts")
	for _, want := range []string{"京ICP备10206937号-1", "北京测试科技有限公司", "企业", "已备案"} {
		if !strings.Contains(facts, want) {
			t.Errorf("filed record lacks %q:\n%s", want, facts)
		}
	}
	if n := browsertest.Run(t, b, "allow button", chromedp.Evaluate[int](`document.querySelectorAll("#explain-allow").length`)); n != 0 {
		t.Errorf("a filed site offers a whitelist button")
	}

	// Back to the unfiled one, and whitelist it from there.
	b.Do(t, "explain and whitelist",
		chromedp.SetValue(id("explain-host"), "www.unfiled-shop.cn"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#explain-verdict[data-reason="unfiled"]`)),
		chromedp.Click(id("explain-allow")),
		chromedp.WaitVisible(id("ov-form")),
	)
	if got := browsertest.Run(t, b, "prefilled host", chromedp.Value(id("ov-host"))); got != "unfiled-shop.cn" {
		t.Errorf("prefilled host: got %q, want the registrable domain unfiled-shop.cn", got)
	}
	if got := browsertest.Run(t, b, "focus", chromedp.Evaluate[string](`document.activeElement.id`)); got != "ov-ticket" {
		t.Errorf("focus after prefill: got %q, want ov-ticket", got)
	}
	b.Do(t, "submit without a ticket",
		chromedp.SendKeys(id("ov-reason"), "接入备案已通过初审"),
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(css(`#ov-ticket[aria-invalid="true"]`)),
		chromedp.WaitVisible(id("ov-ticket-err")),
	)
	b.Do(t, "whitelist for 30 days",
		chromedp.SendKeys(id("ov-ticket"), "SR-2026-1182"),
		chromedp.Click(id("ov-ttl-30")),
	)
	b.Screenshot(t, "03-whitelist-form")
	b.Do(t, "submit",
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(css("#ov-msg.msg-ok")),
		chromedp.WaitVisible(css(`#ov-table tr[data-host="unfiled-shop.cn"]`)),
	)
	o, ok := env.override(t, "unfiled-shop.cn")
	if !ok || o.Ticket != "SR-2026-1182" || o.CreatedBy != "li.wei" || o.Scope != "domain" || o.Expires == nil {
		t.Fatalf("stored override: got %+v (found %v)", o, ok)
	}
	if d := time.Until(*o.Expires); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("30-day preset stored expiry in %v", d)
	}
	if d := env.reg.Decide("www.unfiled-shop.cn"); d.Verdict != registry.Pass {
		t.Errorf("registry after whitelisting: got %v %s, want pass", d.Verdict, d.Reason)
	}
	b.Screenshot(t, "04-whitelist-list")

	// The server's own checks: a public suffix is refused with the field
	// named (highlighted, message verbatim).
	b.Do(t, "whitelist a public suffix",
		chromedp.SetValue(id("ov-host"), "com.cn"),
		chromedp.SetValue(id("ov-ticket"), "SR-1"),
		chromedp.SetValue(id("ov-reason"), "test"),
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(css(`#ov-msg.msg-error[data-code="invalid/host_public_suffix"] .err-detail`)),
		chromedp.WaitVisible(css(`#ov-host[aria-invalid="true"]`)),
	)
	// A blacklisted domain: 422, never.
	b.Do(t, "whitelist a blacklisted domain",
		chromedp.SetValue(id("ov-host"), "blacklisted.cn"),
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(css(`#ov-msg.msg-error`)),
	)
	if got := b.Text(t, "#ov-msg .err-summary"); got != "按规定不允许这样做。" {
		t.Errorf("422 summary: got %q", got)
	}
	// A cancelled filing: 409, confirmed in a dialog. Esc first (nothing
	// added), then OK.
	b.Do(t, "whitelist a cancelled domain, cancel",
		chromedp.SetValue(id("ov-host"), "cancelled.cn"),
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(id("dlg")),
	)
	if got := b.Text(t, "#dlg-body"); !strings.Contains(got, "备案已注销") {
		t.Errorf("confirmation dialog: got %q, want the state in words", got)
	}
	b.Screenshot(t, "05-confirm-dialog")
	b.Do(t, "Esc closes the dialog",
		chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotVisible(id("dlg")),
		chromedp.WaitVisible(css("#ov-msg.msg-info")),
	)
	if _, ok := env.override(t, "cancelled.cn"); ok {
		t.Fatal("cancelled.cn was whitelisted although the dialog was dismissed")
	}
	b.Do(t, "whitelist a cancelled domain, confirm",
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(id("dlg")),
		chromedp.Click(id("dlg-ok")),
		chromedp.WaitVisible(css(`#ov-table tr[data-host="cancelled.cn"]`)),
	)
	if _, ok := env.override(t, "cancelled.cn"); !ok {
		t.Fatal("cancelled.cn not whitelisted after confirming")
	}

	// The explain view now shows the override that decided.
	b.Do(t, "explain the whitelisted host",
		chromedp.Navigate(env.url+"/console/#explain?host=shop.unfiled-shop.cn"),
		chromedp.WaitVisible(css(`#explain-verdict[data-reason="override_allow"]`)),
	)
	if got := b.Text(t, "#explain-result dl.facts"); !strings.Contains(got, "SR-2026-1182") || !strings.Contains(got, "li.wei") {
		t.Errorf("explain lacks the matched override:\n%s", got)
	}
	b.Screenshot(t, "06-explain-whitelisted")

	// Extend to 90 days.
	row := `#ov-table tr[data-host="unfiled-shop.cn"]`
	b.Do(t, "extend",
		chromedp.Click(id("tab-overrides")),
		chromedp.WaitVisible(css(row)),
		chromedp.Click(css(row+` button[data-op="extend"]`)),
		chromedp.WaitVisible(id("dlg")),
		chromedp.Click(id("ext-90")),
		chromedp.Click(id("dlg-ok")),
		chromedp.WaitVisible(css("#ov-list-msg.msg-ok")),
	)
	o, _ = env.override(t, "unfiled-shop.cn")
	if d := time.Until(*o.Expires); d < 89*24*time.Hour {
		t.Errorf("after extending by 90 days the override expires in %v", d)
	}
	// Times read on the gateway's clock (Asia/Shanghai by default) with
	// their offset, whatever zone the browser runs in.
	if got, want := b.Text(t, "#ov-list-msg"), o.Expires.In(time.FixedZone("", 8*3600)).Format("2006-01-02 15:04 +08:00"); !strings.Contains(got, want) {
		t.Errorf("extend message %q, want the expiry as %q", got, want)
	}

	// Someone else changes it behind the console's back: removing it
	// then answers 412, the console says so and reloads; the second try
	// removes it.
	if st := env.apiAs(t, "wang.fang", "PATCH", "/v1/overrides/"+o.ID, fmt.Sprintf(`"%d"`, o.Version), `{"reason":"客户补充了材料"}`, nil); st != http.StatusOK {
		t.Fatalf("PATCH by another person: status %d", st)
	}
	b.Do(t, "remove a stale row",
		chromedp.Click(css(row+` button[data-op="remove"]`)),
		chromedp.WaitVisible(id("dlg")),
		chromedp.Click(id("dlg-ok")),
		chromedp.WaitVisible(css("#ov-list-msg.msg-error")),
	)
	if got := b.Text(t, "#ov-list-msg .err-summary"); !strings.Contains(got, "别人刚刚修改了这个条目") {
		t.Errorf("412 message: got %q", got)
	}
	if got := b.Text(t, row); !strings.Contains(got, "客户补充了材料") {
		t.Errorf("after a 412 the list shows the stored row; got %q", got)
	}
	b.Screenshot(t, "07-conflict")
	b.Do(t, "remove again",
		chromedp.Click(css(row+` button[data-op="remove"]`)),
		chromedp.WaitVisible(id("dlg")),
		chromedp.Click(id("dlg-ok")),
		chromedp.WaitVisible(css("#ov-list-msg.msg-ok")),
		chromedp.WaitNotPresent(css(row)),
	)
	if d := env.reg.Decide("www.unfiled-shop.cn"); d.Reason != registry.ReasonUnfiled {
		t.Errorf("registry after removing: got %s, want unfiled", d.Reason)
	}

	// The audit log has all of it.
	b.Do(t, "audit log",
		chromedp.Click(id("tab-audit")),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="override.create"][data-who="li.wei"][data-host="unfiled-shop.cn"][data-outcome="ok"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="override.create"][data-host="blacklisted.cn"][data-outcome="rejected"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="override.update"][data-who="wang.fang"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="override.delete"][data-who="li.wei"][data-outcome="ok"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="login"][data-who="li.wei"]`)),
	)
	// One page of fewer than 50 entries: no way back or forward, page 1.
	if got := browsertest.Run(t, b, "audit pager", chromedp.Evaluate[string](
		`[document.getElementById("audit-prev").disabled, document.getElementById("audit-next").disabled,
		  document.getElementById("audit-page").textContent.includes("1")].join()`)); got != "true,true,true" {
		t.Errorf("audit pager (prev disabled, next disabled, page 1): got %s", got)
	}
	b.Do(t, "audit details",
		chromedp.Click(css(`#audit-table tr[data-action="override.create"][data-host="unfiled-shop.cn"][data-outcome="ok"] button`)),
		chromedp.WaitVisible(css(`#audit-table tr.detail:not([hidden]) pre.json`)),
	)
	b.Screenshot(t, "08-audit")
	b.Do(t, "filter the audit log",
		chromedp.SetValue(id("audit-action"), "override.delete"),
		chromedp.Submit(id("audit-filter")),
		chromedp.WaitNotPresent(css(`#audit-table tr[data-action="login"]`)),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="override.delete"]`)),
	)

	// Top blocked domains and the CSV.
	b.Do(t, "report",
		chromedp.Click(id("tab-report")),
		chromedp.WaitVisible(css(`#report-table tr[data-domain="unfiled-shop.cn"]`)),
	)
	if got := b.Text(t, `#report-table tr[data-domain="unfiled-shop.cn"]`); !strings.Contains(got, "203.0.113.7:443") || !strings.Contains(got, "5") {
		t.Errorf("report row: got %q", got)
	}
	b.Screenshot(t, "09-report")
	// Decoded keeping a byte order mark (text() would drop it): Excel on
	// Chinese Windows needs the mark to read UTF-8.
	csv := browsertest.Run(t, b, "CSV download", chromedp.Evaluate[string](`fetch(document.getElementById("report-csv").href).then(r => r.arrayBuffer()).then(a => new TextDecoder("utf-8", {ignoreBOM: true}).decode(a))`,
		chromedp.EvalAwaitPromise))
	if !strings.HasPrefix(csv, "\ufeffdomain,reason,hits,hits_error,first_seen,last_seen,destinations") || !strings.Contains(csv, "unfiled-shop.cn") {
		t.Errorf("CSV: got %q, want it to start with a UTF-8 byte order mark and the header", csv)
	}

	// English, remembered across a reload.
	b.Do(t, "switch to English",
		chromedp.Click(id("tab-explain")),
		chromedp.Click(id("lang-switch")),
	)
	if got := b.Text(t, "#tab-explain"); got != "Look up a domain" {
		t.Errorf("English tab label: got %q", got)
	}
	b.Do(t, "reload in English",
		chromedp.Navigate(env.url+"/console/#explain?host=elsewhere.cn"),
		chromedp.WaitVisible(css(`#explain-verdict[data-reason="no_access"]`)),
	)
	if got := b.Text(t, "#explain-verdict .verdict-reason"); !strings.HasPrefix(got, "Not filed with us") {
		t.Errorf("English reason after reload: got %q", got)
	}
	if got := browsertest.Run(t, b, "html lang", chromedp.Evaluate[string](`document.documentElement.lang`)); got != "en" {
		t.Errorf("html lang: got %q, want en", got)
	}
	b.Screenshot(t, "10-explain-english")

	// A narrow window: nothing sticks out sideways.
	b.Do(t, "narrow window", chromedp.EmulateViewport(390, 844))
	b.Screenshot(t, "11-narrow")
	if over := browsertest.Run(t, b, "overflow", chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`)); over > 0 {
		t.Errorf("at 390 px the page is %d px wider than the window", over)
	}
	b.Do(t, "back to Chinese, wide", chromedp.ResetViewport(), chromedp.Click(id("lang-switch")))

	// Sign out; a viewer sees no forms, and the server's 403 names the
	// role needed.
	b.Do(t, "sign out",
		chromedp.Click(id("signout")),
		chromedp.WaitVisible(id("signin-token")),
	)
	b.Do(t, "sign in as a viewer",
		chromedp.SetValue(id("signin-token"), env.secrets["zhao.min"]),
		chromedp.Click(id("signin-submit")),
		chromedp.WaitVisible(id("whoami")),
		chromedp.Click(id("tab-overrides")),
		chromedp.WaitVisible(id("ov-readonly")),
		chromedp.WaitNotVisible(id("ov-form")),
	)
	// The form is hidden from viewers, so send what it would send from the
	// page's own modules and let them show the answer.
	status := browsertest.Run(t, b, "viewer creates", chromedp.Evaluate[string](`(async () => {
		const { api } = await import("/console/api.js");
		const { showError } = await import("/console/ui.js");
		try {
			await api("POST", "/v1/overrides", { body: { host: "elsewhere.cn", action: "allow", ticket: "SR-9", reason: "x" } });
			return "created";
		} catch (e) {
			showError(document.getElementById("ov-list-msg"), e);
			return e.status + " " + e.needRole;
		}
	})()`, chromedp.EvalAwaitPromise))
	if status != "403 support" {
		t.Errorf("viewer create: got %q, want 403 support", status)
	}
	if got := b.Text(t, "#ov-list-msg .err-summary"); !strings.Contains(got, "客服（support）") {
		t.Errorf("403 message: got %q, want the role needed", got)
	}
	b.Screenshot(t, "12-viewer")

	if errs := b.PageErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}
