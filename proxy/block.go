package proxy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrBlockPage marks an operator block-page template that does not parse or
// does not render.
var ErrBlockPage = errors.New("invalid block page template")

//go:embed blockpage.html
var defaultBlockPageSource string

var defaultBlockPage = mustBlockPage(template.New("blockpage.html").Parse(defaultBlockPageSource))

func mustBlockPage(t *template.Template, err error) *BlockPage {
	if err != nil {
		panic(err)
	}
	return &BlockPage{t: t}
}

// BlockPage is a parsed block-page template. The zero value is not usable;
// use DefaultBlockPage or LoadBlockPage.
type BlockPage struct {
	t *template.Template
}

// DefaultBlockPage returns the embedded bilingual block page.
func DefaultBlockPage() *BlockPage { return defaultBlockPage }

// LoadBlockPage parses the html/template at path as a replacement block page
// and renders it once for every reason code, so a template that fails at
// run time fails here instead. The template gets the fields of
// BlockPageData. cmd should call it at start so a bad file fails the start.
func LoadBlockPage(path string) (*BlockPage, error) {
	t, err := template.ParseFiles(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBlockPage, err)
	}
	p := &BlockPage{t: t}
	for reason := range reasonTexts {
		d := newBlockPageData(BlockRequest{Host: "example.cn", Decision: Decision{Reason: reason}})
		if err := t.Execute(io.Discard, d); err != nil {
			return nil, fmt.Errorf("%w: rendering %s: %w", ErrBlockPage, reason, err)
		}
	}
	return p, nil
}

// BlockRequest is what a block (or gateway error) response is made from.
type BlockRequest struct {
	// Host is the host the client asked for, as received; it is echoed
	// escaped.
	Host string
	// Decision is the decision that blocked the request. Its Reason selects
	// the explanation; Host, Domain and FilingNumber are shown when set.
	Decision Decision
	// RequestID identifies the request in logs and support tickets.
	RequestID string
	// Node names the gateway.
	Node string
	// Accept is the request's Accept header; JSON is sent when it prefers
	// application/json over text/html (q-values honoured).
	Accept string
	// Time is shown on the page; zero means time.Now().
	Time time.Time
	// Status is the response status. Zero means 403 (or 302 with
	// RedirectURL).
	Status int
	// RedirectURL, when set and Error is empty, makes the response a 302 to
	// RedirectURL with ?d=<host>&r=<reason>&id=<request id> appended.
	RedirectURL string
	// Error, when set, makes this a gateway error page rather than a block:
	// one of bad_request, header_too_large, request_timeout,
	// method_not_allowed, version_not_supported, expectation_failed,
	// upstream_unavailable, upstream_timeout. It replaces the reason in texts and headers.
	Error string
	// HeadOnly omits the body (the request was HEAD).
	HeadOnly bool
	// Page is the template; nil means the embedded page.
	Page *BlockPage
}

// BlockPageData is what the block-page template is executed with. Every
// field is plain text: html/template escapes it.
type BlockPageData struct {
	Status       int    `json:"status"`
	Blocked      bool   `json:"blocked"` // false for gateway errors
	Domain       string `json:"domain"`
	Host         string `json:"host"`
	Reason       string `json:"reason"`
	RequestID    string `json:"request_id"`
	Node         string `json:"node"`
	Time         string `json:"time"`
	FilingNumber string `json:"filing_number"`
	TitleZh      string `json:"title_zh"`
	TitleEn      string `json:"title_en"`
	MessageZh    string `json:"message_zh"`
	MessageEn    string `json:"message_en"`
	AdviceZh     string `json:"advice_zh"`
	AdviceEn     string `json:"advice_en"`
}

func (r *BlockRequest) status() int {
	switch {
	case r.Status != 0:
		return r.Status
	case r.RedirectURL != "" && r.Error == "":
		return http.StatusFound
	}
	return http.StatusForbidden
}

func (r *BlockRequest) reason() string {
	if r.Error != "" {
		return r.Error
	}
	if r.Decision.Reason == "" {
		return "unknown"
	}
	return r.Decision.Reason
}

func newBlockPageData(r BlockRequest) BlockPageData {
	reason := r.reason()
	t, ok := reasonTexts[reason]
	if !ok {
		t = reasonTexts["unknown"]
	}
	tm := r.Time
	if tm.IsZero() {
		tm = time.Now()
	}
	domain := r.Decision.Domain
	if domain == "" {
		domain = r.Decision.Host
	}
	if domain == "" {
		domain = r.Host
	}
	return BlockPageData{
		Status:       r.status(),
		Blocked:      r.Error == "",
		Domain:       domain,
		Host:         r.Host,
		Reason:       reason,
		RequestID:    r.RequestID,
		Node:         r.Node,
		Time:         tm.UTC().Format(time.RFC3339),
		FilingNumber: r.Decision.FilingNumber,
		TitleZh:      t.titleZh,
		TitleEn:      t.titleEn,
		MessageZh:    t.messageZh,
		MessageEn:    t.messageEn,
		AdviceZh:     t.adviceZh,
		AdviceEn:     t.adviceEn,
	}
}

var blockBufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// WriteBlock writes a complete HTTP/1.1 block (or gateway error) response to
// w in one Write: status, Content-Type, Content-Length,
// Cache-Control: no-store, X-Icpgate-Reason, X-Request-Id and
// Connection: close, then an HTML page or a JSON object. The caller closes
// the connection afterwards.
func WriteBlock(w io.Writer, req BlockRequest) error {
	d := newBlockPageData(req)
	body := blockBufPool.Get().(*bytes.Buffer)
	out := blockBufPool.Get().(*bytes.Buffer)
	body.Reset()
	out.Reset()
	defer blockBufPool.Put(body)
	defer blockBufPool.Put(out)

	var location string
	if req.RedirectURL != "" && req.Error == "" {
		location = redirectLocation(req.RedirectURL, d)
	}
	ctype := "text/html; charset=utf-8"
	switch {
	case location != "":
		ctype = ""
	case prefersJSON(req.Accept):
		ctype = "application/json; charset=utf-8"
		enc := json.NewEncoder(body)
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("encoding block response: %w", err)
		}
	default:
		page := req.Page
		if page == nil {
			page = defaultBlockPage
		}
		if page != defaultBlockPage || !renderFast(body, &d) {
			if err := page.t.Execute(body, d); err != nil {
				return fmt.Errorf("rendering block page: %w", err)
			}
		}
	}

	text := http.StatusText(d.Status)
	if text == "" {
		text = "Status"
	}
	// The head is written piece by piece, with no string built for it.
	var num [20]byte
	out.WriteString("HTTP/1.1 ")
	out.Write(strconv.AppendInt(num[:0], int64(d.Status), 10))
	out.WriteByte(' ')
	out.WriteString(text)
	if location != "" {
		out.WriteString("\r\nLocation: ")
		out.WriteString(location)
	}
	if ctype != "" {
		out.WriteString("\r\nContent-Type: ")
		out.WriteString(ctype)
		out.WriteString("\r\nX-Content-Type-Options: nosniff")
	}
	out.WriteString("\r\nContent-Length: ")
	out.Write(strconv.AppendInt(num[:0], int64(body.Len()), 10))
	out.WriteString("\r\nCache-Control: no-store\r\nX-Icpgate-Reason: ")
	out.WriteString(headerToken(d.Reason))
	if id := headerToken(req.RequestID); id != "" {
		out.WriteString("\r\nX-Request-Id: ")
		out.WriteString(id)
	}
	out.WriteString("\r\nConnection: close\r\n\r\n")
	if !req.HeadOnly {
		out.Write(body.Bytes())
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("writing block response: %w", err)
	}
	return nil
}

// redirectLocation appends d, r and id to the notice URL.
func redirectLocation(base string, d BlockPageData) string {
	host := d.Host
	if host == "" {
		host = d.Domain
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	// Keep the documented d, r, id order.
	loc := base + sep + "d=" + url.QueryEscape(host) + "&r=" + url.QueryEscape(d.Reason) + "&id=" + url.QueryEscape(d.RequestID)
	for _, c := range []byte(loc) {
		if c < ' ' || c == 0x7f {
			return "" // never let a header break; falls back to the page
		}
	}
	return loc
}

// headerToken keeps only [A-Za-z0-9_.-] so a value can never break a
// header line.
func headerToken(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "invalid"
		}
	}
	return s
}

// prefersJSON reports whether an Accept header ranks application/json above
// text/html. Each type takes the q of its most specific matching range
// (type/subtype over type/* over */*); on equal q the type named more
// specifically wins, and a full tie goes to HTML.
func prefersJSON(accept string) bool {
	if accept == "" {
		return false
	}
	var qJSON, qHTML float64
	specJSON, specHTML := 0, 0
	for _, el := range strings.Split(accept, ",") {
		mt, params, _ := strings.Cut(el, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0
				}
				q = f
			}
		}
		spec := func(exact, wild string) int {
			switch mt {
			case exact:
				return 3
			case wild:
				return 2
			case "*/*":
				return 1
			}
			return 0
		}
		if s := spec("application/json", "application/*"); s > specJSON {
			specJSON, qJSON = s, q
		}
		if s := spec("text/html", "text/*"); s > specHTML {
			specHTML, qHTML = s, q
		}
	}
	// On equal q the more specific match wins: "application/json, */*"
	// (what API clients send) asks for JSON.
	return qJSON > qHTML || qJSON == qHTML && qJSON > 0 && specJSON > specHTML
}

// ReasonAdvice returns, for a reason code, what the site owner should do
// next, in Chinese and in English: the same text the block page shows. ok is
// false for an unknown code.
func ReasonAdvice(reason string) (zh, en string, ok bool) {
	t, ok := reasonTexts[reason]
	return t.adviceZh, t.adviceEn, ok
}

type reasonText struct {
	titleZh, titleEn     string
	messageZh, messageEn string
	adviceZh, adviceEn   string
}

// reasonTexts explains every reason code and gateway error in both
// languages: what happened and what the site owner (or visitor) does next.
// Reason codes are a closed set (DESIGN.md); a test checks each has a text.
var reasonTexts = map[string]reasonText{
	"filed": {
		"网站已备案", "Site is filed",
		"该域名已取得 ICP 备案，并已在本服务商完成接入。",
		"This domain holds an ICP filing with an access record at this provider.",
		"正常情况下不会看到本页。如果仍然无法访问，请把下方的请求 ID 提供给服务商客服。",
		"You should not normally see this page. If the site stays unreachable, give the request ID below to the provider's support.",
	},
	"access_pending": {
		"接入备案初审已通过", "Access filing passed preliminary review",
		"该域名的接入备案已通过本服务商的初审，网站在审核期间可以访问。",
		"The access filing for this domain passed this provider's preliminary review; the site may be reached while the review continues.",
		"请留意管局审核结果并按要求补充材料。如仍无法访问，请联系服务商客服并提供请求 ID。",
		"Watch for the authority's decision and supply any material it asks for. If the site stays unreachable, contact support with the request ID.",
	},
	"rectifying": {
		"备案整改中", "Filing under rectification",
		"该域名的备案正在整改，整改期限内网站仍可访问。",
		"The filing for this domain is being rectified; the site stays reachable until the deadline.",
		"请在期限前完成整改事项，以免到期后访问被中断。",
		"Complete the required corrections before the deadline so that access is not cut off.",
	},
	"rectification_overdue": {
		"备案整改已逾期", "Rectification deadline passed",
		"该域名备案的整改期限已过，按规定暂停访问。",
		"The deadline for correcting this domain's filing has passed, so access is suspended.",
		"请完成管局要求的整改并联系服务商客服复核；记录更新后访问会立即恢复。",
		"Finish the corrections the filing authority requires and ask the provider's support to review them; access returns as soon as the record is updated.",
	},
	"no_access": {
		"未在本服务商接入", "Not filed with this provider",
		"该域名已有 ICP 备案，但接入服务商不是本服务商。",
		"This domain has an ICP filing, but this provider is not listed as its access provider.",
		"请提交接入备案，把本服务商添加为该网站的接入服务商。本服务商初审通过后即可访问。",
		"Submit an access filing that adds this provider as the site's access provider. The site opens once this provider's preliminary review passes.",
	},
	"filing_pending": {
		"备案审核中", "Filing under review",
		"该域名的备案正在审核，审核通过前网站不得开通访问。",
		"A filing for this domain is under review; the site must stay offline until it is approved.",
		"请等待审核结果。备案号下发并录入本服务商系统后，网站会自动恢复访问。",
		"Wait for the decision. Once the filing number is issued and recorded by this provider, the site opens automatically.",
	},
	"cancelled": {
		"备案已注销", "Filing cancelled",
		"该域名的 ICP 备案已被工信部注销。",
		"The ICP filing for this domain has been cancelled by the MIIT.",
		"已注销的备案号无法恢复。请为该域名重新办理备案，审核通过并完成接入后即可访问。",
		"A cancelled filing number cannot be restored. File the domain again; the site opens once the new filing is approved and the access record is in place.",
	},
	"access_revoked": {
		"接入已取消", "Access withdrawn",
		"本服务商已取消该域名的接入。",
		"This provider has withdrawn access for this domain.",
		"请联系服务商客服了解取消原因；如需继续在本服务商托管，需要重新办理接入备案。",
		"Contact the provider's support to learn why access was withdrawn; hosting here again needs a new access filing.",
	},
	"blacklisted": {
		"域名已被列入黑名单", "Domain is blacklisted",
		"该域名已被列入黑名单，本服务商不能为其提供访问。",
		"This domain is on a blacklist and cannot be served by this provider.",
		"如认为有误，请携带请求 ID 联系服务商客服。",
		"If you believe this is a mistake, contact the provider's support and quote the request ID.",
	},
	"unfiled": {
		"网站未备案", "Site not filed",
		"没有找到该域名的 ICP 备案记录。",
		"No ICP filing record was found for this domain.",
		"中国大陆的服务器只能为已备案的域名提供访问。请以本服务商为接入服务商为该域名办理备案，审核通过后即可访问。",
		"Servers in mainland China may serve only filed domains. File this domain with this provider as its access provider; the site opens once the filing is approved.",
	},
	"suffix_not_fileable": {
		"域名后缀不支持备案", "Suffix cannot be filed",
		"该域名的后缀不在工信部可备案的后缀名单中。",
		"This domain's suffix is not on the MIIT's list of suffixes that can be filed.",
		"请改用可备案后缀的域名，办理备案后再将网站指向该域名。",
		"Move the site to a domain under a fileable suffix and file that domain.",
	},
	"ip_access": {
		"不允许通过 IP 访问", "Access by IP address not allowed",
		"本节点不允许直接通过 IP 地址或不带主机名访问。",
		"This node does not allow access by IP address or without a host name.",
		"请使用网站已备案的域名访问。",
		"Visit the site through its filed domain name.",
	},
	"invalid_host": {
		"主机名无效", "Invalid host name",
		"请求中的主机名不是有效的域名。",
		"The host name in the request is not a valid domain name.",
		"请检查输入的网址。网站管理员请确认访问使用的是已备案的域名。",
		"Check the address. Site owners: make sure visitors use the site's filed domain name.",
	},
	"override_allow": {
		"已临时放行", "Temporarily allowed",
		"客服已临时放行该域名。",
		"Support has temporarily allowed this domain.",
		"如仍无法访问，请联系服务商客服并提供请求 ID。",
		"If the site stays unreachable, contact support with the request ID.",
	},
	"override_deny": {
		"已被运维拦截", "Blocked by the provider",
		"本服务商运维已对该域名设置拦截。",
		"The provider's operations team has blocked this domain.",
		"请携带请求 ID 联系服务商客服，了解拦截原因及解除所需的条件。",
		"Contact the provider's support with the request ID to learn why and what is needed to lift the block.",
	},
	"unknown": {
		"访问被拦截", "Access blocked",
		"网关拦截了该请求。",
		"The gateway blocked this request.",
		"请携带请求 ID 联系服务商客服。",
		"Contact the provider's support with the request ID.",
	},
	"bad_request": {
		"请求格式错误", "Bad request",
		"请求的格式无法被安全地解析，网关已拒绝。",
		"The request could not be parsed safely and was refused.",
		"请使用标准的浏览器或 HTTP 客户端重试。",
		"Retry with a standard browser or HTTP client.",
	},
	"header_too_large": {
		"请求头过大", "Request header too large",
		"请求头的大小或字段数量超过了网关的上限。",
		"The request header exceeds the gateway's size or field-count limit.",
		"请清除该网站的 Cookie 或减少请求头后重试。",
		"Clear the site's cookies or send fewer header fields, then retry.",
	},
	"request_timeout": {
		"请求超时", "Request timeout",
		"网关在规定时间内没有收到完整的请求头。",
		"The gateway did not receive a complete request header in time.",
		"请检查网络后重试。",
		"Check your network connection and retry.",
	},
	"method_not_allowed": {
		"不支持的请求方法", "Method not allowed",
		"网关不提供 CONNECT 隧道。",
		"The gateway does not provide CONNECT tunnels.",
		"请直接访问目标网站，不要把本节点当作代理服务器。",
		"Request the site directly instead of using this node as a forward proxy.",
	},
	"version_not_supported": {
		"不支持的 HTTP 版本", "HTTP version not supported",
		"网关在此端口只接受 HTTP/1.0 和 HTTP/1.1。",
		"The gateway accepts only HTTP/1.0 and HTTP/1.1 on this port.",
		"请使用 HTTP/1.1 重试。",
		"Retry with HTTP/1.1.",
	},
	"expectation_failed": {
		"无法满足的 Expect 请求头", "Expectation failed",
		"请求的 Expect 头要求网关无法满足（只支持 100-continue）。",
		"The request's Expect header asks for something the gateway cannot meet (only 100-continue is supported).",
		"请去掉 Expect 请求头后重试。",
		"Retry without the Expect header.",
	},
	"upstream_unavailable": {
		"源站无法连接", "Origin unavailable",
		"网关无法连接到网站的源站服务器。",
		"The gateway could not reach the site's origin server.",
		"请稍后重试。网站管理员请检查源站服务是否正常运行。",
		"Retry later. Site owners: check that the origin server is running.",
	},
	"upstream_timeout": {
		"源站响应超时", "Origin timeout",
		"网站的源站服务器没有在规定时间内响应。",
		"The site's origin server did not answer in time.",
		"请稍后重试。网站管理员请检查源站的负载和网络。",
		"Retry later. Site owners: check the origin server's load and network.",
	},
}

// Fast rendering of the embedded page. html/template spends ~90 allocations
// and ~18 µs per page, mostly escaping by reflection; a flood of requests
// for unfiled names would pay that per request. For the embedded page
// (whose every per-request field sits in HTML text or RCDATA context), the
// page is rendered once per (reason, status, which fields are empty) with
// sentinels in place of the per-request fields and split at them; a request
// then writes the static segments and its own values escaped exactly as
// html/template's text escaper does. TestBlockFastMatchesTemplate checks the
// two produce identical bytes. Operator templates always take the slow path.

type fastKey struct {
	reason  string
	status  int
	blocked bool
	present uint8 // bit i: dynamic field i is non-empty
}

// fastPage is the segments around the dynamic fields; a nil *fastPage
// records that this key cannot use the fast path.
type fastPage struct {
	segs   []string
	fields []uint8 // fields[i] follows segs[i]
}

var fastPages sync.Map // fastKey -> *fastPage

const (
	fastSentinel    = "Zq7IcpgateField"
	fastSentinelEnd = "q7Z"
)

// dynamicFields lists BlockPageData's per-request fields.
func (d *BlockPageData) dynamicFields() [6]*string {
	return [6]*string{&d.Domain, &d.Host, &d.RequestID, &d.Node, &d.Time, &d.FilingNumber}
}

// renderFast writes the embedded page for d to w and reports whether it
// could.
func renderFast(w *bytes.Buffer, d *BlockPageData) bool {
	if _, ok := reasonTexts[d.Reason]; !ok || d.Status < 100 || d.Status > 999 {
		return false // keep the cache bounded to the closed set
	}
	vals := d.dynamicFields()
	var present uint8
	for i, p := range vals {
		if *p != "" {
			present |= 1 << i
		}
	}
	key := fastKey{d.Reason, d.Status, d.Blocked, present}
	v, ok := fastPages.Load(key)
	if !ok {
		v, _ = fastPages.LoadOrStore(key, buildFastPage(*d))
	}
	fp := v.(*fastPage)
	if fp == nil {
		return false
	}
	for i, seg := range fp.segs {
		w.WriteString(seg)
		if i < len(fp.fields) {
			htmlEscapeText(w, *vals[fp.fields[i]])
		}
	}
	return true
}

func buildFastPage(d BlockPageData) *fastPage {
	for i, p := range d.dynamicFields() {
		if *p != "" {
			*p = fastSentinel + strconv.Itoa(i) + fastSentinelEnd
		}
	}
	var b strings.Builder
	if err := defaultBlockPage.t.Execute(&b, d); err != nil {
		return nil
	}
	out := b.String()
	fp := &fastPage{}
	for {
		i := strings.Index(out, fastSentinel)
		if i < 0 {
			fp.segs = append(fp.segs, out)
			return fp
		}
		rest := out[i+len(fastSentinel):]
		if len(rest) < 1+len(fastSentinelEnd) || rest[0] < '0' || rest[0] > '5' || rest[1:1+len(fastSentinelEnd)] != fastSentinelEnd {
			return nil // a sentinel was transformed: not a plain text context
		}
		fp.segs = append(fp.segs, out[:i])
		fp.fields = append(fp.fields, rest[0]-'0')
		out = rest[1+len(fastSentinelEnd):]
	}
}

// htmlEscapeText escapes s as html/template does in text and RCDATA
// context (its htmlReplacementTable): NUL, quotes, '&', '+', '<', '>'.
func htmlEscapeText(w *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var r string
		switch s[i] {
		case 0:
			r = "\uFFFD"
		case '"':
			r = "&#34;"
		case '&':
			r = "&amp;"
		case '\'':
			r = "&#39;"
		case '+':
			r = "&#43;"
		case '<':
			r = "&lt;"
		case '>':
			r = "&gt;"
		default:
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(r)
		last = i + 1
	}
	w.WriteString(s[last:])
}
