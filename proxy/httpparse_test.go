package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// httpParsed is what both parsers agree on for an accepted request.
type httpParsed struct {
	method, target, host string
}

// httpOurParse runs the handler's parser over a complete raw request: head, then
// the body framing (Content-Length bytes present, or chunked framing valid
// to its end when body is true).
func httpOurParse(raw []byte, body bool) (httpParsed, error) {
	end, err := headEnd(raw, 0)
	if err != nil {
		return httpParsed{}, err
	}
	if end < 0 {
		return httpParsed{}, badRequest("incomplete head")
	}
	var h msgHead
	h.reset(make([]hdrField, 0, 8))
	head := raw[:end]
	if err := parseRequestHead(head, &h, defaultMaxHeaders); err != nil {
		return httpParsed{}, err
	}
	p := httpParsed{method: string(h.method.of(head)), target: string(h.target.of(head))}
	if h.hasAuthority {
		p.host = string(h.authority.of(head))
	}
	if !body {
		return p, nil
	}
	rest := raw[end:]
	switch {
	case h.chunked:
		var k chunkReader
		for k.st != ckDone {
			n, err := k.step(rest)
			if err != nil {
				return httpParsed{}, err
			}
			if n == 0 {
				return httpParsed{}, badRequest("truncated chunked body")
			}
			rest = rest[n:]
		}
	case h.contentLength > int64(len(rest)):
		return httpParsed{}, badRequest("truncated body")
	}
	return p, nil
}

// httpRefParse is the reference: http.ReadRequest plus the checks net/http's
// server adds in (*conn).readRequest (supported version, Host present,
// single and valid, valid field names and values), plus reading the body to
// its end when body is true.
func httpRefParse(raw []byte, body bool) (httpParsed, error) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(raw))))
	if err != nil {
		return httpParsed{}, err
	}
	if req.ProtoMajor != 1 && !(req.Method == "PRI" && req.RequestURI == "*") {
		return httpParsed{}, errors.New("unsupported protocol version")
	}
	// ReadRequest moves Host out of the header map; the server's checks
	// look at the fields as read, so read them again the same way.
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(string(raw))))
	if _, err := tp.ReadLine(); err != nil {
		return httpParsed{}, err
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return httpParsed{}, err
	}
	hosts, haveHost := mh["Host"]
	isH2Upgrade := req.Method == "PRI" && len(req.Header) == 0 && req.URL.Path == "*" && req.Proto == "HTTP/2.0"
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && !isH2Upgrade && req.Method != "CONNECT" {
		return httpParsed{}, errors.New("missing required Host header")
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return httpParsed{}, errors.New("malformed Host header")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return httpParsed{}, errors.New("invalid header name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return httpParsed{}, errors.New("invalid header value")
			}
		}
	}
	if body {
		if _, err := io.ReadAll(req.Body); err != nil {
			return httpParsed{}, fmt.Errorf("body: %w", err)
		}
	}
	return httpParsed{method: req.Method, target: req.RequestURI, host: req.Host}, nil
}

// httpDiffCases is the differential table. stricter documents, for a request
// net/http accepts, why we refuse it; a case whose stricter note is set
// must be refused by us and accepted by net/http, so the notes stay true.
var httpDiffCases = []struct {
	name     string
	raw      string
	ok       bool   // we accept
	host     string // authority we decide on, when ok
	stricter string
}{
	{name: "simple", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n", ok: true, host: "filed.cn"},
	{name: "host with port", raw: "GET /a?b=c HTTP/1.1\r\nHost: filed.cn:8080\r\nUser-Agent: x\r\n\r\n", ok: true, host: "filed.cn:8080"},
	{name: "host upper case trailing dot", raw: "GET / HTTP/1.1\r\nhOsT: FILED.CN.\r\n\r\n", ok: true, host: "FILED.CN."},
	{name: "absolute form wins over Host", raw: "GET http://unfiled.cn/x HTTP/1.1\r\nHost: filed.cn\r\n\r\n", ok: true, host: "unfiled.cn"},
	{name: "absolute https with port and query", raw: "GET HTTPS://unfiled.cn:8443?q=1 HTTP/1.1\r\nHost: filed.cn\r\n\r\n", ok: true, host: "unfiled.cn:8443"},
	{name: "absolute form without Host", raw: "GET http://a.cn/ HTTP/1.1\r\n\r\n"},
	{name: "absolute form http/1.0 without Host", raw: "GET http://a.cn/ HTTP/1.0\r\n\r\n", ok: true, host: "a.cn"},
	{name: "absolute form IPv6", raw: "GET http://[::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n", ok: true, host: "[::1]:80"},
	{name: "absolute form empty IP literal", raw: "GET http://[]:/ HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "absolute form IPv4 in brackets", raw: "GET http://[127.0.0.1]/ HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "percent escape valid", raw: "GET /a%2Fb?q=%41 HTTP/1.1\r\nHost: a.cn\r\n\r\n", ok: true, host: "a.cn"},
	{name: "percent escape truncated", raw: "GET /% HTTP/1.1\r\nHost: a.cn\r\n\r\n"},
	{name: "percent escape not hex", raw: "GET http://a.cn/%zz HTTP/1.1\r\nHost: a.cn\r\n\r\n"},
	{name: "http/1.0 without Host", raw: "GET / HTTP/1.0\r\n\r\n", ok: true, host: ""},
	{name: "options asterisk", raw: "OPTIONS * HTTP/1.1\r\nHost: filed.cn\r\n\r\n", ok: true, host: "filed.cn"},
	{name: "content-length body", raw: "POST /f HTTP/1.1\r\nHost: a.cn\r\nContent-Length: 5\r\n\r\nhello", ok: true, host: "a.cn"},
	{name: "identical duplicate content-length", raw: "POST /f HTTP/1.1\r\nHost: a.cn\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", ok: true, host: "a.cn"},
	{name: "duplicate content-length, same number, other text", raw: "POST /f HTTP/1.1\r\nHost: a.cn\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\nhello"},
	{name: "chunked body", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ok: true, host: "a.cn"},
	{name: "chunked upper case hex, extension, trailer", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: Chunked\r\n\r\nA;name=val\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", ok: true, host: "a.cn"},
	{name: "obs-text in value", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX-Name: caf\xc3\xa9\r\n\r\n", ok: true, host: "a.cn"},
	{name: "tab in value", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX-A: a\tb\r\n\r\n", ok: true, host: "a.cn"},
	{name: "connection options", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n\r\n", ok: true, host: "a.cn"},
	{name: "websocket upgrade", raw: "GET /ws HTTP/1.1\r\nHost: a.cn\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", ok: true, host: "a.cn"},

	{name: "missing Host", raw: "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n"},
	{name: "duplicate Host", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nHost: unfiled.cn\r\n\r\n"},
	{name: "invalid Host slash", raw: "GET / HTTP/1.1\r\nHost: a.cn/x\r\n\r\n"},
	{name: "invalid Host userinfo", raw: "GET / HTTP/1.1\r\nHost: filed.cn@unfiled.cn\r\n\r\n"},
	{name: "invalid Host non-ascii", raw: "GET / HTTP/1.1\r\nHost: \xef\xbd\x81.cn\r\n\r\n"},
	{name: "ideographic full stop in Host", raw: "GET / HTTP/1.1\r\nHost: filed\xe3\x80\x82cn\r\n\r\n"},
	{name: "NUL in Host", raw: "GET / HTTP/1.1\r\nHost: a.cn\x00b\r\n\r\n"},
	{name: "NUL in header", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX-A: a\x00b\r\n\r\n"},
	{name: "CR in header value", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX-A: a\rb\r\n\r\n"},
	{name: "whitespace before colon", raw: "GET / HTTP/1.1\r\nHost : a.cn\r\n\r\n"},
	{name: "invalid header name", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX(A): b\r\n\r\n"},
	{name: "leading whitespace first field", raw: "GET / HTTP/1.1\r\n Host: a.cn\r\n\r\n"},
	{name: "transfer-encoding xchunked", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "transfer-encoding gzip chunked", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "two transfer-encoding fields", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "content-length plus sign", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nContent-Length: +2\r\n\r\nhi"},
	{name: "content-length list", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nContent-Length: 2, 2\r\n\r\nhi"},
	{name: "differing content-length", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhii"},
	{name: "chunk size plus", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nhi\r\n0\r\n\r\n"},
	{name: "chunk size 0x", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n"},
	{name: "chunk size overflow", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhi\r\n0\r\n\r\n"},
	{name: "chunk data without CRLF", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n"},
	{name: "invalid method", raw: "G\"ET / HTTP/1.1\r\nHost: a.cn\r\n\r\n"},
	{name: "relative target", raw: "GET foo HTTP/1.1\r\nHost: a.cn\r\n\r\n"},
	{name: "http/2 version", raw: "GET / HTTP/2.0\r\nHost: a.cn\r\n\r\n"},
	{name: "garbage version", raw: "GET / HTTQ/1.1\r\nHost: a.cn\r\n\r\n"},
	{name: "double space in request line", raw: "GET  / HTTP/1.1\r\nHost: a.cn\r\n\r\n"},
	{name: "absolute invalid port", raw: "GET http://a.cn:8x/ HTTP/1.1\r\nHost: a.cn\r\n\r\n"},

	{name: "content-length with transfer-encoding", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		stricter: "RFC 9112 §6.3 allows a server to reject; net/http drops Content-Length, the classic request-smuggling desync"},
	{name: "userinfo in absolute form", raw: "GET http://filed.cn@unfiled.cn/ HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
		stricter: "userinfo has no place in an http(s) request target (RFC 9110 §4.2.4) and makes the decided name ambiguous"},
	{name: "escaped absolute authority", raw: "GET http://unfiled%e4%bd%a0.cn/ HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
		stricter: "net/url decodes %e4%bd%a0 in the host; the upstream might not, so the decided name and the served name could differ"},
	{name: "empty absolute authority", raw: "GET http:///x HTTP/1.1\r\nHost: a.cn\r\n\r\n",
		stricter: "an http URI with an empty host is invalid (RFC 9110 §4.2.1); net/http falls back to Host"},
	{name: "empty Host", raw: "GET / HTTP/1.1\r\nHost:\r\n\r\n",
		stricter: "an empty Host is allowed only for targets without authority (RFC 9112 §3.2), never for http(s)"},
	{name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX-A: b\r\n c\r\n\r\n",
		stricter: "RFC 9112 §5.2: a server must reject obs-fold or replace it; rejecting is the only unambiguous choice"},
	{name: "bare LF line endings", raw: "GET / HTTP/1.1\nHost: a.cn\n\n",
		stricter: "RFC 9112 §2.2 lets a recipient accept bare LF; a front end and a back end that disagree desync"},
	{name: "bare LF hiding a second Host", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX-A: b\nHost: unfiled.cn\r\n\r\n"},
	{name: "bare LF in header", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nX-A: b\nX-B: c\r\n\r\n",
		stricter: "same: a bare LF inside the head can hide a field from one parser but not the other"},
	{name: "bare LF in chunk line", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n"},
	{name: "bare LF after chunk data", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\n0\r\n\r\n"},
	{name: "http/1.2", raw: "GET / HTTP/1.2\r\nHost: a.cn\r\n\r\n",
		stricter: "only HTTP/1.0 and 1.1 are defined; answered 505"},
	{name: "h2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		stricter: "prior-knowledge HTTP/2 is not served on an http/1 listener; answered 505"},
	{name: "connect", raw: "CONNECT unfiled.cn:443 HTTP/1.1\r\nHost: unfiled.cn:443\r\n\r\n",
		stricter: "a gateway is not a forward proxy; answered 405"},
	{name: "connection names content-length", raw: "POST /carrier HTTP/1.1\r\nHost: a.cn\r\nConnection: content-length\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n",
		stricter: "a proxy drops what Connection names; without its Content-Length the body reads as a request nobody decided"},
	{name: "connection names content-length in a list", raw: "POST /carrier HTTP/1.1\r\nHost: a.cn\r\nConnection: keep-alive, X-A,CONTENT-Length \r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n",
		stricter: "the same in any case and list position"},
	{name: "second connection field names content-length", raw: "POST /carrier HTTP/1.1\r\nHost: a.cn\r\nConnection: keep-alive\r\nContent-Length: 44\r\nconnection: Content-Length\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n",
		stricter: "the same in a second Connection field"},
	{name: "connection names transfer-encoding", raw: "POST /carrier HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n2c\r\nGET /smuggled HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n\r\n0\r\n\r\n",
		stricter: "without Transfer-Encoding the chunked body has no framing an origin agrees on"},
	{name: "connection names host", raw: "GET / HTTP/1.1\r\nHost: a.cn\r\nConnection: close, host\r\n\r\n",
		stricter: "the decided name may not be removed on the way to the origin"},
	{name: "expect other than 100-continue", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nExpect: something\r\nContent-Length: 2\r\n\r\nhi",
		stricter: "RFC 9110 §10.1.1 lets a server answer 417; forwarded, origins answer it differently, some before reading the body (answered 417)"},
	{name: "fragment in target", raw: "GET /a#b HTTP/1.1\r\nHost: a.cn\r\n\r\n",
		stricter: "a request target has no fragment (RFC 9112 §3.2)"},
	{name: "non-ascii target", raw: "GET /\xe4\xbd\xa0 HTTP/1.1\r\nHost: a.cn\r\n\r\n",
		stricter: "targets are ASCII (RFC 3986); raw UTF-8 is interpreted differently by different servers"},
	{name: "asterisk without OPTIONS", raw: "GET * HTTP/1.1\r\nHost: a.cn\r\n\r\n",
		stricter: "asterisk-form is only for OPTIONS (RFC 9112 §3.2.4)"},
	{name: "chunked in http/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		stricter: "RFC 9112 §6.1: Transfer-Encoding in a 1.0 message means the framing is faulty"},
	{name: "whitespace after chunk size", raw: "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nhi\r\n0\r\n\r\n",
		stricter: "chunk-size is 1*HEXDIG; BWS is allowed only before a chunk extension"},
	{name: "leading empty line", raw: "\r\nGET / HTTP/1.1\r\nHost: a.cn\r\n\r\n"},
}

func TestParseRequestDifferential(t *testing.T) {
	for _, tc := range httpDiffCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := httpOurParse([]byte(tc.raw), true)
			ref, refErr := httpRefParse([]byte(tc.raw), true)
			if (err == nil) != tc.ok {
				t.Fatalf("ours: err = %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				if refErr != nil {
					t.Fatalf("we accept what net/http rejects (%v): laxer", refErr)
				}
				if got != ref {
					t.Fatalf("got %q, want %q (net/http)", got, ref)
				}
				if got.host != tc.host {
					t.Fatalf("got host %q, want %q", got.host, tc.host)
				}
				return
			}
			switch {
			case refErr == nil && tc.stricter == "":
				t.Fatalf("we reject (%v) what net/http accepts, and no stricter note documents it", err)
			case refErr != nil && tc.stricter != "":
				t.Fatalf("stricter note is stale: net/http rejects too (%v)", refErr)
			}
		})
	}
}

// TestParseRequestStatus checks the error class (hence the status) of
// refusals that are not plain 400s.
func TestParseRequestStatus(t *testing.T) {
	many := "GET / HTTP/1.1\r\nHost: a.cn\r\n" + strings.Repeat("X-A: b\r\n", defaultMaxHeaders) + "\r\n"
	tests := []struct {
		name string
		raw  string
		want error
	}{
		{"connect", "CONNECT a.cn:443 HTTP/1.1\r\nHost: a.cn:443\r\n\r\n", ErrHTTPMethodNotAllowed},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\n", ErrHTTPVersion},
		{"http/1.2", "GET / HTTP/1.2\r\nHost: a.cn\r\n\r\n", ErrHTTPVersion},
		{"too many fields", many, ErrHTTPHeaderTooLarge},
		{"bad request", "GET / HTTP/1.1\r\n\r\n", ErrHTTPBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := httpOurParse([]byte(tc.raw), false)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestHeadEndSplitReads(t *testing.T) {
	raw := []byte("GET / HTTP/1.1\r\nHost: a.cn\r\n\r\nNEXT")
	want := len(raw) - 4
	for cut := 1; cut < len(raw); cut++ {
		end, err := headEnd(raw[:cut], 0)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if end > 0 && end != want {
			t.Fatalf("cut %d: got %d, want %d", cut, end, want)
		}
		if end < 0 {
			end, err = headEnd(raw, headScanFrom(cut))
			if err != nil || end != want {
				t.Fatalf("resume after %d: got %d %v, want %d", cut, end, err, want)
			}
		}
	}
}

func TestChunkSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"a", 10, true}, {"FF", 255, true}, {"10;x=y", 16, true},
		{"10 ;x", 16, true}, {"7fffffffffffffff", 0, false}, {"fffffffffffffff", 1<<60 - 1, true},
		{"", 0, false}, {"+1", 0, false}, {"0x1", 0, false}, {"1 ", 0, false}, {"1;\x00", 0, false}, {" 1", 0, false},
	}
	for _, tc := range tests {
		got, err := chunkSize([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("chunkSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseResponseHead(t *testing.T) {
	tests := []struct {
		raw     string
		ok      bool
		status  int
		cl      int64
		chunked bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 200, 5, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n", true, 200, -1, true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", true, 200, -1, false},
		{"HTTP/1.0 404\r\n\r\n", true, 404, -1, false},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true, 101, -1, false},
		{"HTTP/1.1 2000 OK\r\n\r\n", false, 0, 0, false},
		{"HTTP/2 200\r\n\r\n", false, 0, 0, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, 0, 0, false},
	}
	for _, tc := range tests {
		var h msgHead
		h.reset(nil)
		err := parseResponseHead([]byte(tc.raw), &h, 100)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.raw, err, tc.ok)
			continue
		}
		if err == nil && (h.status != tc.status || h.contentLength != tc.cl || h.chunked != tc.chunked) {
			t.Errorf("%q: got status %d cl %d chunked %v, want %d %d %v", tc.raw, h.status, h.contentLength, h.chunked, tc.status, tc.cl, tc.chunked)
		}
	}
}

// FuzzParseRequestHead: the parser never panics, and whatever head it
// accepts net/http accepts too, with the same method, target and Host.
func FuzzParseRequestHead(f *testing.F) {
	for _, tc := range httpDiffCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := httpOurParse(raw, false)
		if err != nil {
			return
		}
		ref, refErr := httpRefParse(raw, false)
		if refErr != nil {
			t.Fatalf("we accept %q, net/http rejects: %v", raw, refErr)
		}
		if got != ref {
			t.Fatalf("%q: got %q, want %q (net/http)", raw, got, ref)
		}
	})
}

var httpTypicalHead = []byte("GET /static/app.js?v=3 HTTP/1.1\r\n" +
	"Host: www.example.cn\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: zh-CN,zh;q=0.9,en;q=0.8\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Cookie: sid=0123456789abcdef; theme=dark\r\n" +
	"Referer: https://www.example.cn/\r\n" +
	"Connection: keep-alive\r\n\r\n")

func BenchmarkParseRequestHead(b *testing.B) {
	var h msgHead
	fields := make([]hdrField, 0, 32)
	b.ReportAllocs()
	b.SetBytes(int64(len(httpTypicalHead)))
	for b.Loop() {
		h.reset(fields)
		end, err := headEnd(httpTypicalHead, 0)
		if err != nil || end != len(httpTypicalHead) {
			b.Fatal("head end", end, err)
		}
		if err := parseRequestHead(httpTypicalHead, &h, 100); err != nil {
			b.Fatal(err)
		}
		h.markDropped(httpTypicalHead, isHopByHop)
	}
}

func TestParseRequestHeadAllocs(t *testing.T) {
	var h msgHead
	fields := make([]hdrField, 0, 32)
	allocs := testing.AllocsPerRun(100, func() {
		h.reset(fields)
		if err := parseRequestHead(httpTypicalHead, &h, 100); err != nil {
			t.Fatal(err)
		}
		h.markDropped(httpTypicalHead, isHopByHop)
	})
	if allocs != 0 {
		t.Fatalf("got %v allocs per parse, want 0", allocs)
	}
}

// FuzzChunkedBody: the chunked validator never panics, and whatever body it
// accepts net/http's chunked reader decodes without error.
func FuzzChunkedBody(f *testing.F) {
	for _, tc := range httpDiffCases {
		if i := strings.Index(tc.raw, "\r\n\r\n"); i >= 0 && strings.Contains(tc.raw, "chunked") {
			f.Add([]byte(tc.raw[i+4:]))
		}
	}
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var k chunkReader
		rest := body
		for k.st != ckDone {
			n, err := k.step(rest)
			if err != nil || n == 0 {
				return
			}
			rest = rest[n:]
		}
		consumed := body[:len(body)-len(rest)]
		raw := "POST / HTTP/1.1\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n" + string(consumed)
		if _, err := httpRefParse([]byte(raw), true); err != nil {
			t.Fatalf("we accept chunked body %q, net/http rejects: %v", consumed, err)
		}
	})
}
