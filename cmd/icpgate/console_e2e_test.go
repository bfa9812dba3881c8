package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/icpgate/icpgate/internal/browsertest"
)

// TestConsoleEndToEnd is issue #5's acceptance test: a real gateway (file
// mode, admin.state and admin.tokens_file in a temporary directory, an
// HTTP listener in front of a real origin), a support token made by
// `icpgate token create`, and the support console in headless Chromium.
// Support signs in, sees why an unfiled host is blocked, whitelists it
// with a ticket and a reason, the gateway then passes a real request for
// it to the origin, and the audit log shows who did it. Screenshots go to
// $ICPGATE_SCREENSHOTS when it is set.
func TestConsoleEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway and Chromium")
	}
	browsertest.ExecPath(t) // skip (or, in CI, fail) before starting anything
	o := startOrigin(t)
	dir := t.TempDir()
	path := fileModeConfig(t, dir, o)
	g := runServe(t, path)
	web := g.ProxyAddr("web").String()
	console := "http://" + g.AdminAddr().String() + "/"

	// The token comes from the product's own command, as an admin would
	// make it; the gateway picks it up without a restart.
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"token", "create", "-config", path, "--role", "support", "--name", "li.wei"}, &out, &errb); code != exitOK {
		t.Fatalf("token create: exit %d: %s", code, errb.String())
	}
	secret := strings.TrimSpace(out.String())

	// Before: blocked, and the origin never sees the request.
	if code, reason, _ := httpGet(t, web, "www.unfiled.cn"); code != 403 || reason != "unfiled" {
		t.Fatalf("before whitelisting: got %d %q, want 403 unfiled", code, reason)
	}
	if n := o.seen()["http:www.unfiled.cn"]; n != 0 {
		t.Fatalf("the origin saw %d blocked requests", n)
	}

	b := browsertest.New(t, 1280, 900)
	b.Do(t, "sign in",
		chromedp.Navigate(console),
		chromedp.WaitVisible(chromedp.ID("signin-token")),
		chromedp.SetValue(chromedp.ID("signin-token"), secret),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("whoami")),
	)
	if got := b.Text(t, "#whoami"); !strings.Contains(got, "li.wei") {
		t.Errorf("signed in as %q, want li.wei", got)
	}

	b.Do(t, "explain the blocked host",
		chromedp.SendKeys(chromedp.ID("explain-host"), "http://www.unfiled.cn/index.html"),
		chromedp.Click(chromedp.ID("explain-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#explain-verdict[data-reason="unfiled"]`)),
	)
	if got := b.Text(t, "#explain-verdict"); !strings.Contains(got, "网站未备案") || !strings.Contains(got, "www.unfiled.cn") {
		t.Errorf("verdict: got %q, want 网站未备案 for www.unfiled.cn", got)
	}
	b.Screenshot(t, "e2e-01-explain-unfiled")

	b.Do(t, "whitelist it",
		chromedp.Click(chromedp.ID("explain-allow")),
		chromedp.WaitVisible(chromedp.ID("ov-form")),
		chromedp.SendKeys(chromedp.ID("ov-ticket"), "SR-2026-1182"),
		chromedp.SendKeys(chromedp.ID("ov-reason"), "接入备案已通过初审"),
	)
	b.Screenshot(t, "e2e-02-whitelist-form")
	b.Do(t, "submit",
		chromedp.Click(chromedp.ID("ov-submit")),
		chromedp.WaitVisible(chromedp.CSS("#ov-msg.msg-ok")),
		chromedp.WaitVisible(chromedp.CSS(`#ov-table tr[data-host="unfiled.cn"]`)),
	)
	b.Screenshot(t, "e2e-03-whitelisted")

	// The gateway passes it now: a real request reaches the origin.
	code, reason, body := httpGet(t, web, "www.unfiled.cn")
	if code != 200 || reason != "" || !strings.Contains(body, "origin saw www.unfiled.cn") {
		t.Fatalf("after whitelisting: got %d %q %q, want 200 from the origin", code, reason, body)
	}
	if n := o.seen()["http:www.unfiled.cn"]; n != 1 {
		t.Errorf("the origin saw %d requests for www.unfiled.cn, want 1", n)
	}

	// The audit log names the person and the action.
	entry := `#audit-table tr[data-action="override.create"][data-who="li.wei"][data-host="unfiled.cn"][data-outcome="ok"]`
	b.Do(t, "find the audit entry",
		chromedp.Click(chromedp.ID("tab-audit")),
		chromedp.WaitVisible(chromedp.CSS(entry)),
	)
	if got := b.Text(t, entry); !strings.Contains(got, "添加条目") {
		t.Errorf("audit row: got %q", got)
	}
	b.Screenshot(t, "e2e-04-audit")

	// The blocked request earlier is in the top-blocked report.
	b.Do(t, "top blocked",
		chromedp.Click(chromedp.ID("tab-report")),
		chromedp.WaitVisible(chromedp.CSS(`#report-table tr[data-domain="unfiled.cn"]`)),
	)
	b.Screenshot(t, "e2e-05-report")

	b.Do(t, "switch to English", chromedp.Click(chromedp.ID("lang-switch")))
	if got := b.Text(t, "#tab-audit"); got != "Audit log" {
		t.Errorf("English tab label: got %q, want Audit log", got)
	}
	if got := b.Text(t, "#h-report"); got != "Top blocked domains" {
		t.Errorf("English heading: got %q, want Top blocked domains", got)
	}
	b.Screenshot(t, "e2e-06-report-english")

	if errs := b.PageErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}
