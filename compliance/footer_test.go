package compliance

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/icpgate/icpgate/registry"
)

const filed = "京ICP备09051301号-1"

// page builds a fixture home page with footer inside <footer>.
func fixturePage(head, footer string) string {
	return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>示例</title>" + head +
		"</head>\n<body><h1>欢迎光临</h1><p>正文 2024</p>\n<footer>" + footer + "</footer></body></html>\n"
}

const miitLink = `<a href="https://beian.miit.gov.cn/" target="_blank">` + filed + `</a>`

// gbkPage is a GBK-encoded page declaring its charset in a meta tag
// only (nginx sends text/html without a charset).
func gbkPage(t testing.TB) string {
	t.Helper()
	s := "<!DOCTYPE html>\n<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=gbk\"><title>示例</title></head>" +
		"<body><p>版权所有 示例科技有限公司</p><p>备案号：<a href=\"http://beian.miit.gov.cn\">京ICP备09051301号-1</a></p></body></html>"
	b, err := simplifiedchinese.GBK.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b, "京ICP备") {
		t.Fatal("GBK fixture is still UTF-8")
	}
	return b
}

// bigPage is a page of more than 10 MB with its footer at the top.
func bigPage() string {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><div class=\"top\">" + miitLink + "</div>\n")
	line := "<p>" + strings.Repeat("填充内容 filler ", 20) + "</p>\n"
	for b.Len() < 10<<20 {
		b.WriteString(line)
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

// writeSites writes the fixture sites under dir/sites.
func writeSites(t testing.TB, dir string, sites map[string]string) {
	t.Helper()
	for host, body := range sites {
		d := filepath.Join(dir, "sites", host)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "index.html"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// trickle is an origin that sends a page's start and then one byte a
// while, never finishing.
func trickle(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 100000000\r\n\r\n" +
					fixturePage("", miitLink)))
				tick := make([]byte, 1)
				tick[0] = ' '
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := c.Write(tick); err != nil {
						return
					}
					// Slow enough that the body never ends within the
					// test's cap; not a timing assertion.
					sleepBriefly()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// brotliOrigin serves a compliant page br-encoded (Debian's nginx has no
// brotli module), checking that br was asked for.
func brotliOrigin(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "br") {
			http.Error(w, "br not accepted", http.StatusNotAcceptable)
			return
		}
		var b bytes.Buffer
		bw := brotli.NewWriter(&b)
		bw.Write([]byte(fixturePage("", miitLink)))
		bw.Close()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Encoding", "br")
		w.Write(b.Bytes())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestComplianceFooterNginx(t *testing.T) {
	dir := t.TempDir()
	writeSites(t, dir, map[string]string{
		"ok.test":         fixturePage("", "©2024 示例 "+miitLink),
		"nolink.test":     fixturePage("", "©2024 示例 京ICP备09051301号-1"),
		"nonumber.test":   fixturePage("", `<a href="https://beian.miit.gov.cn/#/Integrated/index">工信部备案查询</a>`),
		"wrongsite.test":  fixturePage("", `<a href="http://beian.miit.gov.cn/">京ICP备09051301号-2</a>`),
		"alt.test":        fixturePage("", `<a href="https://beian.miit.gov.cn/"><img src="icp.png" alt="京ICP备09051301号-1"></a>`),
		"js.test":         fixturePage("", `<a id="icp" href="https://beian.miit.gov.cn/"></a><script>document.getElementById("icp").textContent = "京ICP备09051301号-1";</script>`),
		"split.test":      fixturePage("", `<a href="//beian.miit.gov.cn/">京ICP备<span>09051301</span>号-1</a>`),
		"fullwidth.test":  fixturePage("", `<a href="https://BEIAN.MIIT.GOV.CN">京ＩＣＰ备０９０５１３０１号－１</a>`),
		"hidden.test":     fixturePage("", `<div hidden>京ICP备09051301号-1</div><a href="https://beian.miit.gov.cn/">备案查询</a>`),
		"otherlink.test":  fixturePage("", `<a href="https://beian.miit.gov.cn.example.com/">京ICP备09051301号-1</a>`),
		"gbk.test":        gbkPage(t),
		"gzip.test":       fixturePage("", miitLink),
		"redirect.test":   fixturePage("", miitLink),
		"big.test":        bigPage(),
		"tlsonly.test":    fixturePage("", miitLink),
		"www.subdom.test": fixturePage("", miitLink),
		"www.apex.test":   fixturePage("", miitLink),
	})
	httpUp, httpsUp := startNginx(t, dir)
	trickleUp := trickle(t)
	brUp := brotliOrigin(t)

	// nginx gzips gzip.test: the row below then checks a gzip body.
	req, _ := http.NewRequest("GET", "http://"+httpUp+"/", nil)
	req.Host = "gzip.test"
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("nginx gzip.test: Content-Encoding %q, want gzip", ce)
	}

	both := FooterOptions{HTTPUpstream: httpUp, TLSUpstream: httpsUp}
	tests := []struct {
		domain     string
		rec        *registry.Record // default: filed, no upstream
		opts       FooterOptions    // default: both
		want       FooterStatus
		wantFound  string
		wantLink   bool
		wantURL    string // suffix
		truncated  bool
		noteHas    string
		evidenceIn string
	}{
		{domain: "ok.test", want: FooterOK, wantFound: filed, wantLink: true, evidenceIn: filed},
		{domain: "nolink.test", want: FooterMissingLink, wantFound: filed},
		{domain: "nonumber.test", want: FooterMissingNumber, wantLink: true},
		{domain: "wrongsite.test", want: FooterWrongNumber, wantFound: "京ICP备09051301号-2", wantLink: true},
		// An image's alt text is not visible text.
		{domain: "alt.test", want: FooterMissingNumber, wantLink: true},
		// Written by JavaScript at run time: the check does not run
		// scripts, so it is missing (docs/compliance.md says so).
		{domain: "js.test", want: FooterMissingNumber, wantLink: true},
		{domain: "split.test", want: FooterOK, wantFound: filed, wantLink: true},
		{domain: "fullwidth.test", want: FooterOK, wantFound: filed, wantLink: true},
		{domain: "hidden.test", want: FooterMissingNumber, wantLink: true},
		{domain: "otherlink.test", want: FooterMissingLink, wantFound: filed},
		{domain: "gbk.test", want: FooterOK, wantFound: filed, wantLink: true, evidenceIn: "备案号"},
		{domain: "gzip.test", want: FooterOK, wantFound: filed, wantLink: true},
		{domain: "redirect.test", want: FooterOK, wantFound: filed, wantLink: true, wantURL: "/index.html"},
		{domain: "offsite.test", want: FooterUnreachable, noteHas: "http://elsewhere.test/ not followed: outside offsite.test"},
		{domain: "metadata.test", want: FooterUnreachable, noteHas: "not followed"},
		// www.apex.test is in no DNS: the redirect is followed by dialing
		// the same upstream, never by resolving the name.
		{domain: "apex.test", want: FooterOK, wantFound: filed, wantLink: true, wantURL: "http://www.apex.test/"},
		{domain: "loop.test", want: FooterUnreachable, noteHas: "more than 5 redirects"},
		{domain: "json.test", want: FooterNotHTML},
		{domain: "missing.test", want: FooterUnreachable, noteHas: "404"},
		{domain: "big.test", want: FooterOK, wantFound: filed, wantLink: true, truncated: true, noteHas: "cut at 2097152 bytes"},
		{domain: "tlsonly.test", opts: FooterOptions{TLSUpstream: httpsUp}, want: FooterOK, wantFound: filed, wantLink: true, wantURL: "https://tlsonly.test/"},
		{domain: "www.subdom.test", want: FooterOK, wantFound: filed, wantLink: true},
		{domain: "ok.test", rec: &registry.Record{Domain: "ok.test", FilingNumber: "京ICP备09051301号", Upstream: httpUp},
			opts: FooterOptions{HTTPUpstream: "127.0.0.1:1"}, want: FooterOK, wantFound: filed, wantLink: true},
		{domain: "ok.test", rec: &registry.Record{Domain: "ok.test", FilingNumber: "京ICP备20240001号-1"},
			want: FooterWrongNumber, wantFound: filed, wantLink: true},
		{domain: "nothing.test", opts: FooterOptions{}, want: FooterUnreachable, noteHas: "no upstream configured"},
		{domain: "br.test", opts: FooterOptions{HTTPUpstream: brUp}, want: FooterOK, wantFound: filed, wantLink: true},
		{domain: "trickle.test", opts: FooterOptions{HTTPUpstream: trickleUp, Timeout: timeCap},
			want: FooterOK, wantFound: filed, wantLink: true, truncated: true, noteHas: "time cap"},
	}
	for _, tt := range tests {
		t.Run(tt.domain+"/"+string(tt.want), func(t *testing.T) {
			rec := tt.rec
			if rec == nil {
				rec = &registry.Record{Domain: tt.domain, State: registry.StateFiled, FilingNumber: filed}
			}
			opts := tt.opts
			if opts.HTTPUpstream == "" && opts.TLSUpstream == "" && tt.domain != "nothing.test" {
				opts = both
			}
			got := CheckFooter(context.Background(), tt.domain, rec, opts)
			if got.Status != tt.want || got.Found != tt.wantFound || got.Link != tt.wantLink || got.Truncated != tt.truncated {
				t.Errorf("got %s found %q link %v truncated %v (note %q, evidence %q), want %s found %q link %v truncated %v",
					got.Status, got.Found, got.Link, got.Truncated, got.Note, got.Evidence, tt.want, tt.wantFound, tt.wantLink, tt.truncated)
			}
			if !strings.Contains(got.Note, tt.noteHas) {
				t.Errorf("note %q, want it to contain %q", got.Note, tt.noteHas)
			}
			if !strings.Contains(got.Evidence, tt.evidenceIn) {
				t.Errorf("evidence %q, want it to contain %q", got.Evidence, tt.evidenceIn)
			}
			if !strings.HasSuffix(got.URL, tt.wantURL) {
				t.Errorf("URL %q, want it to end in %q", got.URL, tt.wantURL)
			}
			if got.CheckedAt.IsZero() {
				t.Error("CheckedAt is zero")
			}
		})
	}
}

// timeCap is the trickle row's time cap: short, so the test is quick; the
// row checks what the cap does, not how long it took.
const timeCap = time.Second

func sleepBriefly() { time.Sleep(50 * time.Millisecond) }
