package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
)

// Strict HTTP/1.x message head and chunked-framing parsing (RFC 9112).
//
// The parser works on a complete head held in the connection's buffer and
// records fields as offsets into it: it allocates nothing. It is stricter
// than net/http wherever net/http is lenient in a way a smuggling attack can
// use; every such difference is listed in httpparse_test.go's differential
// table (field "stricter") and the fuzz target checks that whatever we accept
// net/http accepts too, with the same method, target and Host.

// Sentinel errors of the HTTP handler. Parse errors wrap one of them; the
// handler maps them to a status code with httpErrorStatus.
var (
	// ErrHTTPBadRequest marks a malformed or ambiguous request (400).
	ErrHTTPBadRequest = errors.New("bad request")
	// ErrHTTPHeaderTooLarge marks a request head over Limits.MaxHeaderBytes
	// or with more than Limits.MaxHeaders fields (431).
	ErrHTTPHeaderTooLarge = errors.New("request header fields too large")
	// ErrHTTPMethodNotAllowed marks CONNECT, which a gateway does not tunnel (405).
	ErrHTTPMethodNotAllowed = errors.New("method not allowed")
	// ErrHTTPVersion marks an HTTP version other than 1.0 and 1.1 (505).
	ErrHTTPVersion = errors.New("http version not supported")
	// ErrHTTPExpectation marks an Expect field other than 100-continue
	// (417), which the gateway cannot meet: forwarded, origins answer it
	// differently, some before reading the body and then closing.
	ErrHTTPExpectation = errors.New("expectation failed")
	// ErrHTTPBadResponse marks a malformed upstream response (502).
	ErrHTTPBadResponse = errors.New("bad upstream response")
)

// span is a byte range [s, e) of the connection buffer.
type span struct{ s, e int32 }

func (p span) of(b []byte) []byte { return b[p.s:p.e] }

// hdrField is one header field: name and value (OWS trimmed) spans.
type hdrField struct {
	name, value span
	drop        bool // hop-by-hop or replaced: not forwarded
}

// Connection-option flags collected from the Connection header.
const (
	connClose = 1 << iota
	connKeepAlive
	connUpgrade
)

const maxConnTokens = 16 // Connection options that name headers to drop

// msgHead is a parsed request or response head. Spans index the buffer the
// head was parsed from; they are valid until that buffer is compacted.
type msgHead struct {
	// Request line (requests) or status line (responses).
	method, target span // request
	status         int  // response
	minor          int  // HTTP/1.minor

	// authority is the host the request is decided on: the absolute-form
	// target's authority if present, else the Host field value.
	authority    span
	hasAuthority bool // Host field present or absolute-form target
	absolute     bool // absolute-form target
	path         span // origin-form of an absolute-form target ("" = "/")

	fields  []hdrField
	conn    int // connClose | connKeepAlive | connUpgrade
	tokens  [maxConnTokens]span
	ntokens int

	contentLength int64 // -1: none
	clValue       span  // the first Content-Length field's value
	chunked       bool
	teOther       bool // response: a transfer coding other than final chunked
	upgrade       span // Upgrade field value
	hasUpgrade    bool
	h2c           bool // Upgrade lists h2c
	expect100     bool
	accept        span // last Accept field value (requests)
}

func (h *msgHead) reset(fields []hdrField) {
	*h = msgHead{fields: fields[:0], contentLength: -1}
}

func badRequest(msg string) error { return fmt.Errorf("%w: %s", ErrHTTPBadRequest, msg) }

// headEnd scans b[from:] for the end of a message head and returns the index
// just past its terminating empty line, or -1 if the head is incomplete. It
// fails fast on a bare LF so a client cannot make us wait for a CRLF CRLF
// that never comes. from lets the caller resume after a partial read.
func headEnd(b []byte, from int) (int, error) {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i == 0 || b[i-1] != '\r' {
			return -1, badRequest("bare LF in head")
		}
		if i == 1 {
			return -1, badRequest("empty line before request line")
		}
		if i >= 3 && b[i-2] == '\n' {
			return i + 1, nil
		}
	}
	return -1, nil
}

// headScanFrom returns where headEnd may resume after it saw n bytes without
// an end: three bytes back, so a CRLF CRLF split across reads is found.
func headScanFrom(n int) int {
	if n > 3 {
		return n - 3
	}
	return 0
}

// tchar reports RFC 9110 token characters.
var tchar = [256]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true, '*': true,
	'+': true, '-': true, '.': true, '^': true, '_': true, '`': true, '|': true, '~': true,
}

// validHostByte mirrors golang.org/x/net/http/httpguts.ValidHostHeader's
// table, minus nothing: a Host we accept is one net/http accepts. '@' is not
// in it, so userinfo never reaches the decision.
var validHostByte = [256]bool{
	'!': true, '$': true, '%': true, '&': true, '(': true, ')': true, '*': true,
	'+': true, ',': true, '-': true, '.': true, ':': true, ';': true, '=': true,
	'[': true, '\'': true, ']': true, '_': true, '~': true,
}

func init() {
	for c := '0'; c <= '9'; c++ {
		tchar[c] = true
		validHostByte[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		tchar[c], tchar[c-'a'+'A'] = true, true
		validHostByte[c], validHostByte[c-'a'+'A'] = true, true
	}
}

// lower folds an ASCII letter.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && equalFold(b[:len(s)], s)
}

// parseRequestHead parses the complete request head b (ending in CRLF CRLF,
// as found by headEnd) into h. maxFields caps the number of header fields.
func parseRequestHead(b []byte, h *msgHead, maxFields int) error {
	// Request line: method SP request-target SP HTTP-version CRLF, single
	// spaces only (RFC 9112 §3 allows a lenient parser; we are not one).
	i := 0
	for i < len(b) && tchar[b[i]] {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' {
		return badRequest("invalid method")
	}
	h.method = span{0, int32(i)}
	i++
	ts := i
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	if i == ts || i >= len(b) || b[i] != ' ' {
		return badRequest("invalid request target")
	}
	h.target = span{int32(ts), int32(i)}
	i++
	if len(b)-i < 10 || string(b[i:i+5]) != "HTTP/" {
		return badRequest("invalid http version")
	}
	v := b[i+5 : i+8]
	if b[i+8] != '\r' || b[i+9] != '\n' {
		return badRequest("invalid http version")
	}
	switch {
	case v[0] == '1' && v[1] == '.' && v[2] == '1':
		h.minor = 1
	case v[0] == '1' && v[1] == '.' && v[2] == '0':
		h.minor = 0
	case v[0] >= '0' && v[0] <= '9' && v[1] == '.' && v[2] >= '0' && v[2] <= '9':
		return fmt.Errorf("%w: HTTP/%s", ErrHTTPVersion, v)
	default:
		return badRequest("invalid http version")
	}
	i += 10

	method := h.method.of(b)
	target := h.target.of(b)
	if string(method) == "CONNECT" {
		return fmt.Errorf("%w: CONNECT", ErrHTTPMethodNotAllowed)
	}
	if err := h.checkTarget(b, method, target); err != nil {
		return err
	}

	hostFields := 0
	var hostValue span
	if err := parseFields(b, i, h, maxFields, true); err != nil {
		return err
	}
	for k := range h.fields {
		f := &h.fields[k]
		if equalFold(f.name.of(b), "host") {
			hostFields++
			hostValue = f.value
		}
	}
	switch {
	case hostFields > 1:
		return badRequest("duplicate Host")
	case hostFields == 1:
		hv := hostValue.of(b)
		if len(hv) == 0 {
			// RFC 9112 §3.2 allows an empty Host only when the target has
			// no authority, which an http(s) request always has: reject
			// (net/http accepts it).
			return badRequest("empty Host")
		}
		for _, c := range hv {
			if !validHostByte[c] {
				return badRequest("invalid Host")
			}
		}
		if !h.absolute {
			h.authority = hostValue
			h.hasAuthority = true
		}
	case h.minor == 1:
		// Required even with an absolute-form target (RFC 9112 §3.2).
		return badRequest("missing Host")
	}
	if h.chunked && h.contentLength >= 0 {
		return badRequest("Content-Length with Transfer-Encoding")
	}
	if h.chunked && h.minor == 0 {
		// RFC 9112 §6.1: chunked is not defined for HTTP/1.0; treat the
		// message as faulty rather than guess its framing.
		return badRequest("Transfer-Encoding in HTTP/1.0 request")
	}
	return nil
}

// checkTarget validates the request target's form and records the authority
// of an absolute-form target, which overrides Host (RFC 9112 §3.2.2).
func (h *msgHead) checkTarget(b, method, target []byte) error {
	switch {
	case target[0] == '/':
		return checkPathQuery(target)
	case len(target) == 1 && target[0] == '*':
		if string(method) != "OPTIONS" {
			return badRequest("asterisk-form target without OPTIONS")
		}
		return nil
	}
	// absolute-form: http:// or https:// (case-insensitive scheme).
	var rest int
	switch {
	case hasPrefixFold(target, "http://"):
		rest = 7
	case hasPrefixFold(target, "https://"):
		rest = 8
	default:
		return badRequest("invalid request target")
	}
	a := rest
	for a < len(target) && target[a] != '/' && target[a] != '?' && target[a] != '#' {
		c := target[a]
		if c == '@' {
			return badRequest("userinfo in request target")
		}
		if !validHostByte[c] {
			return badRequest("invalid authority in request target")
		}
		a++
	}
	if a == rest {
		return badRequest("empty authority in request target")
	}
	if err := checkAuthority(target[rest:a]); err != nil {
		return err
	}
	if err := checkPathQuery(target[a:]); err != nil {
		return err
	}
	off := h.target.s
	h.absolute = true
	h.hasAuthority = true
	h.authority = span{off + int32(rest), off + int32(a)}
	h.path = span{off + int32(a), h.target.e}
	return nil
}

// checkPathQuery checks the path and query of a request target: no
// fragment, and every '%' starts a two-hex-digit escape, as net/url
// requires; a malformed escape is refused rather than passed to an upstream
// that may decode it differently.
func checkPathQuery(p []byte) error {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '#':
			return badRequest("fragment in request target")
		case '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return badRequest("invalid percent-escape in request target")
			}
			i += 2
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkAuthority validates an absolute-form authority (host[:port], host a
// reg-name or bracketed IP literal) more strictly than net/url: no '%'
// escapes (net/url would decode them, so the upstream and the decision
// could see different names) and a port of digits only.
func checkAuthority(a []byte) error {
	host, port := a, []byte(nil)
	if a[0] == '[' {
		j := 1
		for j < len(a) && a[j] != ']' {
			j++
		}
		if j == len(a) {
			return badRequest("unterminated IP literal in request target")
		}
		host, port = a[:j+1], a[j+1:]
		if len(port) > 0 && port[0] != ':' {
			return badRequest("invalid authority in request target")
		}
		// The brackets must hold an IPv6 address (RFC 3986 IP-literal;
		// IPvFuture and zones are refused): "[]" or "[x]" is no host.
		// Rare path, so the string conversion's allocation does not matter.
		if ip, err := netip.ParseAddr(string(host[1:j])); err != nil || !ip.Is6() || ip.Zone() != "" {
			return badRequest("invalid IP literal in request target")
		}
	} else {
		for j, c := range a {
			if c == ':' {
				host, port = a[:j], a[j:]
				break
			}
		}
	}
	for _, c := range host[min(1, len(host)):] {
		if c == '%' || (host[0] != '[' && (c == '[' || c == ']')) {
			return badRequest("invalid host in request target")
		}
	}
	if len(host) == 0 || host[0] == '%' {
		return badRequest("invalid host in request target")
	}
	if len(port) > 0 {
		for _, c := range port[1:] {
			if c < '0' || c > '9' {
				return badRequest("invalid port in request target")
			}
		}
	}
	return nil
}

// parseFields parses header fields from b[i:] up to the empty line. request
// selects request-only checks. It records framing-relevant fields in h.
func parseFields(b []byte, i int, h *msgHead, maxFields int, request bool) error {
	teFields, clFields := 0, 0
	for {
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return nil // end of head
		}
		if i >= len(b) {
			return badRequest("truncated head")
		}
		if b[i] == ' ' || b[i] == '\t' {
			return badRequest("obs-fold or leading whitespace in header")
		}
		ns := i
		for i < len(b) && tchar[b[i]] {
			i++
		}
		if i == ns || i >= len(b) || b[i] != ':' {
			return badRequest("invalid header name")
		}
		name := span{int32(ns), int32(i)}
		i++
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		vs := i
		for i < len(b) && b[i] != '\r' {
			c := b[i]
			if c < ' ' && c != '\t' || c == 0x7f {
				return badRequest("control character in header value")
			}
			i++
		}
		if i+1 >= len(b) || b[i+1] != '\n' {
			return badRequest("CR without LF in header")
		}
		ve := i
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		i += 2
		if len(h.fields) >= maxFields {
			return fmt.Errorf("%w: more than %d fields", ErrHTTPHeaderTooLarge, maxFields)
		}
		h.fields = append(h.fields, hdrField{name: name, value: span{int32(vs), int32(ve)}})
		f := &h.fields[len(h.fields)-1]
		n, v := name.of(b), f.value.of(b)
		switch len(n) {
		case 7:
			if equalFold(n, "upgrade") {
				f.drop = true // re-added only for a real upgrade
				h.hasUpgrade = true
				h.upgrade = f.value
				forTokens(v, func(t []byte) {
					if equalFold(t, "h2c") {
						h.h2c = true
					}
				})
			}
		case 10:
			if equalFold(n, "connection") {
				f.drop = true
				if err := h.connectionTokens(b, f.value, request); err != nil {
					return err
				}
			}
		case 14:
			if equalFold(n, "content-length") {
				// Requests are forwarded with framing the gateway writes
				// from what it parsed (forward), never the client's field.
				f.drop = request
				clFields++
				cl, ok := parseContentLength(v)
				if !ok {
					return badRequest("invalid Content-Length")
				}
				// Repeats must be the same text, not only the same number:
				// "5" and "05" read differently elsewhere (net/http refuses
				// them), which is room for request smuggling.
				if h.contentLength >= 0 && (cl != h.contentLength || !bytes.Equal(v, h.clValue.of(b))) {
					return badRequest("differing Content-Length fields")
				}
				h.contentLength, h.clValue = cl, f.value
			}
		case 17:
			if equalFold(n, "transfer-encoding") {
				f.drop = request // as Content-Length
				teFields++
				if err := h.transferEncoding(v, teFields, request); err != nil {
					return err
				}
			}
		case 6:
			if request && equalFold(n, "accept") {
				h.accept = f.value
			}
			if request && equalFold(n, "expect") {
				if !equalFold(v, "100-continue") {
					return fmt.Errorf("%w: Expect %q", ErrHTTPExpectation, v)
				}
				h.expect100 = true
				f.drop = true // we answer 100 Continue ourselves
			}
		}
	}
}

// transferEncoding records a Transfer-Encoding field. Requests: exactly one
// field whose value is exactly "chunked" (we decode no other coding, and
// anything else is a smuggling vector). Responses: chunked as the final
// coding means chunked framing; any other coding means close-delimited
// (RFC 9112 §6.3).
func (h *msgHead) transferEncoding(v []byte, nfields int, request bool) error {
	if request {
		if nfields > 1 {
			return badRequest("more than one Transfer-Encoding field")
		}
		if !equalFold(v, "chunked") {
			return badRequest("unsupported Transfer-Encoding")
		}
		h.chunked = true
		return nil
	}
	last := []byte(nil)
	forTokens(v, func(t []byte) { last = t })
	if last == nil {
		return fmt.Errorf("%w: empty Transfer-Encoding", ErrHTTPBadResponse)
	}
	if equalFold(last, "chunked") && !h.teOther {
		h.chunked = true
	} else {
		h.chunked = false
		h.teOther = true
	}
	return nil
}

// connectionTokens records the options of a Connection field. Options that
// name other fields mark those fields hop-by-hop (markDropped), except the
// fields that frame the message or name its target: Content-Length,
// Transfer-Encoding and Host. A request that lists one of them is refused.
// Dropping such a field while relaying the body by the length parsed from
// it is how a request for a blocked site was once smuggled inside the body
// of a passing one, and no legitimate client lists them. A response that
// lists one is relayed with the field kept: the gateway frames what it
// sends by what it parsed, and refusing the origin's answer would only
// turn a quirk of the origin into an outage of the site.
func (h *msgHead) connectionTokens(b []byte, v span, request bool) error {
	var err error
	start := v.s
	val := v.of(b)
	forTokens(val, func(t []byte) {
		switch {
		case equalFold(t, "close"):
			h.conn |= connClose
		case equalFold(t, "keep-alive"):
			h.conn |= connKeepAlive
		case equalFold(t, "upgrade"):
			h.conn |= connUpgrade
		case isFramingField(t):
			if request && err == nil {
				err = badRequest("Connection names a framing field")
			}
		default:
			if h.ntokens == maxConnTokens {
				if err == nil {
					err = badRequest("too many Connection options")
				}
				return
			}
			// Recover the token's offset in b from its position in val.
			off := start + int32(cap(val)-cap(t))
			h.tokens[h.ntokens] = span{off, off + int32(len(t))}
			h.ntokens++
		}
	})
	return err
}

// isFramingField reports the fields a Connection option may never remove:
// those that say where a message ends or which site it is for.
func isFramingField(n []byte) bool {
	switch len(n) {
	case 4:
		return equalFold(n, "host")
	case 14:
		return equalFold(n, "content-length")
	case 17:
		return equalFold(n, "transfer-encoding")
	}
	return false
}

// forTokens calls fn for each non-empty comma-separated element of v, OWS
// trimmed.
func forTokens(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		j := 0
		for j < len(v) && v[j] != ',' {
			j++
		}
		t := v[:j]
		for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
			t = t[1:]
		}
		for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
			t = t[:len(t)-1]
		}
		if len(t) > 0 {
			fn(t)
		}
		if j == len(v) {
			return
		}
		v = v[j+1:]
	}
}

// parseContentLength accepts 1*DIGIT up to 18 digits (no sign, no list).
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// isHopByHop reports fields a proxy never forwards (RFC 9110 §7.6.1) plus the
// client-supplied fields icpgate replaces with its own (forwarding fields
// and X-Request-Id).
func isHopByHop(n []byte) bool {
	switch len(n) {
	case 2:
		return equalFold(n, "te")
	case 7:
		return equalFold(n, "trailer")
	case 9:
		return equalFold(n, "forwarded") || equalFold(n, "x-real-ip")
	case 10:
		return equalFold(n, "keep-alive")
	case 12:
		return equalFold(n, "x-request-id")
	}
	return hasPrefixFold(n, "proxy-") || hasPrefixFold(n, "x-forwarded-")
}

// isResponseHopByHop is isHopByHop for responses: forwarding fields from the
// upstream are the upstream's business and pass.
func isResponseHopByHop(n []byte) bool {
	switch len(n) {
	case 2:
		return equalFold(n, "te")
	case 7:
		return equalFold(n, "trailer")
	case 10:
		return equalFold(n, "keep-alive")
	}
	return hasPrefixFold(n, "proxy-")
}

// markDropped marks hop-by-hop fields and the fields the Connection header
// names as dropped.
func (h *msgHead) markDropped(b []byte, hop func([]byte) bool) {
	for k := range h.fields {
		f := &h.fields[k]
		if f.drop {
			continue
		}
		n := f.name.of(b)
		if hop(n) {
			f.drop = true
			continue
		}
		for t := 0; t < h.ntokens; t++ {
			if equalFoldBytes(n, h.tokens[t].of(b)) {
				f.drop = true
				break
			}
		}
	}
}

// equalFoldBytes reports whether a and b are equal ignoring ASCII case.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// parseResponseHead parses the complete response head b into h.
func parseResponseHead(b []byte, h *msgHead, maxFields int) error {
	// HTTP/1.x SP 3DIGIT SP reason CRLF
	if len(b) < 14 || string(b[:7]) != "HTTP/1." || (b[7] != '0' && b[7] != '1') || b[8] != ' ' {
		return fmt.Errorf("%w: invalid status line", ErrHTTPBadResponse)
	}
	h.minor = int(b[7] - '0')
	st := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: invalid status code", ErrHTTPBadResponse)
		}
		st = st*10 + int(c-'0')
	}
	if st < 100 {
		return fmt.Errorf("%w: invalid status code", ErrHTTPBadResponse)
	}
	h.status = st
	i := 12
	if b[i] == ' ' {
		for i < len(b) && b[i] != '\r' {
			if b[i] < ' ' && b[i] != '\t' || b[i] == 0x7f {
				return fmt.Errorf("%w: control character in reason", ErrHTTPBadResponse)
			}
			i++
		}
	}
	if i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return fmt.Errorf("%w: invalid status line", ErrHTTPBadResponse)
	}
	if err := parseFields(b, i+2, h, maxFields, false); err != nil {
		if errors.Is(err, ErrHTTPBadResponse) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrHTTPBadResponse, err)
	}
	if h.chunked || h.teOther {
		h.contentLength = -1 // RFC 9112 §6.3: Transfer-Encoding overrides
	}
	return nil
}

// chunkSize parses a chunk-size line (without its CRLF): 1*16HEXDIG and an
// optional extension after ';' made of non-control bytes. No sign, no "0x",
// no whitespace before the size; the value must fit in an int64.
func chunkSize(line []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, badRequest("chunk size overflow")
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, badRequest("invalid chunk size")
	}
	rest := line[i:]
	// BWS before ';' is allowed by RFC 9112 §7.1.1.
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 {
		if rest[0] != ';' {
			return 0, badRequest("invalid chunk size")
		}
		for _, c := range rest {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, badRequest("control character in chunk extension")
			}
		}
	} else if i < len(line) {
		return 0, badRequest("whitespace after chunk size")
	}
	return n, nil
}
