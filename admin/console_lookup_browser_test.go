package admin_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/internal/browsertest"
)

// TestConsoleLookupAndMessages drives, in headless Chromium, the look-up
// by filing number and by subject, the server's problems said in Chinese
// (never its English for a known code), a success banner that does not
// stay above a later error, the audit table's ticket and reason, and the
// page a browser gets under a Host the listener does not accept.
func TestConsoleLookupAndMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	env := startConsoleEnv(t)
	b := browsertest.New(t, 1280, 900)
	b.Do(t, "sign in",
		chromedp.Navigate(env.url+"/console/"),
		chromedp.WaitVisible(id("signin-token")),
		chromedp.SetValue(id("signin-token"), env.secrets["li.wei"]),
		chromedp.Click(id("signin-submit")),
		chromedp.WaitVisible(id("explain-host")),
	)

	// One box: a filing number in full-width lists its websites.
	b.Do(t, "look up a filing number",
		chromedp.SendKeys(id("explain-host"), "京ICP备１０２０６９３７号"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#search-result[data-kind="filing_number"] #search-table tr[data-domain="filed.cn"][data-verdict="pass"]`)),
	)
	if got := b.Text(t, "#search-result"); !strings.Contains(got, "京ICP备10206937号") || !strings.Contains(got, "北京测试科技有限公司") || !strings.Contains(got, "放行") {
		t.Errorf("search by filing number: got %q", got)
	}
	b.Screenshot(t, "20-search-filing-number")
	b.Do(t, "open a found domain",
		chromedp.Click(css(`#search-table tr[data-domain="filed.cn"] a`)),
		chromedp.WaitVisible(css(`#explain-verdict[data-reason="filed"]`)),
	)
	// A subject name (part of it) lists the owner's websites.
	b.Do(t, "look up a subject",
		chromedp.SetValue(id("explain-host"), "上海某某"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#search-result[data-kind="subject"] tr[data-domain="elsewhere.cn"][data-reason="no_access"]`)),
	)
	if got := b.Text(t, `#search-table tr[data-domain="elsewhere.cn"]`); !strings.Contains(got, "沪ICP备12345678号-3") || !strings.Contains(got, "拦截") {
		t.Errorf("search by subject: row %q", got)
	}
	b.Screenshot(t, "21-search-subject")
	b.Do(t, "a subject nobody has",
		chromedp.SetValue(id("explain-host"), "没有这家公司"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(id("search-empty")),
	)

	// A malformed filing number: the server's problem in Chinese, and no
	// English.
	b.Do(t, "look up a bad filing number",
		chromedp.SetValue(id("explain-host"), "京ICP备123号"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#explain-msg.msg-error[data-code="invalid/filing_number"]`)),
	)
	if got := b.Text(t, "#explain-msg .err-detail"); !strings.Contains(got, "备案号格式不对") {
		t.Errorf("bad filing number: detail %q", got)
	}
	if n := browsertest.Run(t, b, "English shown", chromedp.Evaluate[int](`document.querySelectorAll("#explain-msg .err-server").length`)); n != 0 {
		t.Errorf("bad filing number: the server's English is shown: %q", b.Text(t, "#explain-msg"))
	}

	// Whitelist: a success, then a reason with a bidi control (refused by
	// the server, said in Chinese with the character's position); the
	// error replaces the success.
	b.Do(t, "whitelist",
		chromedp.Click(id("tab-overrides")),
		chromedp.WaitVisible(id("ov-form")),
		chromedp.SetValue(id("ov-host"), "unfiled-shop.cn"),
		chromedp.SetValue(id("ov-ticket"), "SR-2026-2001"),
		chromedp.SetValue(id("ov-reason"), "接入备案已通过初审"),
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(css("#ov-msg.msg-ok")),
		chromedp.WaitVisible(css(`#ov-table tr[data-host="unfiled-shop.cn"]`)),
	)
	b.Do(t, "whitelist with a bidi control",
		chromedp.SetValue(id("ov-host"), "elsewhere.cn"),
		chromedp.SetValue(id("ov-ticket"), "SR-2026-2002"),
		chromedp.SetValue(id("ov-reason"), "初审\u202e通过"),
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(css(`#ov-msg.msg-error[data-code="invalid/unsafe_char"]`)),
		chromedp.WaitVisible(css(`#ov-reason[aria-invalid="true"]`)),
	)
	detail := b.Text(t, "#ov-msg .err-detail")
	if !strings.Contains(detail, "原因只能是一行普通文字") || !strings.Contains(detail, "第 3 个字符") || !strings.Contains(detail, "U+202E") {
		t.Errorf("unsafe character: detail %q", detail)
	}
	if got := b.Text(t, "#ov-reason-err"); got != detail {
		t.Errorf("unsafe character: under the field %q, want %q", got, detail)
	}
	if n := browsertest.Run(t, b, "stale success", chromedp.Evaluate[int](`document.querySelectorAll("#view-overrides .msg-ok:not([hidden])").length`)); n != 0 {
		t.Errorf("a success message stays beside the error")
	}
	b.Screenshot(t, "22-unsafe-char")

	// A success in the form, then a failed removal below it (someone else
	// changed the row): only the error is left, the status line too.
	o, ok := env.override(t, "unfiled-shop.cn")
	if !ok {
		t.Fatal("unfiled-shop.cn not whitelisted")
	}
	b.Do(t, "whitelist another",
		chromedp.SetValue(id("ov-reason"), "接入备案已通过初审"),
		chromedp.Click(id("ov-submit")),
		chromedp.WaitVisible(css("#ov-msg.msg-ok")),
		chromedp.WaitVisible(id("status")),
	)
	if st := env.apiAs(t, "wang.fang", "PATCH", "/v1/overrides/"+o.ID, fmt.Sprintf(`"%d"`, o.Version), `{"ticket":"SR-2026-2003"}`, nil); st != http.StatusOK {
		t.Fatalf("PATCH by another person: status %d", st)
	}
	row := `#ov-table tr[data-host="unfiled-shop.cn"]`
	b.Do(t, "remove a stale row",
		chromedp.Click(css(row+` button[data-op="remove"]`)),
		chromedp.WaitVisible(id("dlg")),
		chromedp.Click(id("dlg-ok")),
		chromedp.WaitVisible(css(`#ov-list-msg.msg-error[data-code="conflict"]`)),
	)
	if got := browsertest.Run(t, b, "banners", chromedp.Evaluate[string](
		`[document.getElementById("ov-msg").hidden, document.getElementById("status").hidden].join()`)); got != "true,true" {
		t.Errorf("after a failed removal (success hidden, status hidden): got %s", got)
	}
	b.Screenshot(t, "23-error-replaces-success")

	// The audit table has ticket and reason columns, for changes and
	// refused attempts alike.
	b.Do(t, "audit",
		chromedp.Click(id("tab-audit")),
		chromedp.WaitVisible(css(`#audit-table tr[data-action="override.create"][data-host="unfiled-shop.cn"][data-outcome="ok"]`)),
	)
	cells := browsertest.Run(t, b, "audit cells", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#audit-table tr[data-action]")].map(r =>
		r.dataset.action + " " + r.dataset.host + " " + r.dataset.outcome + " | " + r.querySelector("td.ticket").textContent + " | " + r.querySelector("td.reason").textContent)`))
	for _, want := range []string{
		"override.create unfiled-shop.cn ok | SR-2026-2001 | 接入备案已通过初审",
		"override.create elsewhere.cn rejected | SR-2026-2002 | 初审\u202e通过",
		"override.update unfiled-shop.cn ok | SR-2026-2003 | 接入备案已通过初审",
	} {
		found := false
		for _, c := range cells {
			found = found || c == want
		}
		if !found {
			t.Errorf("audit: no row %q in\n%s", want, strings.Join(cells, "\n"))
		}
	}
	if got := b.Text(t, "#audit-table thead"); !strings.Contains(got, "工单号") || !strings.Contains(got, "原因") {
		t.Errorf("audit header: %q", got)
	}
	b.Screenshot(t, "24-audit-ticket-reason")

	// Under a name not in admin.hosts (Chromium resolves *.localhost to
	// loopback): a readable page, not JSON.
	port := env.url[strings.LastIndexByte(env.url, ':')+1:]
	b.Do(t, "open under an unknown name",
		chromedp.Navigate("http://console.localhost:"+port+"/console/"),
		chromedp.WaitVisible(id("host-zh")),
	)
	page := b.Text(t, "body")
	for _, want := range []string{"无法通过这个地址打开控制台", "console.localhost:" + port, "admin.hosts", "This address cannot open the console"} {
		if !strings.Contains(page, want) {
			t.Errorf("unknown-host page lacks %q:\n%s", want, page)
		}
	}
	b.Screenshot(t, "25-unknown-host")

	if errs := b.PageErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
	_ = admin.RoleViewer
}
