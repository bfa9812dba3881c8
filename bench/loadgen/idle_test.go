package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a real HTTP (or HTTPS) server on loopback that counts
// the client connections it has open, from http.Server's ConnState.
type countingServer struct {
	*httptest.Server
	open atomic.Int64
}

// newCountingServer starts it; onNew, when not nil, is called with the
// number of open connections after each accept.
func newCountingServer(t *testing.T, useTLS bool, idle time.Duration, h http.HandlerFunc, onNew func(int64)) *countingServer {
	t.Helper()
	cs := &countingServer{}
	s := httptest.NewUnstartedServer(h)
	s.Config.IdleTimeout = idle
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			n := cs.open.Add(1)
			if onNew != nil {
				onNew(n)
			}
		case http.StateClosed, http.StateHijacked:
			cs.open.Add(-1)
		}
	}
	if useTLS {
		s.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
		s.StartTLS()
	} else {
		s.Start()
	}
	cs.Server = s
	t.Cleanup(s.Close)
	return cs
}

// waitOpen polls until the server has want connections open (bounded: 30 s
// in 10 ms steps) and reports whether it got there.
func (cs *countingServer) waitOpen(want int64) bool {
	for range 3000 {
		if cs.open.Load() == want {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func okHandler(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat("x", 128))) }

func TestIdle(t *testing.T) {
	const n = 50
	for _, tc := range []struct {
		name   string
		kind   string
		tls    bool
		idle   time.Duration // server's IdleTimeout: it closes idle keep-alive connections
		status int
		h      http.HandlerFunc
		// want: opened and held, or the errors and the first error's text
		opened, held, errors int64
		errText              string
	}{
		{name: "tls tunnels", kind: "tls", tls: true, status: 200, h: okHandler, opened: n, held: n},
		{name: "http keep-alive", kind: "http", status: 200, h: okHandler, opened: n, held: n},
		{name: "http closed by the server while held", kind: "http", idle: time.Millisecond, status: 200, h: okHandler, opened: n, held: 0},
		{name: "http wrong status", kind: "http", status: 403, h: okHandler, errors: n, errText: "got 200, want 403"},
		{name: "http Connection: close", kind: "http", status: 200, errors: n, errText: "cannot be held",
			h: func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Connection", "close"); okHandler(w, r) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCountingServer(t, tc.tls, tc.idle, tc.h, nil)
			o := options{mode: "idle", kind: tc.kind, addr: s.Listener.Addr().String(), host: "www.site0000000.cn",
				path: "/", conns: n, parallel: 8, dur: time.Minute, max: 1, status: tc.status}
			if err := o.check(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			readies := 0
			r := runIdle(ctx, o, func(r idleResult) {
				readies++
				if r.opened != tc.opened || r.errors != tc.errors {
					t.Errorf("ready: got opened=%d errors=%d (%s), want %d and %d", r.opened, r.errors, r.firstErr, tc.opened, tc.errors)
				}
				// Held open means open at the server too, until the
				// server itself closes them (IdleTimeout).
				want := tc.opened
				if tc.idle > 0 {
					want = 0
				}
				if !s.waitOpen(want) {
					t.Errorf("server: got %d connections open, want %d", s.open.Load(), want)
				}
				if line := r.readyLine(); !strings.HasPrefix(line, "ready opened=") {
					t.Errorf("ready line: got %q", line)
				}
				cancel()
			})
			if readies != 1 {
				t.Errorf("ready called %d times, want once", readies)
			}
			if r.opened != tc.opened || r.held != tc.held || r.errors != tc.errors {
				t.Errorf("got opened=%d held=%d errors=%d (%s), want %d, %d, %d",
					r.opened, r.held, r.errors, r.firstErr, tc.opened, tc.held, tc.errors)
			}
			if tc.errText != "" && !strings.Contains(r.firstErr, tc.errText) {
				t.Errorf("first error: got %q, want it to contain %q", r.firstErr, tc.errText)
			}
			if !s.waitOpen(0) {
				t.Errorf("after the run: server has %d connections open, want 0", s.open.Load())
			}
			line := r.format()
			for _, k := range []string{"opened=", "errors=", "held=", "open_seconds=", "seconds="} {
				if !strings.Contains(line, k) {
					t.Errorf("format: got %q, want it to contain %q", line, k)
				}
			}
		})
	}
}

// TestIdleStopsOpeningAtDeadline: a run whose context ends while opening
// still reports ready once, with what it opened, and closes it all.
func TestIdleStopsOpeningAtDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var accepted atomic.Int64
	s := newCountingServer(t, false, 0, okHandler, func(int64) {
		if accepted.Add(1) == 10 {
			cancel() // the tenth connection ends the run
		}
	})
	o := options{mode: "idle", kind: "http", addr: s.Listener.Addr().String(), host: "www.site0000000.cn",
		path: "/", conns: 1000, parallel: 1, dur: time.Minute, max: 1, status: 200}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	readies := 0
	r := runIdle(ctx, o, func(idleResult) { readies++ })
	if readies != 1 {
		t.Errorf("ready called %d times, want once", readies)
	}
	if r.opened+r.errors > accepted.Load() || r.opened < 9 || r.opened >= 1000 {
		t.Errorf("got opened=%d errors=%d with %d accepted, want 9 or 10 of 1000", r.opened, r.errors, accepted.Load())
	}
	if !s.waitOpen(0) {
		t.Errorf("after the run: server has %d connections open, want 0", s.open.Load())
	}
}

// TestIdleOpenFor: a peer that accepts but never answers the handshake
// holds every attempt until -open-for ends them; the run then reports ready
// with them as errors instead of waiting for -d.
func TestIdleOpenFor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // accepted and never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	o := options{mode: "idle", kind: "tls", addr: ln.Addr().String(), host: "www.site0000000.cn",
		conns: 5, parallel: 5, dur: time.Minute, openFor: 200 * time.Millisecond, max: 1}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var ready idleResult
	r := runIdle(ctx, o, func(r idleResult) { ready = r; cancel() })
	if ready.opened != 0 || ready.errors != 5 {
		t.Errorf("ready: got opened=%d errors=%d, want 0 and 5", ready.opened, ready.errors)
	}
	if !strings.Contains(r.firstErr, "handshake") {
		t.Errorf("first error: got %q, want a handshake error", r.firstErr)
	}
}

func TestIdleCheck(t *testing.T) {
	base := options{mode: "idle", kind: "tls", addr: "127.0.0.1:1", host: "x.cn", conns: 10000, parallel: 64, dur: time.Minute, max: 1}
	for _, tc := range []struct {
		name string
		edit func(*options)
		want string // "" for valid
	}{
		{"valid", func(*options) {}, ""},
		{"http", func(o *options) { o.kind = "http" }, ""},
		{"bad kind", func(o *options) { o.kind = "udp" }, "-kind"},
		{"too many", func(o *options) { o.conns = maxIdleConns + 1 }, "-c"},
		{"no parallel", func(o *options) { o.parallel = 0 }, "-p"},
		{"not loopback", func(o *options) { o.addr = "10.1.1.1:443" }, "loopback"},
		{"tlsconn keeps its bound", func(o *options) { o.mode = "tlsconn" }, "-c"},
		{"open-for over -d", func(o *options) { o.openFor = 2 * time.Minute }, "-open-for"},
	} {
		o := base
		tc.edit(&o)
		err := o.check()
		if tc.want == "" && err != nil {
			t.Errorf("%s: got %v, want valid", tc.name, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

func TestRaiseNofile(t *testing.T) {
	if err := raiseNofile(64); err != nil {
		t.Errorf("raiseNofile(64): %v", err)
	}
	// More than any kernel allows (fs.nr_open is at most about 2^30).
	err := raiseNofile(1 << 40)
	if err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Errorf("raiseNofile(1<<40): got %v, want an error naming RLIMIT_NOFILE", err)
	}
	if errors.Is(err, ErrNotHeld) {
		t.Error("unexpected error kind")
	}
}
