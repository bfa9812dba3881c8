package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/icpgate/icpgate/internal/syncbuf"
)

// framingUpstream is an origin that parses requests with net/http and keeps
// every byte it was sent, per connection, so a test can check the framing
// fields the gateway wrote.
type framingUpstream struct {
	addr string
	mu   sync.Mutex
	raw  []*syncbuf.Buffer // guarded by mu; one per connection
	seen []string          // guarded by mu; "METHOD path host bodylen" per request
}

func startFramingUpstream(t *testing.T, answer func(r *http.Request) string) *framingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &framingUpstream{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := new(syncbuf.Buffer)
			u.mu.Lock()
			u.raw = append(u.raw, buf)
			u.mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(io.TeeReader(c, buf))
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(r.Body)
					u.mu.Lock()
					u.seen = append(u.seen, r.Method+" "+r.URL.Path+" "+r.Host+" "+strconv.Itoa(len(body)))
					u.mu.Unlock()
					if _, err := io.WriteString(c, answer(r)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return u
}

func (u *framingUpstream) bytes() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var s strings.Builder
	for _, b := range u.raw {
		s.WriteString(b.String())
	}
	return s.String()
}

func (u *framingUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

func okAnswer(*http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }

// TestHTTPForwardedFraming: what goes upstream carries framing the gateway
// wrote from what it parsed — one Content-Length or Transfer-Encoding
// field in its own spelling — never the client's fields, however they
// were spelled or repeated.
func TestHTTPForwardedFraming(t *testing.T) {
	tests := []struct {
		name, req string
		want      []string // lines the upstream must see exactly once
		never     []string // text the upstream must never see
	}{
		{name: "repeated content-length",
			req:   "POST /a HTTP/1.1\r\nHost: filed.cn\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\nhello",
			want:  []string{"\r\nContent-Length: 5\r\n"},
			never: []string{"content-length"}},
		{name: "chunked in capitals",
			req:   "POST /a HTTP/1.1\r\nHost: filed.cn\r\ntransfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want:  []string{"\r\nTransfer-Encoding: chunked\r\n"},
			never: []string{"CHUNKED", "transfer-encoding"}},
		{name: "chunk extensions and spelling",
			req:   "POST /a HTTP/1.1\r\nHost: filed.cn\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=\"b;c\"\r\nhello\r\n0A;x\r\n0123456789\r\n0;end\r\n\r\n",
			want:  []string{"\r\n\r\n5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n"},
			never: []string{";", "0A"}},
		{name: "zero length",
			req:  "POST /a HTTP/1.1\r\nHost: filed.cn\r\nContent-Length: 0\r\n\r\n",
			want: []string{"\r\nContent-Length: 0\r\n"}},
		{name: "no body",
			req:   "GET /a HTTP/1.1\r\nHost: filed.cn\r\n\r\n",
			never: []string{"Content-Length", "Transfer-Encoding"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := startFramingUpstream(t, okAnswer)
			g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
			c, br := httpDialRaw(t, g.addr)
			io.WriteString(c, tc.req)
			method, _, _ := strings.Cut(tc.req, " ")
			if resp, body := httpReadResp(t, br, method); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("got %d %q, want 200 \"ok\"", resp.StatusCode, body)
			}
			got := u.bytes()
			for _, w := range tc.want {
				if n := strings.Count(got, w); n != 1 {
					t.Errorf("upstream saw %q %d times, want once; it got:\n%s", w, n, got)
				}
			}
			for _, w := range tc.never {
				if strings.Contains(got, w) {
					t.Errorf("upstream saw %q; it got:\n%s", w, got)
				}
			}
		})
	}
}

// TestHTTPConnectionNamesFraming is the smuggling the issue found: a
// Connection option naming Content-Length made the gateway drop that field
// while relaying the body by it, so the origin read the body as a request
// for a blocked site that was never decided, and answered it to whoever
// used that upstream connection next. Such a request is refused with 400
// and nothing of it reaches the origin; a victim on another connection
// gets its own answer.
func TestHTTPConnectionNamesFraming(t *testing.T) {
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: black.cn\r\n\r\n"
	cl := strconv.Itoa(len(smuggled))
	tests := []struct{ name, req string }{
		{"content-length", "POST /carrier HTTP/1.1\r\nHost: filed.cn\r\nConnection: content-length\r\nContent-Length: " + cl + "\r\n\r\n" + smuggled},
		{"content-length in a list", "POST /carrier HTTP/1.1\r\nHost: filed.cn\r\nConnection: keep-alive, Content-LENGTH\r\nContent-Length: " + cl + "\r\n\r\n" + smuggled},
		{"transfer-encoding", "POST /carrier HTTP/1.1\r\nHost: filed.cn\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n" +
			strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{"host", "GET /a HTTP/1.1\r\nHost: filed.cn\r\nConnection: Host\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := startFramingUpstream(t, func(r *http.Request) string {
				body := "for " + r.Host + r.URL.Path
				return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
			})
			g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
			c, br := httpDialRaw(t, g.addr)
			// A pipelined filed GET behind the carrier would have been
			// answered with the smuggled request's response.
			io.WriteString(c, tc.req+"GET /mine HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
			method, _, _ := strings.Cut(tc.req, " ")
			if resp, body := httpReadResp(t, br, method); resp.StatusCode != 400 {
				t.Fatalf("got %d %q, want 400", resp.StatusCode, body)
			}
			httpExpectClosed(t, br)

			victim, vbr := httpDialRaw(t, g.addr)
			io.WriteString(victim, "GET /victim HTTP/1.1\r\nHost: filed.cn\r\nCookie: secret=1\r\n\r\n")
			if resp, body := httpReadResp(t, vbr, "GET"); resp.StatusCode != 200 || body != "for filed.cn/victim" {
				t.Fatalf("victim got %d %q, want 200 \"for filed.cn/victim\"", resp.StatusCode, body)
			}
			if got := u.requests(); len(got) != 1 || got[0] != "GET /victim filed.cn 0" {
				t.Fatalf("upstream parsed %q, want only the victim's request", got)
			}
		})
	}
}

// TestHTTPUpstreamExcessBytes: an origin that sends more than the response
// it framed never has its connection pooled, so the extra bytes cannot
// become the answer to another client's request; the event is counted.
func TestHTTPUpstreamExcessBytes(t *testing.T) {
	var mu sync.Mutex
	n := 0
	u := startFramingUpstream(t, func(r *http.Request) string {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
				"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"
	})
	g := startHTTPGateway(t, httpBaseConfig(u.addr), httpTestDecider())
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	if _, body := httpReadResp(t, br, "GET"); body != "ok" {
		t.Fatalf("first: got %q, want \"ok\"", body)
	}
	io.WriteString(c, "GET /2 HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	if _, body := httpReadResp(t, br, "GET"); body != "fresh" {
		t.Fatalf("same client, next request: got %q, want \"fresh\"", body)
	}
	other, obr := httpDialRaw(t, g.addr)
	io.WriteString(other, "GET /3 HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
	if _, body := httpReadResp(t, obr, "GET"); body != "fresh" {
		t.Fatalf("other client: got %q, want \"fresh\"", body)
	}
	if got := testutil.ToFloat64(g.m.UpstreamErrors.WithLabelValues("http", "excess_bytes")); got != 1 {
		t.Fatalf("excess_bytes errors = %v, want 1", got)
	}
}
