package main

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:80", true},
		{"127.0.0.77:27743", true},
		{"[::1]:443", true},
		{"10.0.0.1:443", false},
		{"192.168.1.1:80", false},
		{"localhost:80", false}, // names could resolve anywhere
		{"127.0.0.1", false},
	} {
		err := checkLoopback(tc.addr)
		if got := err == nil; got != tc.ok {
			t.Errorf("checkLoopback(%q): got err %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
	if err := checkLoopback("8.8.8.8:53"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("checkLoopback(8.8.8.8:53): got %v, want ErrNotLoopback", err)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of 1..100", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100", ms(1, 2, 3), 1, 3 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// newOrigin is a real TLS (or plain) HTTP server on loopback.
func newOrigin(t *testing.T, useTLS bool) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "www.site0000000.cn" {
			http.Error(w, "wrong host "+r.Host, http.StatusMisdirectedRequest)
			return
		}
		if r.TLS != nil && r.TLS.ServerName != "www.site0000000.cn" {
			http.Error(w, "wrong SNI", http.StatusMisdirectedRequest)
			return
		}
		w.Write([]byte(strings.Repeat("x", 1000)))
	})
	if !useTLS {
		return httptest.NewServer(h)
	}
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	s.StartTLS()
	return s
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mode       string
		tls        bool
		status     int
		wantErrors bool
	}{
		{"tlsconn", "tlsconn", true, 200, false},
		{"tlsconn wrong status", "tlsconn", true, 403, true},
		{"bulk plain", "bulk", false, 200, false},
		{"bulk tls", "bulk", true, 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newOrigin(t, tc.tls)
			defer s.Close()
			o := options{mode: tc.mode, addr: s.Listener.Addr().String(), host: "www.site0000000.cn",
				path: "/", useTLS: tc.tls, conns: 2, dur: 5 * time.Second, max: 20, status: tc.status}
			if err := o.check(); err != nil {
				t.Fatal(err)
			}
			var r result
			if tc.mode == "tlsconn" {
				r = runTLSConn(o)
			} else {
				r = runBulk(o)
			}
			if tc.wantErrors {
				if r.errors != 20 || r.requests != 0 {
					t.Errorf("got %d requests, %d errors, want 0 and 20", r.requests, r.errors)
				}
				if !strings.Contains(r.firstErr, "got 200, want 403") {
					t.Errorf("first error: got %q, want the status mismatch", r.firstErr)
				}
				return
			}
			if r.requests != 20 || r.errors != 0 {
				t.Errorf("got %d requests, %d errors (%s), want 20 and 0", r.requests, r.errors, r.firstErr)
			}
			if r.bytes != 20*1000 {
				t.Errorf("bytes: got %d, want %d", r.bytes, 20*1000)
			}
			line := r.format()
			for _, k := range []string{"requests=20 ", "errors=0 ", "p50_ms=", "p99_ms=", "mbps="} {
				if !strings.Contains(line, k) {
					t.Errorf("format: got %q, want it to contain %q", line, k)
				}
			}
		})
	}
}
