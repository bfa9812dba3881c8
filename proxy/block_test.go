package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

var updateBlockGolden = flag.Bool("update-block", false, "rewrite golden files")

// httpAllReasons is the closed set of reason codes.
var httpAllReasons = []string{
	"filed", "access_pending", "rectifying", "rectification_overdue", "no_access",
	"filing_pending", "cancelled", "access_revoked", "blacklisted", "unfiled",
	"suffix_not_fileable", "ip_access", "invalid_host", "override_allow", "override_deny",
}

var httpBlockTime = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

func writeBlockResponse(t *testing.T, req BlockRequest) (*http.Response, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteBlock(&buf, req); err != nil {
		t.Fatal(err)
	}
	var method *http.Request
	if req.HeadOnly {
		method = &http.Request{Method: "HEAD"}
	}
	resp, err := http.ReadResponse(bufio.NewReader(&buf), method)
	if err != nil {
		t.Fatalf("reading block response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// testPage is a page with every setting: provider details with characters
// that need escaping, Asia/Shanghai time, the node shown.
func testPage(t testing.TB) *BlockPage {
	t.Helper()
	p, err := NewBlockPage(Policy{
		Provider: Provider{
			Name:           "示例云 <Example & Cloud>",
			SupportContact: "400-000-0000 / support@example.com (9:00-18:00 \"+\")",
			SupportURL:     "https://support.example.com/ticket?src=block&lang=zh",
			FilingURL:      "https://beian.example.com/",
		},
		TimeZone: "Asia/Shanghai",
		ShowNode: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBlockPageGolden(t *testing.T) {
	tests := []struct {
		name, golden string
		page         *BlockPage
		req          BlockRequest
	}{
		{"default", "http_blockpage_unfiled.golden", nil, BlockRequest{
			Host:      "www.unfiled.cn",
			Decision:  Decision{Reason: "unfiled", Host: "www.unfiled.cn", Domain: "unfiled.cn"},
			RequestID: "0123456789abcdef",
			Node:      "edge-1",
			Time:      httpBlockTime,
		}},
		{"provider, IDN, node", "http_blockpage_configured.golden", testPage(t), BlockRequest{
			Host:      "www.xn--fsqu00a.xn--fiqs8s",
			Decision:  Decision{Reason: "no_access", Host: "www.xn--fsqu00a.xn--fiqs8s", Domain: "xn--fsqu00a.xn--fiqs8s", FilingNumber: "京ICP备10206937号-1"},
			RequestID: "0123456789abcdef",
			Node:      "edge-1",
			Time:      httpBlockTime,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Page = tc.page
			resp, body := writeBlockResponse(t, tc.req)
			golden := filepath.Join("testdata", tc.golden)
			if *updateBlockGolden {
				if err := os.WriteFile(golden, body, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("block page differs from %s (run with -update-block after checking):\ngot %q\nwant %q", golden, body, want)
			}
			for k, v := range map[string]string{
				"Content-Type":     "text/html; charset=utf-8",
				"Cache-Control":    "no-store",
				"X-Icpgate-Reason": tc.req.Decision.Reason,
				"X-Request-Id":     "0123456789abcdef",
				"Connection":       "close",
			} {
				if got := resp.Header.Get(k); got != v && !(k == "Connection" && resp.Close) {
					t.Errorf("%s: got %q, want %q", k, got, v)
				}
			}
			if resp.StatusCode != 403 {
				t.Errorf("status: got %d, want 403", resp.StatusCode)
			}
		})
	}
}

func TestBlockEscapesEcho(t *testing.T) {
	evil := `<script>alert("x")</script>.cn`
	for _, accept := range []string{"text/html", "application/json"} {
		t.Run(accept, func(t *testing.T) {
			_, body := writeBlockResponse(t, BlockRequest{
				Host:      evil,
				Decision:  Decision{Reason: "invalid_host"},
				RequestID: "1", Node: `<b>node</b>`, Accept: accept, Page: testPage(t),
			})
			if bytes.Contains(body, []byte("<script>")) || bytes.Contains(body, []byte("<b>")) || bytes.Contains(body, []byte("<Example")) {
				t.Fatalf("unescaped echo in %s body: %q", accept, body)
			}
			if accept == "application/json" {
				var d BlockPageData
				if err := json.Unmarshal(body, &d); err != nil {
					t.Fatal(err)
				}
				if d.Host != evil {
					t.Fatalf("got host %q, want %q", d.Host, evil)
				}
			} else if !bytes.Contains(body, []byte("&lt;script&gt;")) {
				t.Fatalf("escaped host missing from page: %q", body)
			}
		})
	}
}

func TestBlockJSON(t *testing.T) {
	tests := []struct {
		accept string
		json   bool
	}{
		{"", false},
		{"*/*", false},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"application/json", true},
		{"application/json, text/plain, */*", true},
		{"text/html;q=0.5, application/json;q=0.9", true},
		{"text/html, application/json;q=0.9", false},
		{"application/json;q=0", false},
		{"APPLICATION/JSON", true},
		{"application/*", true},
		{"text/*;q=0.1, application/json;q=0.2", true},
		{"text/html, */*", false},
		{"application/json, text/html", false},
	}
	for _, tc := range tests {
		t.Run(tc.accept, func(t *testing.T) {
			resp, body := writeBlockResponse(t, BlockRequest{
				Host:      "x.unfiled.cn",
				Decision:  Decision{Reason: "cancelled", Domain: "unfiled.cn", FilingNumber: "京ICP备10206937号-1"},
				RequestID: "abc", Node: "edge-1", Accept: tc.accept, Time: httpBlockTime,
			})
			got := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
			if got != tc.json {
				t.Fatalf("Accept %q: got json=%v, want %v", tc.accept, got, tc.json)
			}
			if !tc.json {
				return
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{
				"domain": "unfiled.cn", "reason": "cancelled", "request_id": "abc", "host": "x.unfiled.cn",
				"time": "2026-11-27T11:00:00+08:00", "filing_number": "京ICP备10206937号-1",
			} {
				if m[k] != v {
					t.Errorf("%s: got %q, want %q", k, m[k], v)
				}
			}
			// Not configured: no node, no provider, no Unicode names.
			for _, k := range []string{"node", "provider", "domain_unicode", "host_unicode"} {
				if v, ok := m[k]; ok {
					t.Errorf("%s: got %q, want it absent", k, v)
				}
			}
			for _, k := range []string{"message_zh", "message_en"} {
				if s, _ := m[k].(string); s == "" {
					t.Errorf("%s empty", k)
				}
			}
		})
	}
}

func TestBlockRedirect(t *testing.T) {
	resp, body := writeBlockResponse(t, BlockRequest{
		Host: "a&b.unfiled.cn", Decision: Decision{Reason: "no_access"}, RequestID: "id1",
		RedirectURL: "https://notice.example.com/icp?lang=zh",
	})
	if resp.StatusCode != 302 {
		t.Fatalf("got status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	for k, v := range map[string]string{"d": "a&b.unfiled.cn", "r": "no_access", "id": "id1", "lang": "zh"} {
		if got := q.Get(k); got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
	if len(body) != 0 || resp.Header.Get("X-Icpgate-Reason") != "no_access" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("redirect headers/body: %v %q", resp.Header, body)
	}
}

func TestBlockStatusAndHead(t *testing.T) {
	resp, body := writeBlockResponse(t, BlockRequest{Decision: Decision{Reason: "unfiled"}, Status: 451, HeadOnly: true})
	if resp.StatusCode != 451 || len(body) != 0 {
		t.Fatalf("got %d %q, want 451 and no body", resp.StatusCode, body)
	}
	resp, _ = writeBlockResponse(t, BlockRequest{Error: "upstream_unavailable", Status: 502, RedirectURL: "https://n.example/"})
	if resp.StatusCode != 502 || resp.Header.Get("X-Icpgate-Reason") != "upstream_unavailable" {
		t.Fatalf("error page: got %d %q", resp.StatusCode, resp.Header.Get("X-Icpgate-Reason"))
	}
}

func TestReasonTextsComplete(t *testing.T) {
	codes := append(append([]string{}, httpAllReasons...), "unknown", "bad_request", "header_too_large",
		"request_timeout", "method_not_allowed", "version_not_supported", "expectation_failed",
		"upstream_unavailable", "upstream_timeout")
	hasHan := func(s string) bool {
		return strings.IndexFunc(s, func(r rune) bool { return unicode.Is(unicode.Han, r) }) >= 0
	}
	for _, c := range codes {
		rt, ok := reasonTexts[c]
		if !ok {
			t.Errorf("%s: no text", c)
			continue
		}
		for _, s := range []string{rt.titleZh, rt.messageZh, rt.adviceZh} {
			if !hasHan(s) {
				t.Errorf("%s: Chinese text %q has no Chinese", c, s)
			}
		}
		for _, s := range []string{rt.titleEn, rt.messageEn, rt.adviceEn} {
			if s == "" || hasHan(s) {
				t.Errorf("%s: English text %q", c, s)
			}
		}
	}
	if len(reasonTexts) != len(codes) {
		t.Errorf("got %d texts, want %d", len(reasonTexts), len(codes))
	}
}

func TestLoadBlockPage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.html")
	os.WriteFile(good, []byte(`<p>{{.Reason}} {{.Host}} {{.RequestID}}</p>`), 0o644)
	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<p>{{.Nope}}</p>`), 0o644)
	p, err := LoadBlockPage(good)
	if err != nil {
		t.Fatal(err)
	}
	_, body := writeBlockResponse(t, BlockRequest{Host: "<i>", Decision: Decision{Reason: "unfiled"}, RequestID: "r1", Page: p})
	if got, want := string(body), "<p>unfiled &lt;i&gt; r1</p>"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := LoadBlockPage(bad); !errors.Is(err, ErrBlockPage) {
		t.Fatalf("bad template: got %v, want ErrBlockPage", err)
	}
	if _, err := LoadBlockPage(filepath.Join(dir, "missing.html")); !errors.Is(err, ErrBlockPage) {
		t.Fatalf("missing template: got %v, want ErrBlockPage", err)
	}
}

// TestNewBlockPageInvalid: each bad setting fails with ErrInvalidConfig
// and the field's YAML name.
func TestNewBlockPageInvalid(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<p>{{.Provider.Nope}}</p>`), 0o644)
	tests := []struct {
		name  string
		p     Policy
		field string
	}{
		{"unknown zone", Policy{TimeZone: "Asia/Beijing"}, "policy.time_zone"},
		{"zone offset", Policy{TimeZone: "+08:00"}, "policy.time_zone"},
		{"javascript url", Policy{Provider: Provider{SupportURL: "javascript:alert(1)"}}, "policy.provider.support_url"},
		{"relative url", Policy{Provider: Provider{SupportURL: "/support"}}, "policy.provider.support_url"},
		{"ftp url", Policy{Provider: Provider{FilingURL: "ftp://beian.example.com/"}}, "policy.provider.filing_url"},
		{"no host", Policy{Provider: Provider{FilingURL: "https:///beian"}}, "policy.provider.filing_url"},
		{"template field", Policy{BlockPage: bad}, "policy.block_page"},
		{"template missing", Policy{BlockPage: filepath.Join(dir, "missing.html")}, "policy.block_page"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBlockPage(tc.p)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(fmt.Sprint(err), tc.field+":") {
				t.Fatalf("got %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
			if strings.HasPrefix(tc.field, "policy.block_page") && !errors.Is(err, ErrBlockPage) {
				t.Fatalf("got %v, want ErrBlockPage too", err)
			}
		})
	}
	// The same errors stop a Server from being made.
	cfg := Config{Listeners: []ListenerConfig{{Name: "http", Protocol: "http", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1"}},
		Policy: Policy{TimeZone: "Mars/Olympus"}}
	if _, err := NewServer(cfg, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "policy.time_zone") {
		t.Fatalf("NewServer: got %v, want policy.time_zone", err)
	}
	for _, p := range []Policy{{}, {TimeZone: "UTC", ShowNode: true, Provider: Provider{SupportURL: "http://s.example/", FilingURL: "https://f.example/x?y=1"}}} {
		if _, err := NewBlockPage(p); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

// TestBlockPageTime: the page shows the time in the page's zone with its
// offset, the JSON body RFC 3339 with the same offset.
func TestBlockPageTime(t *testing.T) {
	tests := []struct {
		zone, page, json string
	}{
		{"", "2026-11-27 11:00:00 &#43;08:00", "2026-11-27T11:00:00+08:00"},
		{"Asia/Shanghai", "2026-11-27 11:00:00 &#43;08:00", "2026-11-27T11:00:00+08:00"},
		{"UTC", "2026-11-27 03:00:00 &#43;00:00", "2026-11-27T03:00:00Z"},
		{"Asia/Kolkata", "2026-11-27 08:30:00 &#43;05:30", "2026-11-27T08:30:00+05:30"},
		{"America/New_York", "2026-11-26 22:00:00 -05:00", "2026-11-26T22:00:00-05:00"},
	}
	for _, tc := range tests {
		t.Run(tc.zone, func(t *testing.T) {
			p, err := NewBlockPage(Policy{TimeZone: tc.zone})
			if err != nil {
				t.Fatal(err)
			}
			req := BlockRequest{Host: "unfiled.cn", Decision: Decision{Reason: "unfiled"}, RequestID: "r", Time: httpBlockTime, Page: p}
			_, body := writeBlockResponse(t, req)
			if want := "<dt>时间 Time</dt><dd>" + tc.page + "</dd>"; !strings.Contains(string(body), want) {
				t.Errorf("page: want %q in %q", want, body)
			}
			req.Accept = "application/json"
			_, body = writeBlockResponse(t, req)
			var d BlockPageData
			if err := json.Unmarshal(body, &d); err != nil {
				t.Fatal(err)
			}
			if d.TimeRFC3339 != tc.json {
				t.Errorf("json time: got %q, want %q", d.TimeRFC3339, tc.json)
			}
		})
	}
}

// TestBlockPageIDN: A-labels are shown in Unicode with the A-label beside
// them, escaped; names that do not convert are shown as received.
func TestBlockPageIDN(t *testing.T) {
	tests := []struct {
		host, domain string
		want         []string
		notWant      []string
	}{
		{"www.xn--fsqu00a.xn--fiqs8s", "xn--fsqu00a.xn--fiqs8s", []string{
			"<dd>例子.中国 (xn--fsqu00a.xn--fiqs8s)</dd>", "<dd>www.例子.中国 (www.xn--fsqu00a.xn--fiqs8s)</dd>"}, nil},
		{"WWW.XN--FSQU00A.XN--FIQS8S:8080", "xn--fsqu00a.xn--fiqs8s", []string{
			"<dd>www.例子.中国:8080 (WWW.XN--FSQU00A.XN--FIQS8S:8080)</dd>"}, nil},
		{"xn--55qx5d.cn", "xn--55qx5d.cn", []string{"<dd>公司.cn (xn--55qx5d.cn)</dd>"}, nil},
		{"www.unfiled.cn", "unfiled.cn", []string{"<dd>unfiled.cn</dd>", "<dd>www.unfiled.cn</dd>"}, []string{"("}},
		// Not valid punycode, or converting to a name the lookup profile
		// refuses: shown as received, never half-converted.
		{"xn--zz.cn", "xn--zz.cn", []string{"<dd>xn--zz.cn</dd>"}, []string{"(xn--"}},
		{"xn--<b>.cn", "", []string{"<dd>xn--&lt;b&gt;.cn</dd>"}, []string{"<b>", "(xn--"}},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			_, body := writeBlockResponse(t, BlockRequest{Host: tc.host, Decision: Decision{Reason: "unfiled", Domain: tc.domain}, RequestID: "r"})
			dl := string(body[bytes.Index(body, []byte("<dl>")):])
			for _, w := range tc.want {
				if !strings.Contains(dl, w) {
					t.Errorf("want %q in %q", w, dl)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(dl, w) {
					t.Errorf("do not want %q in %q", w, dl)
				}
			}
		})
	}
	_, body := writeBlockResponse(t, BlockRequest{Host: "www.xn--fsqu00a.xn--fiqs8s", Decision: Decision{Reason: "unfiled", Domain: "xn--fsqu00a.xn--fiqs8s"}, Accept: "application/json"})
	var d BlockPageData
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Domain != "xn--fsqu00a.xn--fiqs8s" || d.DomainUnicode != "例子.中国" || d.HostUnicode != "www.例子.中国" {
		t.Errorf("json: got domain %q/%q host %q, want the A-labels and the Unicode forms", d.Domain, d.DomainUnicode, d.HostUnicode)
	}
}

// TestBlockPageNode: the node is on neither the page, the JSON body nor a
// header unless ShowNode is set; the request ID always is.
func TestBlockPageNode(t *testing.T) {
	shown, err := NewBlockPage(Policy{ShowNode: true})
	if err != nil {
		t.Fatal(err)
	}
	provider, err := NewBlockPage(Policy{Provider: Provider{Name: "示例云", SupportContact: "400-000-0000"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		page *BlockPage
		want bool
	}{{"default", nil, false}, {"provider only", provider, false}, {"show_node", shown, true}, {"everything", testPage(t), true}} {
		for _, accept := range []string{"", "application/json"} {
			t.Run(tc.name+"/"+accept, func(t *testing.T) {
				resp, body := writeBlockResponse(t, BlockRequest{
					Host: "unfiled.cn", Decision: Decision{Reason: "unfiled"}, RequestID: "req-1",
					Node: "gw-internal-7", Accept: accept, Page: tc.page,
				})
				if got := bytes.Contains(body, []byte("gw-internal-7")); got != tc.want {
					t.Errorf("node in body: got %v, want %v: %q", got, tc.want, body)
				}
				if !bytes.Contains(body, []byte("req-1")) || resp.Header.Get("X-Request-Id") != "req-1" {
					t.Errorf("request ID missing: %v %q", resp.Header, body)
				}
				for k, vs := range resp.Header {
					if strings.Contains(strings.Join(vs, " "), "gw-internal-7") {
						t.Errorf("header %s carries the node", k)
					}
				}
			})
		}
	}
}

// TestBlockPageProvider: the provider's fields are on the page, escaped,
// and in the JSON body; without them the page has no contact list.
func TestBlockPageProvider(t *testing.T) {
	req := BlockRequest{Host: "unfiled.cn", Decision: Decision{Reason: "unfiled"}, RequestID: "r", Page: testPage(t)}
	_, body := writeBlockResponse(t, req)
	for _, w := range []string{
		`<p class="provider">示例云 &lt;Example &amp; Cloud&gt;</p>`,
		`<p>400-000-0000 / support@example.com (9:00-18:00 &#34;&#43;&#34;)</p>`,
		`<a href="https://support.example.com/ticket?src=block&amp;lang=zh">`,
		`<a href="https://beian.example.com/">`,
	} {
		if !strings.Contains(string(body), w) {
			t.Errorf("want %q in %q", w, body)
		}
	}
	req.Accept = "application/json"
	_, body = writeBlockResponse(t, req)
	var d BlockPageData
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Provider != req.Page.provider {
		t.Errorf("json provider: got %+v, want %+v", d.Provider, req.Page.provider)
	}
	_, body = writeBlockResponse(t, BlockRequest{Host: "unfiled.cn", Decision: Decision{Reason: "unfiled"}, RequestID: "r"})
	for _, w := range []string{`class="provider"`, "<ul>", "<a "} {
		if strings.Contains(string(body), w) {
			t.Errorf("default page has %q: %q", w, body)
		}
	}
}

// TestBlockPageReplacement: the shipped template, copied to a file as
// docs/block-page.md says, renders exactly as the embedded page; a short
// replacement using every documented field loads and renders them.
func TestBlockPageReplacement(t *testing.T) {
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "copy.html")
	if err := os.WriteFile(copyPath, []byte(BlockPageTemplate()), 0o644); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, "own.html")
	var src strings.Builder
	for _, f := range blockPageFields() {
		fmt.Fprintf(&src, "%s=[{{%s}}]\n", f, f)
	}
	if err := os.WriteFile(own, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	settings := testPage(t)
	pol := Policy{Provider: settings.provider, TimeZone: "Asia/Shanghai", ShowNode: true}
	req := BlockRequest{
		Host:      "www.xn--fsqu00a.xn--fiqs8s",
		Decision:  Decision{Reason: "cancelled", Domain: "xn--fsqu00a.xn--fiqs8s", FilingNumber: "京ICP备10206937号-1"},
		RequestID: "0123456789abcdef", Node: "edge-1", Time: httpBlockTime,
	}

	pol.BlockPage = copyPath
	copied, err := NewBlockPage(pol)
	if err != nil {
		t.Fatal(err)
	}
	req.Page = settings
	_, want := writeBlockResponse(t, req)
	req.Page = copied
	_, got := writeBlockResponse(t, req)
	if !bytes.Equal(got, want) {
		t.Fatalf("copied template:\ngot  %q\nwant %q", got, want)
	}

	pol.BlockPage = own
	p, err := NewBlockPage(pol)
	if err != nil {
		t.Fatal(err)
	}
	req.Page = p
	_, body := writeBlockResponse(t, req)
	for _, w := range []string{
		".Status=[403]", ".Blocked=[true]", ".Domain=[xn--fsqu00a.xn--fiqs8s]", ".DomainUnicode=[例子.中国]",
		".Host=[www.xn--fsqu00a.xn--fiqs8s]", ".HostUnicode=[www.例子.中国]", ".Reason=[cancelled]",
		".RequestID=[0123456789abcdef]", ".Node=[edge-1]", ".Time=[2026-11-27 11:00:00 &#43;08:00]",
		".TimeRFC3339=[2026-11-27T11:00:00&#43;08:00]", ".FilingNumber=[京ICP备10206937号-1]",
		".TitleZh=[备案已注销]", ".AdviceEn=[A cancelled filing number cannot be restored.",
		".Provider.Name=[示例云 &lt;Example &amp; Cloud&gt;]", ".Provider.FilingURL=[https://beian.example.com/]",
	} {
		if !strings.Contains(string(body), w) {
			t.Errorf("want %q in %q", w, body)
		}
	}
}

// blockPageFields lists the template's fields: BlockPageData's exported
// fields, with Provider's inside it.
func blockPageFields() []string {
	var out []string
	var walk func(reflect.Type, string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+f.Name+".")
				continue
			}
			out = append(out, prefix+f.Name)
		}
	}
	walk(reflect.TypeFor[BlockPageData](), ".")
	return out
}

// TestBlockPageFieldsDocumented: the comment atop blockpage.html and
// docs/block-page.md name every field a template gets.
func TestBlockPageFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "block-page.md"))
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(BlockPageTemplate(), "*/")
	fields := blockPageFields()
	if len(fields) < 20 {
		t.Fatalf("got %d fields: %q", len(fields), fields)
	}
	for _, f := range fields {
		re := regexp.MustCompile(regexp.QuoteMeta(f) + `\b`)
		if !re.MatchString(head) {
			t.Errorf("%s: not in blockpage.html's comment", f)
		}
		if !re.MatchString(string(doc)) {
			t.Errorf("%s: not in docs/block-page.md", f)
		}
	}
}

func TestUnicodeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"xn--fsqu00a.xn--fiqs8s", "例子.中国"},
		{"XN--FSQU00A.XN--FIQS8S", "例子.中国"},
		{"a.xn--fiqs8s:443", "a.中国:443"},
		{"unfiled.cn", ""},
		{"axn--fsqu00a.cn", ""}, // not a label start
		{"xn--zz.cn", ""},
		{"xn--.cn", ""},
		{"例子.中国", ""},
		{"", ""},
		{"[::1]:80", ""},
	} {
		if got := unicodeName(tc.in); got != tc.want {
			t.Errorf("unicodeName(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWriteBlockAllocs: the embedded page, configured or not, is written
// without allocating once its segments are cached (the HTTP hot path).
func TestWriteBlockAllocs(t *testing.T) {
	if blockRaceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	for _, page := range []*BlockPage{nil, testPage(t)} {
		req := BlockRequest{
			Host: "www.unfiled.cn", Decision: Decision{Reason: "unfiled", Domain: "unfiled.cn"},
			RequestID: "0123456789abcdef", Node: "edge-1", Time: httpBlockTime, Page: page,
		}
		WriteBlock(io.Discard, req)
		if n := testing.AllocsPerRun(100, func() { WriteBlock(io.Discard, req) }); n != 0 {
			t.Errorf("page %p: got %v allocations, want 0", page, n)
		}
	}
}

func BenchmarkWriteBlock(b *testing.B) {
	req := BlockRequest{
		Host: "www.unfiled.cn", Decision: Decision{Reason: "unfiled", Domain: "unfiled.cn"},
		RequestID: "0123456789abcdef", Node: "edge-1", Time: httpBlockTime,
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteBlock(io.Discard, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteBlockIDN: a configured page for an IDN host, which pays
// for the two Unicode conversions.
func BenchmarkWriteBlockIDN(b *testing.B) {
	req := BlockRequest{
		Host: "www.xn--fsqu00a.xn--fiqs8s", Decision: Decision{Reason: "unfiled", Domain: "xn--fsqu00a.xn--fiqs8s"},
		RequestID: "0123456789abcdef", Node: "edge-1", Time: httpBlockTime, Page: testPage(b),
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteBlock(io.Discard, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBlockFastMatchesTemplate: the embedded page's fast path writes the
// same bytes as html/template for every reason, both status classes, the
// telling combinations of empty fields, with hostile values, on pages with
// and without the provider's settings and in zones east and west of UTC.
func TestBlockFastMatchesTemplate(t *testing.T) {
	hostile := []string{
		"<script>alert('x')</script>&\"+\x00\xff\xfe",
		"Zq7IcpgateField0q7Z {{.Host}}",
		"京ICP备10206937号-1",
	}
	pages := []*BlockPage{defaultBlockPage, testPage(t)}
	for _, zone := range []string{"UTC", "America/New_York", "Asia/Kolkata"} {
		p, err := NewBlockPage(Policy{TimeZone: zone})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, p)
	}
	// No field, all fields, each field alone and each field missing
	// (Time is always there).
	const all = 0xff &^ (1 << fastTime)
	presences := []int{0, all}
	for i := 0; i < 8; i++ {
		if i != fastTime {
			presences = append(presences, 1<<i, all&^(1<<i))
		}
	}
	for pi, page := range pages {
		for reason := range reasonTexts {
			for _, status := range []int{403, 502} {
				for _, present := range presences {
					hv := hostile[present%len(hostile)]
					d := page.data(BlockRequest{Decision: Decision{Reason: reason}, Status: status, Time: httpBlockTime})
					d.Domain, d.Host, d.DomainUnicode, d.HostUnicode = "", "", "", ""
					d.Blocked = status != 502
					for i, p := range d.dynamicFields() {
						if present&(1<<i) != 0 {
							*p = hv + strconv.Itoa(i)
						}
					}
					var fast, slow bytes.Buffer
					if !page.renderFast(&fast, &d) {
						t.Fatalf("page %d: %s/%d/%b: fast path unavailable", pi, reason, status, present)
					}
					d.fillTimes()
					if err := page.t.Execute(&slow, d); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(fast.Bytes(), slow.Bytes()) {
						t.Fatalf("page %d: %s/%d/%b: fast path differs:\ngot  %q\nwant %q", pi, reason, status, present, fast.Bytes(), slow.Bytes())
					}
				}
			}
		}
	}
	// Reasons outside the closed set never enter the cache.
	var b bytes.Buffer
	if defaultBlockPage.renderFast(&b, &BlockPageData{Reason: "made_up", Status: 403}) {
		t.Fatal("fast path used for an unknown reason")
	}
}

// TestBlockPageThroughServer: a Server's http listeners use the page
// settings of its config, and a reload applies new ones.
func TestBlockPageThroughServer(t *testing.T) {
	cfg := httpBaseConfig("127.0.0.1:1")
	cfg.Policy = Policy{Provider: Provider{Name: "示例云"}, TimeZone: "UTC"}
	srv, _ := startLoggingGateway(t, cfg, httpTestDecider())
	get := func() string {
		c, br := httpDialRaw(t, srv.Addr("http").String())
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: www.unfiled.cn\r\n\r\n")
		_, body := httpReadResp(t, br, "GET")
		return body
	}
	body := get()
	for _, w := range []string{`<p class="provider">示例云</p>`, " &#43;00:00</dd>"} {
		if !strings.Contains(body, w) {
			t.Errorf("want %q in %q", w, body)
		}
	}
	if strings.Contains(body, "edge-test") {
		t.Errorf("node shown without show_node: %q", body)
	}

	cfg.Policy = Policy{Provider: Provider{Name: "新名字"}, ShowNode: true}
	if err := srv.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	body = get()
	for _, w := range []string{`<p class="provider">新名字</p>`, " &#43;08:00</dd>", "<dd>edge-test</dd>"} {
		if !strings.Contains(body, w) {
			t.Errorf("after reload: want %q in %q", w, body)
		}
	}
}
