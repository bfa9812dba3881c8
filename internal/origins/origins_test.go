//go:build linux

package origins

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestOrigins sends each origin one keep-alive connection of pipelined
// requests (bodies by length and chunked, HEAD, 204, 304) and checks that
// every answer names its request and that the log records each request's
// body length.
func TestOrigins(t *testing.T) {
	for _, start := range []func(testing.TB) *Origin{Go, Nginx, Apache, Node} {
		o := start(t)
		t.Run(o.Name, func(t *testing.T) {
			raw := "GET /a?q=1 HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: id1\r\n\r\n" +
				"POST /b HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: id2\r\nContent-Length: 5\r\n\r\nhello" +
				"POST /c HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: id3\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n" +
				"HEAD /d HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: id4\r\n\r\n" +
				"GET /e.204 HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: id5\r\n\r\n" +
				"GET /f.304 HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: id6\r\n\r\n" +
				"GET /g HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: id7\r\nConnection: close\r\n\r\n"
			want := []struct {
				method, target string
				status         int
				body           int64
			}{{"GET", "/a?q=1", 200, 0}, {"POST", "/b", 200, 5}, {"POST", "/c", 200, 7}, {"HEAD", "/d", 200, 0},
				{"GET", "/e.204", 204, 0}, {"GET", "/f.304", 304, 0}, {"GET", "/g", 200, 0}}
			c, err := net.Dial("tcp", o.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for i, w := range want {
				resp, err := http.ReadResponse(br, &http.Request{Method: w.method})
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
				saw, ok := ParseSaw(resp.Header.Get(SawHeader))
				if resp.StatusCode != w.status || !ok || saw.Target != w.target || saw.RequestID != fmt.Sprintf("id%d", i+1) {
					t.Errorf("response %d: got %d %q, want %d naming %s", i, resp.StatusCode, resp.Header.Get(SawHeader), w.status, w.target)
				}
			}
			c.Close() // nginx logs a closing request only after its lingering close
			var entries []Entry
			for try := 0; try < 100 && len(entries) < len(want); try++ {
				if entries, err = o.Log(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if len(entries) != len(want) {
				t.Fatalf("log: got %d entries, want %d: %v", len(entries), len(want), entries)
			}
			for i, w := range want {
				e := entries[i]
				if e.Method != w.method || e.Target != w.target || e.Host != "filed-demo.cn" || e.RequestID != fmt.Sprintf("id%d", i+1) || e.BodyLen != w.body {
					t.Errorf("entry %d: got %v, want %s %s body %d", i, e, w.method, w.target, w.body)
				}
			}
		})
	}
}
