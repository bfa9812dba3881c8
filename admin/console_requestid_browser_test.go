package admin_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/icpgate/icpgate/internal/blockid"
	"github.com/icpgate/icpgate/internal/browsertest"
)

// TestConsoleRequestID drives, in headless Chromium, the look-up of a
// block page's request ID in the one box: read out in lower case with
// spaces, it shows the gateway, the reason and the report's candidate;
// the address the visitor names is verified; a mistyped ID is said in
// Chinese; an old 16-hex one says it carries no details.
func TestConsoleRequestID(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	env := startConsoleEnv(t)
	rid := blockid.New(env.started, blockid.NodeTag(env.node), "unfiled", "www.unfiled-shop.cn", "unfiled-shop.cn").String()
	b := browsertest.New(t, 1280, 900)
	b.Do(t, "sign in",
		chromedp.Navigate(env.url+"/console/"),
		chromedp.WaitVisible(id("signin-token")),
		chromedp.SetValue(id("signin-token"), env.secrets["zhao.min"]),
		chromedp.Click(id("signin-submit")),
		chromedp.WaitVisible(id("explain-host")),
	)

	typed := strings.ToLower(strings.ReplaceAll(rid, "-", " "))
	b.Do(t, "look up a request ID",
		chromedp.SetValue(id("explain-host"), typed),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#rid-result[data-host="candidates"] #rid-candidates li[data-domain="unfiled-shop.cn"]`)),
	)
	if got := b.Text(t, "#rid-result"); !strings.Contains(got, rid) || !strings.Contains(got, "gw-bj-1（本网关）") || !strings.Contains(got, "www.unfiled-shop.cn") {
		t.Errorf("request ID: got %q, want the ID, this gateway and the candidate", got)
	}
	if got := b.Text(t, `#rid-reason[data-reason="unfiled"]`); got == "" {
		t.Errorf("request ID: no unfiled reason shown")
	}
	if got := b.Text(t, "#rid-tell"); got == "" {
		t.Errorf("request ID: nothing to tell the visitor")
	}
	b.Screenshot(t, "30-request-id")

	b.Do(t, "verify the address the visitor names",
		chromedp.SetValue(id("rid-host"), "unfiled-shop.cn"),
		chromedp.Click(id("rid-verify-submit")),
		chromedp.WaitVisible(css(`#rid-result[data-host="verified"] #rid-host-answer`)),
	)
	if got := b.Text(t, "#rid-host-answer"); !strings.Contains(got, "www.unfiled-shop.cn") || !strings.Contains(got, "已核实") {
		t.Errorf("verified: got %q", got)
	}
	b.Do(t, "an address the ID is not for",
		chromedp.SetValue(id("rid-host"), "elsewhere.cn"),
		chromedp.Click(id("rid-verify-submit")),
		chromedp.WaitVisible(css(`#rid-result[data-host="mismatch"]`)),
	)

	typo := []byte(rid)
	typo[2] = map[bool]byte{true: '1', false: '0'}[typo[2] == '0']
	b.Do(t, "a mistyped request ID",
		chromedp.SetValue(id("explain-host"), string(typo)),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(css(`#explain-msg.msg-error[data-code="invalid/id_check"]`)),
	)
	if got := b.Text(t, "#explain-msg .err-detail"); !strings.Contains(got, "抄错") {
		t.Errorf("mistyped ID: detail %q", got)
	}

	b.Do(t, "an old request ID",
		chromedp.SetValue(id("explain-host"), "0123456789abcdef"),
		chromedp.Click(id("explain-submit")),
		chromedp.WaitVisible(id("rid-legacy")),
	)
	if got := b.Text(t, "#rid-legacy"); !strings.Contains(got, "不含任何信息") {
		t.Errorf("old ID: got %q", got)
	}
}
