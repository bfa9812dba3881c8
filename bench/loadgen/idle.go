package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotHeld is a keep-alive response that asks to close the connection, or
// one followed by bytes nobody asked for: such a connection cannot sit idle.
var ErrNotHeld = errors.New("connection cannot be held idle")

// Bounds of one connection's opening; the whole run is bounded by -d.
const (
	idleDialTimeout = 5 * time.Second
	idleOpenTimeout = 10 * time.Second // dial plus handshake plus response
)

// idleResult is what an idle run measured.
type idleResult struct {
	opened   int64         // connections open and idle after the opening phase
	errors   int64         // connections that failed to open
	held     int64         // of opened, still established when the hold ended
	openTime time.Duration // length of the opening phase
	elapsed  time.Duration // opening plus holding
	firstErr string
}

// readyLine is what an idle run prints when every connection has been tried.
func (r idleResult) readyLine() string {
	s := fmt.Sprintf("ready opened=%d errors=%d open_seconds=%.3f", r.opened, r.errors, r.openTime.Seconds())
	if r.firstErr != "" {
		s += fmt.Sprintf(" first_error=%q", r.firstErr)
	}
	return s
}

// format renders the final result as one key=value line.
func (r idleResult) format() string {
	s := fmt.Sprintf("opened=%d errors=%d held=%d open_seconds=%.3f seconds=%.3f",
		r.opened, r.errors, r.held, r.openTime.Seconds(), r.elapsed.Seconds())
	if r.firstErr != "" {
		s += fmt.Sprintf(" first_error=%q", r.firstErr)
	}
	return s
}

// idleConn is one held connection: tcp is the socket, conn what is closed
// (the TLS session over it, or tcp itself).
type idleConn struct {
	tcp  *net.TCPConn
	conn net.Conn
}

// runIdle opens o.conns connections, at most o.parallel at a time, each one
// made idle by openIdle; calls ready once every connection has been tried
// (or o.openFor has passed, or ctx ended: attempts cut off count as errors,
// the ones not begun as nothing); holds them until ctx ends; then counts
// those still established, closes them all and returns. The caller bounds
// ctx by -d.
func runIdle(ctx context.Context, o options, ready func(idleResult)) idleResult {
	start := time.Now()
	openCtx, stopOpening := context.WithTimeout(ctx, o.openFor)
	defer stopOpening()
	conns := make([]idleConn, o.conns)
	var next atomic.Int64
	var mu sync.Mutex
	var r idleResult
	var wg sync.WaitGroup
	for range min(o.parallel, o.conns) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(conns)) || openCtx.Err() != nil {
					return
				}
				c, err := openIdle(openCtx, o)
				mu.Lock()
				if err != nil {
					r.errors++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
				} else {
					conns[i] = c
					r.opened++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.openTime = time.Since(start)
	ready(r)
	<-ctx.Done()
	for _, c := range conns {
		if c.tcp == nil {
			continue
		}
		if established(c.tcp) {
			r.held++
		}
		c.conn.SetDeadline(time.Now().Add(time.Second)) // a TLS close_notify never blocks the exit
		c.conn.Close()
	}
	r.elapsed = time.Since(start)
	return r
}

// openIdle opens one connection of the kind o.kind and leaves it idle: "tls"
// is a full handshake with the SNI o.host and nothing more (a passthrough
// proxy then holds both the client and the upstream connection); "http" is
// one keep-alive GET of o.path answered with o.status, body read to the end.
func openIdle(ctx context.Context, o options) (idleConn, error) {
	ctx, cancel := context.WithTimeout(ctx, idleOpenTimeout)
	defer cancel()
	d := net.Dialer{Timeout: idleDialTimeout}
	c, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return idleConn{}, fmt.Errorf("dialling: %w", err)
	}
	tcp := c.(*net.TCPConn)
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	ic := idleConn{tcp: tcp, conn: c}
	switch o.kind {
	case "tls":
		tc := tls.Client(c, tlsConfig(o.host))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return idleConn{}, fmt.Errorf("handshake: %w", err)
		}
		ic.conn = tc
	case "http":
		if err := keepAliveRequest(c, o.host, o.path, o.status); err != nil {
			c.Close()
			return idleConn{}, err
		}
	}
	c.SetDeadline(time.Time{})
	return ic, nil
}

// keepAliveRequest sends one keep-alive GET over c and reads the whole
// response, which must have status want and leave the connection open.
func keepAliveRequest(c net.Conn, host, path string, want int) error {
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: icpgate-bench-loadgen\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return fmt.Errorf("writing request: %w", err)
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%w: got %d, want %d", ErrStatus, resp.StatusCode, want)
	}
	if resp.Close {
		return fmt.Errorf("%w: the response closes it", ErrNotHeld)
	}
	if n := br.Buffered(); n > 0 {
		return fmt.Errorf("%w: %d bytes after the response", ErrNotHeld, n)
	}
	return nil
}
