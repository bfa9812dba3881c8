package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

var updateBlockGolden = flag.Bool("update-block", false, "rewrite golden files")

// httpAllReasons is DESIGN.md's closed set of reason codes.
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

func TestBlockPageGolden(t *testing.T) {
	resp, body := writeBlockResponse(t, BlockRequest{
		Host:      "www.unfiled.cn",
		Decision:  Decision{Reason: "unfiled", Host: "www.unfiled.cn", Domain: "unfiled.cn"},
		RequestID: "0123456789abcdef",
		Node:      "edge-1",
		Time:      httpBlockTime,
	})
	golden := filepath.Join("testdata", "http_blockpage_unfiled.golden")
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
		"X-Icpgate-Reason": "unfiled",
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
}

func TestBlockEscapesEcho(t *testing.T) {
	evil := `<script>alert("x")</script>.cn`
	for _, accept := range []string{"text/html", "application/json"} {
		t.Run(accept, func(t *testing.T) {
			_, body := writeBlockResponse(t, BlockRequest{
				Host:      evil,
				Decision:  Decision{Reason: "invalid_host"},
				RequestID: "1", Node: `<b>node</b>`, Accept: accept,
			})
			if bytes.Contains(body, []byte("<script>")) || bytes.Contains(body, []byte("<b>")) {
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
				"node": "edge-1", "time": "2026-11-27T03:00:00Z", "filing_number": "京ICP备10206937号-1",
			} {
				if m[k] != v {
					t.Errorf("%s: got %q, want %q", k, m[k], v)
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
		"request_timeout", "method_not_allowed", "version_not_supported", "upstream_unavailable", "upstream_timeout")
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

// TestBlockFastMatchesTemplate: the embedded page's fast path writes the
// same bytes as html/template for every reason, both statuses classes and
// the telling combinations of empty fields, with hostile values.
func TestBlockFastMatchesTemplate(t *testing.T) {
	hostile := []string{
		"<script>alert('x')</script>&\"+\x00\xff\xfe",
		"Zq7IcpgateField0q7Z {{.Host}}",
		"京ICP备10206937号-1",
	}
	// No field, all fields, each field alone and each field missing.
	presences := []int{0, 63}
	for i := 0; i < 6; i++ {
		presences = append(presences, 1<<i, 63&^(1<<i))
	}
	for reason := range reasonTexts {
		for _, status := range []int{403, 502} {
			for _, present := range presences {
				{
					hv := hostile[present%len(hostile)]
					d := BlockPageData{Status: status, Blocked: status != 502, Reason: reason}
					for i, p := range d.dynamicFields() {
						if present&(1<<i) != 0 {
							*p = hv + strconv.Itoa(i)
						}
					}
					rt := reasonTexts[reason]
					d.TitleZh, d.TitleEn, d.MessageZh, d.MessageEn, d.AdviceZh, d.AdviceEn = rt.titleZh, rt.titleEn, rt.messageZh, rt.messageEn, rt.adviceZh, rt.adviceEn
					var fast, slow bytes.Buffer
					if !renderFast(&fast, &d) {
						t.Fatalf("%s/%d/%b: fast path unavailable", reason, status, present)
					}
					if err := defaultBlockPage.t.Execute(&slow, d); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(fast.Bytes(), slow.Bytes()) {
						t.Fatalf("%s/%d/%b: fast path differs:\ngot  %q\nwant %q", reason, status, present, fast.Bytes(), slow.Bytes())
					}
				}
			}
		}
	}
	// Reasons outside the closed set never enter the cache.
	var b bytes.Buffer
	if renderFast(&b, &BlockPageData{Reason: "made_up", Status: 403}) {
		t.Fatal("fast path used for an unknown reason")
	}
}
