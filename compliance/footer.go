package compliance

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/andybalholm/brotli"
	"golang.org/x/net/html/charset"

	"github.com/icpgate/icpgate/registry"
)

// FooterStatus is the outcome of a footer check. The string forms are a
// fixed interface (CLI output, JSON).
type FooterStatus string

// Footer check outcomes, in the order they are decided: a page that
// cannot be had, then the number, then the link.
const (
	FooterOK            FooterStatus = "ok"             // the registry's number and a link to beian.miit.gov.cn
	FooterUnreachable   FooterStatus = "unreachable"    // no page: dial, TLS, HTTP error, status not 2xx, redirect not followed
	FooterNotHTML       FooterStatus = "not_html"       // the home page is not HTML
	FooterMissingNumber FooterStatus = "missing_number" // no filing number in the visible text
	FooterWrongNumber   FooterStatus = "wrong_number"   // numbers shown, none of them the registry's
	FooterMissingLink   FooterStatus = "missing_link"   // the number, but no link to beian.miit.gov.cn
)

// MIITHost is the host of the MIIT filing query site that a filed site's
// footer must link to.
const MIITHost = "beian.miit.gov.cn"

// Defaults of FooterOptions.
const (
	DefaultFooterTimeout = 10 * time.Second
	DefaultMaxPageBytes  = 2 << 20
	DefaultMaxRedirects  = 5
)

// FooterOptions are the upstreams and caps of CheckFooter.
type FooterOptions struct {
	// HTTPUpstream is the host:port plain HTTP is fetched from when the
	// record has no upstream of its own: the http listener's upstream.
	// Empty: no HTTP fetch.
	HTTPUpstream string
	// TLSUpstream is the host:port HTTPS is fetched from when the record
	// has no upstream of its own: the tls listener's upstream. Empty: no
	// HTTPS fetch.
	TLSUpstream string
	// Timeout caps the whole check, redirects and both schemes included.
	// Default DefaultFooterTimeout.
	Timeout time.Duration
	// MaxPageBytes caps the bytes read of a page, after decompression; a
	// longer page is checked on what was read. Default DefaultMaxPageBytes.
	MaxPageBytes int64
	// MaxRedirects caps the redirects followed. Default
	// DefaultMaxRedirects; negative: none.
	MaxRedirects int
	// UserAgent is sent with each request. Default "icpgate-compliance".
	UserAgent string
	// Now returns the check time. Default time.Now.
	Now func() time.Time
}

func (o *FooterOptions) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultFooterTimeout
	}
	if o.MaxPageBytes <= 0 {
		o.MaxPageBytes = DefaultMaxPageBytes
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	} else if o.MaxRedirects < 0 {
		o.MaxRedirects = 0
	}
	if o.UserAgent == "" {
		o.UserAgent = "icpgate-compliance"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// FooterResult is what CheckFooter found for one domain.
type FooterResult struct {
	Domain string       `json:"domain"`
	Status FooterStatus `json:"footer"`
	// Want is the registry's filing number.
	Want string `json:"want,omitempty"`
	// Found is the number matched, or for wrong_number the numbers shown
	// (joined by ", "); empty when none.
	Found string `json:"footer_found"`
	// Link is whether an <a> links to beian.miit.gov.cn.
	Link bool `json:"link"`
	// URL is the page checked, after the redirects followed.
	URL string `json:"url,omitempty"`
	// Evidence is the visible text around the number found (or around
	// "ICP"/"备案" when no number was found), at most about 120 characters.
	Evidence string `json:"evidence,omitempty"`
	// Truncated says the page was cut by the size or time cap and checked
	// on what had been read.
	Truncated bool `json:"truncated,omitempty"`
	// Note says why, for unreachable and not_html, and what was cut.
	Note      string    `json:"note,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// CheckFooter fetches domain's home page as a visitor would and checks
// that it shows rec's filing number and links to beian.miit.gov.cn (备案号
// 悬挂).
//
// It dials only rec.Upstream, else opts.HTTPUpstream (for http) or
// opts.TLSUpstream (for https), whatever the URL's host resolves to, so a
// page cannot make the check reach another address (a redirect to
// 169.254.169.254 or to a name resolving to loopback is refused or goes
// to the configured upstream). The domain is never resolved. It tries
// http://domain/ first, then https://domain/ when HTTP cannot be had.
// HTTPS sends the domain as SNI and does not verify the certificate:
// many filed sites have self-signed or expired certificates, and the
// check is about what the page shows, not its certificate. Redirects are
// followed only within domain's registrable domain, on the default ports,
// and at most opts.MaxRedirects times.
//
// The page is decoded (gzip, br), cut at opts.MaxPageBytes, its charset
// detected (GBK and GB18030 pages included), and only visible text is
// searched: a number in a script, an attribute (an image's alt) or
// written by JavaScript at run time is not seen.
func CheckFooter(ctx context.Context, domain string, rec *registry.Record, opts FooterOptions) FooterResult {
	opts.setDefaults()
	domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	res := FooterResult{Domain: domain, CheckedAt: opts.Now().UTC()}
	if rec != nil {
		res.Want = rec.FilingNumber
	}
	base, err := registry.RegistrableDomain(domain)
	if err != nil {
		res.Status, res.Note = FooterUnreachable, fmt.Sprintf("not a domain: %v", err)
		return res
	}
	httpUp, tlsUp := opts.HTTPUpstream, opts.TLSUpstream
	if rec != nil && rec.Upstream != "" {
		httpUp, tlsUp = rec.Upstream, rec.Upstream
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	var notes []string
	for _, try := range []struct{ scheme, upstream string }{{"http", httpUp}, {"https", tlsUp}} {
		if try.upstream == "" {
			notes = append(notes, try.scheme+": no upstream configured")
			continue
		}
		p, err := fetch(ctx, try.scheme+"://"+domain+"/", base, httpUp, tlsUp, &opts)
		if err != nil {
			notes = append(notes, try.scheme+": "+err.Error())
			if ctx.Err() != nil {
				break
			}
			continue
		}
		res.URL, res.Truncated, res.Note = p.url, p.truncated, p.note
		if !p.html {
			res.Status = FooterNotHTML
			return res
		}
		judge(&res, p.body, p.contentType)
		return res
	}
	res.Status, res.Note = FooterUnreachable, strings.Join(notes, "; ")
	return res
}

// page is what fetch read.
type page struct {
	url         string
	contentType string
	body        []byte
	html        bool
	truncated   bool
	note        string
}

// fetch gets rawURL, dialing only httpUp (http) or tlsUp (https), and
// reads its body within the caps.
func fetch(ctx context.Context, rawURL, base, httpUp, tlsUp string, opts *FooterOptions) (*page, error) {
	dialer := &net.Dialer{}
	tr := &http.Transport{
		// Whatever the URL says, the configured upstream is dialed; the
		// URL's host is only the Host header and the SNI.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if httpUp == "" {
				return nil, errors.New("no http upstream configured")
			}
			return dialer.DialContext(ctx, "tcp", httpUp)
		},
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if tlsUp == "" {
				return nil, errors.New("no https upstream configured")
			}
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			raw, err := dialer.DialContext(ctx, "tcp", tlsUp)
			if err != nil {
				return nil, err
			}
			// Not verified on purpose: see CheckFooter.
			c := tls.Client(raw, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			return c, nil
		},
		Proxy:                  nil, // never $HTTP_PROXY: the check must reach the upstream
		DisableCompression:     true,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	var refused string
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if why := refuseRedirect(req.URL, base); why != "" {
				refused = fmt.Sprintf("redirect to %s not followed: %s", req.URL, why)
				return http.ErrUseLastResponse
			}
			if len(via) > opts.MaxRedirects {
				refused = fmt.Sprintf("redirect to %s not followed: more than %d redirects", req.URL, opts.MaxRedirects)
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", opts.UserAgent)
	req.Header.Set("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
	req.Header.Set("Accept-Encoding", "gzip, br")
	req.Header.Set("Accept-Language", "zh-CN,zh;q=0.9")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if refused != "" {
		return nil, errors.New(refused)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%s answered %s", resp.Request.URL, resp.Status)
	}
	p := &page{url: resp.Request.URL.String(), contentType: resp.Header.Get("Content-Type")}
	body, err := decoded(resp)
	if err != nil {
		return nil, err
	}
	buf, err := io.ReadAll(io.LimitReader(body, opts.MaxPageBytes+1))
	switch {
	case int64(len(buf)) > opts.MaxPageBytes:
		buf = buf[:opts.MaxPageBytes]
		p.truncated, p.note = true, fmt.Sprintf("page cut at %d bytes", opts.MaxPageBytes)
	case err != nil && len(buf) > 0 && ctx.Err() != nil:
		// The time cap: check what came.
		p.truncated, p.note = true, fmt.Sprintf("page cut by the %s time cap after %d bytes", opts.Timeout, len(buf))
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", p.url, err)
	}
	p.body = buf
	p.html = isHTML(p.contentType, buf)
	return p, nil
}

// refuseRedirect says why a redirect to u is not followed, or "" when it
// is: it must stay within base (the registrable domain), use http or
// https, and the default port (the upstream is dialed whatever the URL
// says, so another port would check a page the visitor does not see).
func refuseRedirect(u *url.URL, base string) string {
	if u.Scheme != "http" && u.Scheme != "https" {
		return "scheme " + u.Scheme
	}
	if p := u.Port(); p != "" && !(u.Scheme == "http" && p == "80") && !(u.Scheme == "https" && p == "443") {
		return "port " + p
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if rd, err := registry.RegistrableDomain(host); err != nil || rd != base {
		return "outside " + base
	}
	return ""
}

// decoded returns resp's body without its content coding (gzip, br).
func decoded(resp *http.Response) (io.Reader, error) {
	switch ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
		return resp.Body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		return zr, nil
	case "br":
		return brotli.NewReader(resp.Body), nil
	default:
		return nil, fmt.Errorf("unsupported content encoding %q", ce)
	}
}

// isHTML reports whether a body of type ct (sniffed when absent) is HTML.
func isHTML(ct string, body []byte) bool {
	if ct == "" {
		ct = http.DetectContentType(body)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "text/html" || mt == "application/xhtml+xml"
}

// judge parses body and fills res's Status, Found, Link and Evidence.
func judge(res *FooterResult, body []byte, contentType string) {
	utf8Body := body
	if enc, name, _ := charset.DetermineEncoding(body, contentType); enc != nil && (name != "utf-8" || !utf8.Valid(body)) {
		// A page cut by a cap may end inside a character: drop up to 3
		// bytes until it decodes.
		for cut := 0; cut < 4 && cut < len(body); cut++ {
			if b, err := enc.NewDecoder().Bytes(body[:len(body)-cut]); err == nil {
				utf8Body = b
				break
			}
		}
	}
	text, link := visibleText(bytes.NewReader(utf8Body))
	res.Link = link
	found := findNumbers(text)
	want, wantErr := registry.ParseFilingNumber(res.Want)
	var match *numberMatch
	for i := range found {
		if wantErr == nil && sameFiling(found[i].number, want) {
			match = &found[i]
			break
		}
	}
	switch {
	case len(found) == 0:
		res.Status = FooterMissingNumber
		res.Evidence = snippet(text, markAt(text, "ICP", "icp", "备案"))
	case match == nil:
		res.Status = FooterWrongNumber
		var shown []string
		for _, f := range found {
			shown = append(shown, f.number)
		}
		res.Found = strings.Join(dedup(shown), ", ")
		res.Evidence = snippet(found[0].block, found[0].at)
		if wantErr != nil {
			res.Note = "the registry holds no valid filing number for the domain"
		}
	default:
		res.Found = match.number
		res.Evidence = snippet(match.block, match.at)
		if link {
			res.Status = FooterOK
		} else {
			res.Status = FooterMissingLink
		}
	}
}

// sameFiling reports whether the number shown, s, is want: the same
// subject number and, when s has a site number, the same site. A page
// that shows the subject number without the site number passes; one that
// shows another site's number does not.
func sameFiling(s string, want registry.FilingNumber) bool {
	f, err := registry.ParseFilingNumber(s)
	if err != nil || f.Subject != want.Subject {
		return false
	}
	return f.Kind != registry.FilingWebsite || want.Kind != registry.FilingWebsite || f.Site == want.Site
}

func dedup(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// markAt returns the offset in text of the first of marks, or -1.
func markAt(text string, marks ...string) int {
	at := -1
	for _, m := range marks {
		if i := strings.Index(text, m); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	return at
}

// snippet returns the text around offset at, at most 40 runes before and
// 80 from it, its white space collapsed; "" when at is negative.
func snippet(text string, at int) string {
	if at < 0 {
		return ""
	}
	start := at
	for n := 0; n < 40 && start > 0; n++ {
		_, size := utf8.DecodeLastRuneInString(text[:start])
		start -= size
	}
	end := at
	for n := 0; n < 80 && end < len(text); n++ {
		_, size := utf8.DecodeRuneInString(text[end:])
		end += size
	}
	return strings.Join(strings.Fields(text[start:end]), " ")
}
