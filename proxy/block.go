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

	"golang.org/x/net/idna"
)

// ErrBlockPage marks an operator block-page template that does not parse or
// does not render.
var ErrBlockPage = errors.New("invalid block page template")

//go:embed blockpage.html
var defaultBlockPageSource string

// BlockPageTemplate returns the source of the embedded block page, the
// starting point for a replacement (Policy.BlockPage; docs/block-page.md).
func BlockPageTemplate() string { return defaultBlockPageSource }

var (
	defaultTemplate  = template.Must(template.New("blockpage.html").Parse(defaultBlockPageSource))
	defaultBlockPage = &BlockPage{t: defaultTemplate, builtin: true, loc: defaultTimeZone()}
)

// DefaultTimeZone is the zone block pages show the time in when
// Policy.TimeZone is empty.
const DefaultTimeZone = "Asia/Shanghai"

// defaultTimeZone is DefaultTimeZone from the zone database or, where there
// is none (no /usr/share/zoneinfo and a binary built without time/tzdata),
// a fixed UTC+8: mainland China has kept that offset, with no daylight
// saving, since 1991, so the pages show the same times either way.
func defaultTimeZone() *time.Location {
	if loc, err := time.LoadLocation(DefaultTimeZone); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*60*60)
}

// BlockPage is a block-page template with the provider's presentation
// settings (Policy.Provider, TimeZone and ShowNode). It is immutable once
// made and safe for concurrent use. The zero value is not usable; use
// NewBlockPage, DefaultBlockPage or LoadBlockPage.
type BlockPage struct {
	t        *template.Template
	builtin  bool // t is the embedded page, which renderFast can write
	provider Provider
	loc      *time.Location
	showNode bool
	fast     sync.Map // fastKey -> *fastPage, for builtin pages
}

// DefaultBlockPage returns the embedded bilingual block page with the
// default settings: no provider details, Asia/Shanghai time, no node.
func DefaultBlockPage() *BlockPage { return defaultBlockPage }

// NewBlockPage returns the block page p describes: the html/template at
// p.BlockPage (the embedded page when empty) with p.Provider, p.TimeZone
// and p.ShowNode. It checks those fields and renders the template once for
// every reason code, so that a template failing at run time fails here.
// Errors wrap ErrInvalidConfig and name the policy field (and ErrBlockPage
// for the template).
func NewBlockPage(p Policy) (*BlockPage, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: policy.%s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	page := &BlockPage{t: defaultTemplate, builtin: true, provider: p.Provider, loc: defaultBlockPage.loc, showNode: p.ShowNode}
	if p.TimeZone != "" {
		loc, err := time.LoadLocation(p.TimeZone)
		if err != nil {
			return nil, bad("time_zone", "%q: want an IANA time zone name such as Asia/Shanghai (%v)", p.TimeZone, err)
		}
		page.loc = loc
	}
	for _, u := range []struct{ field, url string }{
		{"provider.support_url", p.Provider.SupportURL},
		{"provider.filing_url", p.Provider.FilingURL},
	} {
		if u.url != "" && !isHTTPURL(u.url) {
			return nil, bad(u.field, "%q: want an absolute http or https URL", u.url)
		}
	}
	if p.BlockPage != "" {
		t, err := template.ParseFiles(p.BlockPage)
		if err != nil {
			return nil, fmt.Errorf("%w: policy.block_page: %w: %w", ErrInvalidConfig, ErrBlockPage, err)
		}
		page.t, page.builtin = t, false
	}
	if err := page.check(); err != nil {
		return nil, fmt.Errorf("%w: policy.block_page: %w", ErrInvalidConfig, err)
	}
	return page, nil
}

// LoadBlockPage parses the html/template at path as a replacement block
// page with the default settings (NewBlockPage adds the provider's) and
// renders it once for every reason code. Errors wrap ErrBlockPage.
func LoadBlockPage(path string) (*BlockPage, error) {
	t, err := template.ParseFiles(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBlockPage, err)
	}
	p := &BlockPage{t: t, loc: defaultBlockPage.loc}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// check renders p for every reason code with every field set.
func (p *BlockPage) check() error {
	for reason := range reasonTexts {
		d := p.data(BlockRequest{
			Host:      "www.xn--fsqu00a.xn--fiqs8s",
			Decision:  Decision{Reason: reason, Domain: "xn--fsqu00a.xn--fiqs8s", FilingNumber: "京ICP备10206937号-1"},
			RequestID: "0123456789abcdef", Node: "node",
		})
		d.fillTimes()
		if err := p.t.Execute(io.Discard, d); err != nil {
			return fmt.Errorf("%w: rendering %s: %w", ErrBlockPage, reason, err)
		}
	}
	return nil
}

// samePageSettings reports whether a and b make the same block page, so a
// reload may keep what was built from a.
func samePageSettings(a, b Policy) bool {
	return a.BlockPage == b.BlockPage && a.Provider == b.Provider && a.TimeZone == b.TimeZone && a.ShowNode == b.ShowNode
}

// isHTTPURL reports whether s is an absolute http or https URL.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
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
	// Node names the gateway; the page shows it only with Policy.ShowNode.
	Node string
	// Accept is the request's Accept header; JSON is sent when it prefers
	// application/json over text/html (q-values honoured).
	Accept string
	// Time is shown on the page, in the page's time zone; zero means
	// time.Now().
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
	// Page is the template and its settings; nil means DefaultBlockPage.
	Page *BlockPage
}

// BlockPageData is what a block-page template is executed with; the JSON
// body is the same object with the json names (Time excepted). Every field
// is plain text that html/template escapes where the template puts it.
// docs/block-page.md lists the fields for template authors.
type BlockPageData struct {
	// Status is the response status (403 unless configured otherwise).
	Status int `json:"status"`
	// Blocked is true for a block, false for a gateway error page
	// (bad_request, upstream_unavailable, ...).
	Blocked bool `json:"blocked"`
	// Domain is the registrable domain the decision was about (else the
	// host), as the registry spells it: A-labels for IDNs.
	Domain string `json:"domain"`
	// DomainUnicode is Domain in Unicode (例子.中国 for
	// xn--fsqu00a.xn--fiqs8s), empty when Domain has no A-label or does
	// not convert.
	DomainUnicode string `json:"domain_unicode,omitempty"`
	// Host is the host the client asked for, as received.
	Host string `json:"host"`
	// HostUnicode is Host in Unicode, as DomainUnicode is for Domain.
	HostUnicode string `json:"host_unicode,omitempty"`
	// Reason is the reason code (unfiled, no_access, ...) or gateway error.
	Reason string `json:"reason"`
	// RequestID identifies the block in support's console and CLI.
	RequestID string `json:"request_id"`
	// Node is the gateway's name, empty unless Policy.ShowNode is set.
	Node string `json:"node,omitempty"`
	// Time is when the request was blocked, in Policy.TimeZone with its
	// offset: "2026-12-08 12:30:05 +08:00". Not in the JSON body.
	Time string `json:"-"`
	// TimeRFC3339 is the same instant in RFC 3339 with the offset
	// ("2026-12-08T12:30:05+08:00"), for a datetime attribute; it is the
	// JSON body's "time".
	TimeRFC3339 string `json:"time"`
	// FilingNumber is the filing number of the domain's record, if any.
	FilingNumber string `json:"filing_number"`
	// TitleZh ... AdviceEn explain Reason in Chinese and English: a title,
	// what happened, and what the site owner (or visitor) does next.
	TitleZh   string `json:"title_zh"`
	TitleEn   string `json:"title_en"`
	MessageZh string `json:"message_zh"`
	MessageEn string `json:"message_en"`
	AdviceZh  string `json:"advice_zh"`
	AdviceEn  string `json:"advice_en"`
	// Provider is the provider's name, support contact and links
	// (Policy.Provider); an empty field is not configured.
	Provider Provider `json:"provider,omitzero"`

	when time.Time // Time and TimeRFC3339, unformatted, in the page's zone
}

// pageTimeLayout is how BlockPageData.Time is written. renderFast relies on
// '+' being the only character of its output that needs escaping in HTML.
const pageTimeLayout = "2006-01-02 15:04:05 -07:00"

// fillTimes formats Time and TimeRFC3339.
func (d *BlockPageData) fillTimes() {
	d.Time = d.when.Format(pageTimeLayout)
	d.TimeRFC3339 = d.when.Format(time.RFC3339)
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

// data is the template data of r on p, times not yet formatted
// (fillTimes).
func (p *BlockPage) data(r BlockRequest) BlockPageData {
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
	d := BlockPageData{
		Status:        r.status(),
		Blocked:       r.Error == "",
		Domain:        domain,
		DomainUnicode: unicodeName(domain),
		Host:          r.Host,
		HostUnicode:   unicodeName(r.Host),
		Reason:        reason,
		RequestID:     r.RequestID,
		FilingNumber:  r.Decision.FilingNumber,
		TitleZh:       t.titleZh,
		TitleEn:       t.titleEn,
		MessageZh:     t.messageZh,
		MessageEn:     t.messageEn,
		AdviceZh:      t.adviceZh,
		AdviceEn:      t.adviceEn,
		Provider:      p.provider,
		when:          tm.In(p.loc),
	}
	if p.showNode {
		d.Node = r.Node
	}
	return d
}

// unicodeName returns the Unicode form of a host name with A-labels
// ("xn--..."), an optional port kept, or "" when it has none or does not
// convert both ways under the lookup profile (then the page shows only the
// name as received: never a half-converted one, nor one that stands for
// another name). Names without "xn--" cost nothing: the common case
// allocates nothing.
func unicodeName(host string) string {
	if !hasACELabel(host) {
		return ""
	}
	name, port := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		name, port = host[:i], host[i:]
	}
	u, err := idna.Lookup.ToUnicode(name)
	if err != nil {
		return ""
	}
	if a, err := idna.Lookup.ToASCII(u); err != nil || a != strings.ToLower(name) || a == u {
		return ""
	}
	return u + port
}

// hasACELabel reports whether some label of s starts with "xn--", in any
// case.
func hasACELabel(s string) bool {
	for i := 0; i+4 <= len(s); i++ {
		if (i == 0 || s[i-1] == '.') && (s[i]|0x20) == 'x' && (s[i+1]|0x20) == 'n' && s[i+2] == '-' && s[i+3] == '-' {
			return true
		}
	}
	return false
}

var blockBufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// WriteBlock writes a complete HTTP/1.1 block (or gateway error) response to
// w in one Write: status, Content-Type, Content-Length,
// Cache-Control: no-store, X-Icpgate-Reason, X-Request-Id and
// Connection: close, then an HTML page or a JSON object. The caller closes
// the connection afterwards.
func WriteBlock(w io.Writer, req BlockRequest) error {
	page := req.Page
	if page == nil {
		page = defaultBlockPage
	}
	d := page.data(req)
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
		d.TimeRFC3339 = d.when.Format(time.RFC3339)
		enc := json.NewEncoder(body)
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("encoding block response: %w", err)
		}
	default:
		if !page.builtin || !page.renderFast(body, &d) {
			d.fillTimes()
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
// Reason codes are a closed set (registry.Reasons and the data plane's own); a test checks each has a text.
var reasonTexts = map[string]reasonText{
	"filed": {
		"网站已备案", "Site is filed",
		"该域名已有 ICP 备案，并已在本服务商接入。",
		"This domain has an ICP filing that lists this provider as its access provider.",
		"正常情况下不会看到本页。如果网站仍然打不开，请联系客服并提供请求 ID。",
		"You should not normally see this page. If the site stays unreachable, contact support with the request ID.",
	},
	"access_pending": {
		"接入备案初审已通过", "Access filing passed preliminary review",
		"该域名在本服务商的接入备案已通过初审，正在等待管局审核，审核期间网站可以访问。",
		"The access filing for this domain has passed this provider's preliminary review and awaits the filing authority; the site may be reached in the meantime.",
		"请留意管局发来的短信和邮件，按要求完成核验或补充材料。如果网站仍然打不开，请联系客服并提供请求 ID。",
		"Watch for text messages and e-mails from the filing authority and complete any verification or material it asks for. If the site stays unreachable, contact support with the request ID.",
	},
	"rectifying": {
		"备案整改中", "Filing under rectification",
		"该域名的备案信息需要整改，整改期限内网站仍可正常访问。",
		"The filing for this domain must be corrected; the site stays reachable until the rectification deadline.",
		"请在期限前按整改通知修改备案信息。逾期未整改的，本服务商可能取消接入，管局也可能注销备案，网站将因此无法访问。",
		"Correct the filing as the rectification notice asks before the deadline. After the deadline this provider may withdraw access, or the authority may cancel the filing, and the site goes offline.",
	},
	"rectification_overdue": {
		"备案整改已逾期", "Rectification deadline passed",
		"该域名的备案整改期限已过，整改尚未完成，网站已暂停访问。",
		"The deadline for correcting this domain's filing passed before the corrections were made, so the site is suspended.",
		"请网站负责人尽快按整改通知变更备案信息；变更审核通过、本服务商记录更新后，网站即恢复访问。如果接入已被取消或备案已被注销，则需要重新办理接入备案或备案。",
		"Site owner: make the corrections the rectification notice asks for (a change filing) as soon as possible; the site returns once they are approved and this provider's records are updated. If access has since been withdrawn or the filing cancelled, a new access filing or a new filing is needed.",
	},
	"no_access": {
		"未在本服务商接入", "Not accessed through this provider",
		"该域名已有 ICP 备案，但备案中的接入服务商不包括本服务商。",
		"This domain has an ICP filing, but the filing does not list this provider as an access provider.",
		"请网站负责人在本服务商提交接入备案，将本服务商添加为接入服务商。接入备案审核通过、本服务商记录更新后即可访问；初审通过后，如需在管局审核期间提前开通，可联系客服申请。",
		"Site owner: submit an access filing with this provider to add it as an access provider. The site opens once that filing is approved and recorded here; after this provider's preliminary review passes, you can ask support to open the site while the authority reviews the filing.",
	},
	"filing_pending": {
		"备案审核中", "Filing under review",
		"该域名的备案（首次备案或新增网站）正在审核。审核通过前，网站不能开通访问。",
		"A filing for this domain (a first filing or a new website) is under review; the site may not be opened to visitors until it is approved.",
		"请等待审核结果，并留意管局的短信核验通知。备案号下发、本服务商记录更新后，网站会自动开通，无需另行申请。",
		"Wait for the decision and watch for the filing authority's verification text message. Once the filing number is issued and this provider's records are updated, the site opens with no further request.",
	},
	"cancelled": {
		"备案已注销", "Filing cancelled",
		"该域名的 ICP 备案已注销：可能是备案主体自己申请注销，也可能是管局依规注销（例如备案信息不实，或网站已没有任何接入服务商）。",
		"The ICP filing for this domain has been cancelled, either at the request of its holder or by the filing authority (for example because the filing was inaccurate or no access provider remained).",
		"注销的备案号无法恢复。请网站负责人通过本服务商为该域名重新办理备案，审核通过、取得新的备案号后即可访问。",
		"A cancelled filing number cannot be restored. Site owner: file the domain again through this provider; the site opens once the new filing is approved and has its number.",
	},
	"access_revoked": {
		"接入已取消", "Access withdrawn",
		"本服务商已取消该域名的接入，例如整改逾期，或网站已迁往其他服务商。",
		"This provider has withdrawn access for this domain, for example after an overdue rectification or a move to another provider.",
		"如需继续在本服务商托管，请重新提交接入备案；如果取消接入后备案已被注销，则需要重新办理备案。取消原因可咨询客服。",
		"To host the site here again, submit a new access filing; if the filing was cancelled after access was withdrawn, file the domain again. Support can tell you why access was withdrawn.",
	},
	"blacklisted": {
		"域名已被列入黑名单", "Domain is blacklisted",
		"该域名已被列入黑名单，本服务商不能为其提供访问。",
		"This domain is on a blacklist, so this provider cannot serve it.",
		"列入黑名单的原因以及能否解除，请向当地通信管理局咨询。如认为本服务商的记录有误，请联系客服并提供请求 ID。",
		"Ask the provincial communications administration why the domain was blacklisted and whether the listing can be lifted. If you believe this provider's record is wrong, contact support with the request ID.",
	},
	"unfiled": {
		"网站未备案", "Site not filed",
		"本服务商的备案记录中没有该域名。中国大陆境内服务器上的网站，域名须先完成 ICP 备案才能开通访问。",
		"This provider has no ICP filing on record for this domain. A website on a server in mainland China may be opened to visitors only once its domain has an ICP filing.",
		"请网站负责人通过本服务商为该域名办理 ICP 备案（由本服务商作为接入服务商）。管局审核通过、取得备案号后即可开通访问，审核期间网站不能上线。如果该域名已在其他服务商备案，请改为在本服务商办理接入备案。",
		"Site owner: file this domain for ICP through this provider, which then becomes its access provider. The site opens once the filing authority approves the filing and issues its number; it stays offline during the review. If the domain is already filed through another provider, submit an access filing here instead.",
	},
	"suffix_not_fileable": {
		"域名后缀不支持备案", "Suffix cannot be filed",
		"该域名的后缀不在工信部可备案的域名后缀之列，无法办理 ICP 备案。",
		"This domain's suffix is not one the MIIT accepts for ICP filing, so the domain cannot be filed.",
		"请改用可备案后缀的域名（工信部公示可备案的后缀），该域名须在工信部批准的注册服务机构注册并完成实名认证；为新域名办理备案后，再将网站迁移过去。",
		"Move the site to a domain under a suffix the MIIT lists as fileable, registered with an MIIT-approved registrar under the filer's verified name, and file that domain first.",
	},
	"ip_access": {
		"不允许通过 IP 访问", "Access by IP address not allowed",
		"本节点不允许直接通过 IP 地址或不带主机名访问。",
		"This node does not allow access by IP address or without a host name.",
		"请使用网站的域名访问。",
		"Visit the site through its domain name.",
	},
	"invalid_host": {
		"主机名无效", "Invalid host name",
		"请求中的主机名不是有效的域名。",
		"The host name in the request is not a valid domain name.",
		"请检查输入的网址。网站负责人请确认网站链接使用的是已备案的域名。",
		"Check the address. Site owners: make sure the site's links use its filed domain name.",
	},
	"override_allow": {
		"已临时放行", "Temporarily allowed",
		"客服已为该域名临时开通访问。",
		"Support has temporarily opened access for this domain.",
		"请在临时放行到期前办妥备案手续，以免到期后访问中断。如果网站仍然打不开，请联系客服并提供请求 ID。",
		"Complete the filing before the temporary access ends, or the site goes offline then. If the site stays unreachable, contact support with the request ID.",
	},
	"override_deny": {
		"已被服务商拦截", "Blocked by the provider",
		"本服务商已对该域名设置拦截。",
		"This provider has blocked this domain.",
		"请联系客服并提供请求 ID，了解拦截原因及解除条件。",
		"Contact support with the request ID to learn why and what is needed to lift the block.",
	},
	"unknown": {
		"访问被拦截", "Access blocked",
		"网关拦截了该请求。",
		"The gateway blocked this request.",
		"请联系客服并提供请求 ID。",
		"Contact support with the request ID.",
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
// html/template's text escaper does, and the time formatted straight into
// the buffer. Each BlockPage keeps its own segments, since the provider's
// details are part of them. TestBlockFastMatchesTemplate checks the two
// paths produce identical bytes. Operator templates always take the slow
// path: they may branch on a field's value, which sentinels would defeat.

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

const (
	fastSentinel    = "Zq7IcpgateField"
	fastSentinelEnd = "q7Z"
)

// fastTime is the index of Time among the dynamic fields: it is written
// from BlockPageData.when, not from the (unformatted) string.
const fastTime = 6

// dynamicFields lists BlockPageData's per-request fields.
func (d *BlockPageData) dynamicFields() [8]*string {
	return [8]*string{&d.Domain, &d.DomainUnicode, &d.Host, &d.HostUnicode,
		&d.RequestID, &d.Node, &d.Time, &d.FilingNumber}
}

// renderFast writes the embedded page for d to w and reports whether it
// could.
func (p *BlockPage) renderFast(w *bytes.Buffer, d *BlockPageData) bool {
	if _, ok := reasonTexts[d.Reason]; !ok || d.Status < 100 || d.Status > 999 {
		return false // keep the cache bounded to the closed set
	}
	vals := d.dynamicFields()
	present := uint8(1) << fastTime // a page always has its time
	for i, v := range vals {
		if *v != "" {
			present |= 1 << i
		}
	}
	key := fastKey{d.Reason, d.Status, d.Blocked, present}
	v, ok := p.fast.Load(key)
	if !ok {
		v, _ = p.fast.LoadOrStore(key, p.buildFastPage(*d, present))
	}
	fp := v.(*fastPage)
	if fp == nil {
		return false
	}
	for i, seg := range fp.segs {
		w.WriteString(seg)
		if i >= len(fp.fields) {
			break
		}
		if f := fp.fields[i]; f == fastTime {
			writePageTime(w, d.when)
		} else {
			htmlEscapeText(w, *vals[f])
		}
	}
	return true
}

func (p *BlockPage) buildFastPage(d BlockPageData, present uint8) *fastPage {
	for i, v := range d.dynamicFields() {
		if present&(1<<i) != 0 {
			*v = fastSentinel + strconv.Itoa(i) + fastSentinelEnd
		}
	}
	// Not a dynamic field: a template using it gets the slow path.
	d.TimeRFC3339 = fastSentinel + "-" + fastSentinelEnd
	var b strings.Builder
	if err := p.t.Execute(&b, d); err != nil {
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
		if len(rest) < 1+len(fastSentinelEnd) || rest[0] < '0' || rest[0] > '7' || rest[1:1+len(fastSentinelEnd)] != fastSentinelEnd {
			return nil // a sentinel was transformed: not a plain text context
		}
		fp.segs = append(fp.segs, out[:i])
		fp.fields = append(fp.fields, rest[0]-'0')
		out = rest[1+len(fastSentinelEnd):]
	}
}

// writePageTime writes t in pageTimeLayout, escaped as html/template
// escapes text: of the layout's characters (digits, '-', ' ', ':', '+')
// only '+' changes. Formatting into a stack buffer allocates nothing.
func writePageTime(w *bytes.Buffer, t time.Time) {
	var buf [len(pageTimeLayout) + 8]byte
	b := t.AppendFormat(buf[:0], pageTimeLayout)
	for {
		i := bytes.IndexByte(b, '+')
		if i < 0 {
			w.Write(b)
			return
		}
		w.Write(b[:i])
		w.WriteString("&#43;")
		b = b[i+1:]
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
