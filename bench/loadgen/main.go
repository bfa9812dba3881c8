// Command loadgen is the benchmark's own load generator for what wrk cannot
// do: new TLS connections with a chosen SNI (full handshake, one request,
// close), bulk downloads over plain HTTP or TLS with a chosen Host/SNI, and
// many idle connections held open. Every run is bounded by a duration and a
// count; only loopback addresses are accepted.
//
// Usage:
//
//	loadgen -mode tlsconn -addr 127.0.0.77:27743 -host www.site0500000.cn -c 32 -d 10s
//	loadgen -mode bulk -tls -addr 127.0.0.77:27743 -host www.site0500000.cn -path /100m.bin -c 4 -d 10s
//	loadgen -mode idle -kind tls -addr 127.0.0.77:27743 -host www.site0500000.cn -c 10000 -d 2m
//
// tlsconn and bulk print one line of key=value pairs: requests, errors,
// seconds, rate (requests/s), p50_ms, p99_ms, bytes, mbps (MB/s, 10^6
// bytes), and first_error when there was one.
//
// idle opens -c connections, -p at a time (for at most -open-for), and holds
// them: kind tls does a
// full TLS handshake with the SNI -host and then nothing (through a
// passthrough proxy the tunnel and its upstream connection stay open); kind
// http sends one keep-alive GET and reads the answer. It raises its own
// RLIMIT_NOFILE to fit -c and fails if it cannot. When every connection has
// been tried it prints "ready opened=N errors=E open_seconds=S" (and
// first_error), then holds until -d has passed since the start or until
// SIGINT or SIGTERM, counts the connections still established (the peer
// neither closed nor reset them), closes all and prints "opened=N errors=E
// held=H open_seconds=S seconds=T".
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNotLoopback rejects a target outside 127.0.0.0/8 and ::1.
var ErrNotLoopback = errors.New("target is not a loopback address")

// ErrStatus is a response whose status is not the one wanted.
var ErrStatus = errors.New("unexpected status")

// options are the command-line flags.
type options struct {
	mode     string
	kind     string        // idle: tls or http
	parallel int           // idle: connections being opened at once
	openFor  time.Duration // idle: most time for opening; 0 is half of dur
	addr     string
	host     string
	path     string
	useTLS   bool
	conns    int
	dur      time.Duration
	max      int
	status   int
	proxyHdr bool
}

// result is what one run measured.
type result struct {
	requests int64
	errors   int64
	bytes    int64
	elapsed  time.Duration
	lat      []time.Duration
	firstErr string
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "tlsconn", "tlsconn (new TLS connection per request), bulk (keep-alive downloads) or idle (hold -c connections)")
	flag.StringVar(&o.kind, "kind", "tls", "idle: tls (handshake, then idle) or http (one keep-alive request, then idle)")
	flag.IntVar(&o.parallel, "p", 64, "idle: connections being opened at once")
	flag.DurationVar(&o.openFor, "open-for", 0, "idle: most time for opening them, then hold what is open (default half of -d)")
	flag.StringVar(&o.addr, "addr", "", "host:port to connect to (loopback only)")
	flag.StringVar(&o.host, "host", "", "TLS SNI and HTTP Host")
	flag.StringVar(&o.path, "path", "/", "request path")
	flag.BoolVar(&o.useTLS, "tls", false, "bulk over TLS (tlsconn always uses TLS)")
	flag.IntVar(&o.conns, "c", 16, "concurrent connections (idle: connections to hold)")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "duration (idle: most time from the start to the release)")
	flag.IntVar(&o.max, "n", 1_000_000, "most requests in all")
	flag.IntVar(&o.status, "status", 200, "expected response status")
	flag.BoolVar(&o.proxyHdr, "proxy", false, "tlsconn: send a PROXY v1 header (a client in 203.0.113.0/24 per worker) before the handshake, as a load balancer would")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if o.mode == "idle" {
		os.Exit(mainIdle(o))
	}
	var r result
	switch o.mode {
	case "tlsconn":
		r = runTLSConn(o)
	case "bulk":
		r = runBulk(o)
	}
	fmt.Println(r.format())
}

// mainIdle runs -mode idle: ready line, hold, result line. It returns the
// exit status: 1 when the descriptor limit cannot fit -c.
func mainIdle(o options) int {
	// The connections, plus stdio, the runtime's epoll and a margin.
	if err := raiseNofile(uint64(o.conns) + 64); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.dur)
	defer cancel()
	r := runIdle(ctx, o, func(r idleResult) { fmt.Println(r.readyLine()) })
	fmt.Println(r.format())
	return 0
}

// maxIdleConns bounds -c in idle mode.
const maxIdleConns = 200_000

// check validates the options.
func (o *options) check() error {
	switch o.mode {
	case "tlsconn", "bulk":
		if o.conns < 1 || o.conns > 1000 {
			return fmt.Errorf("-c: want 1..1000, got %d", o.conns)
		}
	case "idle":
		if o.kind != "tls" && o.kind != "http" {
			return fmt.Errorf("-kind: want tls or http, got %q", o.kind)
		}
		if o.conns < 1 || o.conns > maxIdleConns {
			return fmt.Errorf("-c: want 1..%d, got %d", maxIdleConns, o.conns)
		}
		if o.parallel < 1 || o.parallel > 1000 {
			return fmt.Errorf("-p: want 1..1000, got %d", o.parallel)
		}
		if o.openFor < 0 || o.openFor > o.dur {
			return fmt.Errorf("-open-for: want 0..%v (-d), got %v", o.dur, o.openFor)
		}
		if o.openFor == 0 {
			o.openFor = o.dur / 2
		}
	default:
		return fmt.Errorf("-mode: want tlsconn, bulk or idle, got %q", o.mode)
	}
	if o.host == "" {
		return errors.New("-host: required")
	}
	if o.dur <= 0 || o.dur > 5*time.Minute {
		return fmt.Errorf("-d: want up to 5m, got %v", o.dur)
	}
	if o.max < 1 {
		return fmt.Errorf("-n: want at least 1, got %d", o.max)
	}
	return checkLoopback(o.addr)
}

// checkLoopback accepts only literal loopback addresses, so a typo can never
// send load off the machine.
func checkLoopback(addr string) error {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: %w", addr, ErrNotLoopback)
	}
	return nil
}

// tlsConfig is the client config: any certificate (the origins are
// self-signed), no session cache so that every handshake is a full one.
func tlsConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
}

// runTLSConn opens a new TLS connection per request: dial, full handshake,
// one GET with Connection: close, read the whole response, close.
func runTLSConn(o options) result {
	deadline := time.Now().Add(o.dur)
	var left atomic.Int64
	left.Store(int64(o.max))
	req := []byte("GET " + o.path + " HTTP/1.1\r\nHost: " + o.host + "\r\nConnection: close\r\n\r\n")
	per := make([]result, o.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.conns {
		wg.Go(func() {
			r := &per[w]
			cfg := tlsConfig(o.host)
			d := net.Dialer{Timeout: 5 * time.Second}
			var hdr []byte
			if o.proxyHdr {
				hdr = fmt.Appendf(nil, "PROXY TCP4 203.0.113.%d 198.51.100.1 %d 443\r\n", w%250+1, 10000+w)
			}
			for left.Add(-1) >= 0 && time.Now().Before(deadline) {
				t0 := time.Now()
				n, err := oneTLSRequest(&d, cfg, o.addr, hdr, req, o.status)
				if err != nil {
					r.errors++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
					continue
				}
				r.requests++
				r.bytes += n
				r.lat = append(r.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	return merge(per, time.Since(start))
}

// oneTLSRequest does one connection's worth of work (after the PROXY
// header hdr, if any) and returns the bytes read.
func oneTLSRequest(d *net.Dialer, cfg *tls.Config, addr string, hdr, req []byte, want int) (int64, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("dialling: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if hdr != nil {
		if _, err := c.Write(hdr); err != nil {
			return 0, fmt.Errorf("writing the PROXY header: %w", err)
		}
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return 0, fmt.Errorf("handshake: %w", err)
	}
	if _, err := tc.Write(req); err != nil {
		return 0, fmt.Errorf("writing request: %w", err)
	}
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, fmt.Errorf("reading response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return n, fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != want {
		return n, fmt.Errorf("%w: got %d, want %d", ErrStatus, resp.StatusCode, want)
	}
	return n, nil
}

// countingReader counts bytes into a shared counter as they are read, so a
// download cut off at the deadline still counts what arrived.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n.Add(int64(n))
	return n, err
}

// runBulk downloads o.path over o.conns keep-alive connections until the
// duration ends, and reports the bytes received per second.
func runBulk(o options) result {
	scheme := "http"
	if o.useTLS {
		scheme = "https"
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", o.addr)
		},
		TLSClientConfig:     tlsConfig(o.host),
		MaxIdleConnsPerHost: o.conns,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := scheme + "://" + o.host + o.path
	ctx, cancel := context.WithTimeout(context.Background(), o.dur)
	defer cancel()
	var left, bytes atomic.Int64
	left.Store(int64(o.max))
	per := make([]result, o.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.conns {
		wg.Go(func() {
			r := &per[w]
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				t0 := time.Now()
				err := oneDownload(ctx, client, url, o.status, &bytes)
				if ctx.Err() != nil {
					return // cut off by the deadline: bytes counted, request not
				}
				if err != nil {
					r.errors++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
					continue
				}
				r.requests++
				r.lat = append(r.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	m := merge(per, time.Since(start))
	m.bytes = bytes.Load()
	return m
}

// oneDownload GETs url and discards the body, counting its bytes.
func oneDownload(ctx context.Context, c *http.Client, url string, want int, n *atomic.Int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("requesting: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, countingReader{resp.Body, n}); err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%w: got %d, want %d", ErrStatus, resp.StatusCode, want)
	}
	return nil
}

// merge adds up the workers' results.
func merge(per []result, elapsed time.Duration) result {
	m := result{elapsed: elapsed}
	for _, r := range per {
		m.requests += r.requests
		m.errors += r.errors
		m.bytes += r.bytes
		m.lat = append(m.lat, r.lat...)
		if m.firstErr == "" {
			m.firstErr = r.firstErr
		}
	}
	slices.Sort(m.lat)
	return m
}

// percentile returns the q-quantile (0..1) of sorted latencies, by the
// nearest-rank method; 0 when there are none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// format renders the result as one key=value line.
func (r result) format() string {
	s := r.elapsed.Seconds()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var b strings.Builder
	fmt.Fprintf(&b, "requests=%d errors=%d seconds=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f bytes=%d mbps=%.1f",
		r.requests, r.errors, s, float64(r.requests)/s, ms(percentile(r.lat, 0.50)), ms(percentile(r.lat, 0.99)),
		r.bytes, float64(r.bytes)/s/1e6)
	if r.firstErr != "" {
		fmt.Fprintf(&b, " first_error=%q", r.firstErr)
	}
	return b.String()
}
