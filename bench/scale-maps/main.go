// Command scale-maps is the probe of bench/scale-maps.sh: it applies one
// registry change (a shell command, or a command sent to HAProxy's runtime
// API over its UNIX socket) and then polls an HTTP listener with a given
// Host, one new connection per request (so an nginx or HAProxy worker that
// lingers after a reload does not keep answering on a kept-alive
// connection), until the status flips to the one wanted.
//
// Usage:
//
//	scale-maps -addr 127.0.0.78:28180 -host www.site0333301.com -from 200 -to 403 \
//	    -exec 'printf x | dd of=map bs=1 seek=123 conv=notrunc && kill -HUP 4242'
//	scale-maps -addr 127.0.0.78:28280 -host www.added1.cn -from 403 -to 200 \
//	    -unix /tmp/w/haproxy.sock -send 'add map /tmp/w/haproxy.map added1.cn 1'
//	scale-maps -addr 127.0.0.78:28180 -host www.site0333301.com -to 200   # wait only
//
// It prints one line of key=value pairs: effective_s (from the start of the
// action until the first probe that got -to), action_s (how long the action
// itself took), probes, errors (probes without an HTTP answer), and reply
// (the runtime API's answer, quoted) or first_error when there was one. It
// exits 1 when the status did not flip within -timeout, or when the status
// before the action was not -from.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrNotLoopback rejects a probe target outside 127.0.0.0/8 and ::1.
var ErrNotLoopback = errors.New("target is not a loopback address")

// ErrBefore is a status before the change other than the one expected.
var ErrBefore = errors.New("unexpected status before the change")

// ErrTimeout is a change that did not become effective in time.
var ErrTimeout = errors.New("status did not flip in time")

// options are the command-line flags.
type options struct {
	addr     string        // host:port of the HTTP listener, loopback only
	host     string        // Host header of every probe
	from, to int           // status before the change (0: not checked) and after
	timeout  time.Duration // most time from the action until the flip
	interval time.Duration // pause between probes
	shell    string        // action: a command for sh -c
	unix     string        // action: UNIX socket of HAProxy's runtime API ...
	send     string        // ... and the command line sent to it
}

// result is what one run measured.
type result struct {
	effective  time.Duration // action start until the first probe got to
	action     time.Duration // the action alone
	probes     int           // requests sent after the action started
	errors     int           // of which failed without an HTTP status
	firstError string        // the first of those failures
	reply      string        // the runtime API's answer
}

// String formats r as the key=value line the script parses.
func (r result) String() string {
	s := fmt.Sprintf("effective_s=%.4f action_s=%.4f probes=%d errors=%d",
		r.effective.Seconds(), r.action.Seconds(), r.probes, r.errors)
	if r.reply != "" {
		s += fmt.Sprintf(" reply=%q", r.reply)
	}
	if r.firstError != "" {
		s += fmt.Sprintf(" first_error=%q", r.firstError)
	}
	return s
}

// checkLoopback accepts only a literal loopback IP and a port: the probe
// must never leave the machine.
func checkLoopback(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("addr %q: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("addr %q: %w", addr, ErrNotLoopback)
	}
	return nil
}

// prober sends one GET per call on a new connection.
type prober struct {
	client *http.Client
	url    string
	host   string
}

func newProber(addr, host string) *prober {
	return &prober{
		client: &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			Timeout:   2 * time.Second,
			// A block page or origin redirect is an answer in itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		url:  "http://" + addr + "/",
		host: host,
	}
}

// status returns the HTTP status of one request, or an error when there
// was no answer (connection refused or reset, timeout).
func (p *prober) status(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return 0, err
	}
	req.Host = p.host
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// runtimeAPI sends one command line to a HAProxy CLI socket and returns its
// answer (HAProxy answers and closes in non-interactive mode). An empty
// answer means success for add/set/del map.
func runtimeAPI(ctx context.Context, sock, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return "", fmt.Errorf("runtime API: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("runtime API: sending %q: %w", cmd, err)
	}
	b, err := io.ReadAll(bufio.NewReader(io.LimitReader(c, 1<<16)))
	if err != nil {
		return "", fmt.Errorf("runtime API: reading the answer to %q: %w", cmd, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// act runs the configured action and returns the runtime API's answer, if
// any.
func act(ctx context.Context, o options) (string, error) {
	switch {
	case o.unix != "":
		return runtimeAPI(ctx, o.unix, o.send)
	case o.shell != "":
		out, err := exec.CommandContext(ctx, "sh", "-c", o.shell).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("action %q: %w: %s", o.shell, err, strings.TrimSpace(string(out)))
		}
	}
	return "", nil
}

// run checks the status before the change, applies it and polls until the
// status is o.to, bounded by o.timeout.
func run(ctx context.Context, o options) (result, error) {
	var r result
	p := newProber(o.addr, o.host)
	if o.from != 0 {
		got, err := p.status(ctx)
		if err != nil {
			return r, fmt.Errorf("probe before the change: %w", err)
		}
		if got != o.from {
			return r, fmt.Errorf("%w: %s got %d, want %d", ErrBefore, o.host, got, o.from)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	t0 := time.Now()
	reply, err := act(ctx, o)
	r.action, r.reply = time.Since(t0), reply
	if err != nil {
		return r, err
	}
	for {
		got, err := p.status(ctx)
		r.probes++
		if err != nil {
			r.errors++
			if r.firstError == "" {
				r.firstError = err.Error()
			}
		} else if got == o.to {
			r.effective = time.Since(t0)
			return r, nil
		}
		select {
		case <-ctx.Done():
			r.effective = time.Since(t0)
			return r, fmt.Errorf("%w: %s not %d after %v (%d probes)", ErrTimeout, o.host, o.to, o.timeout, r.probes)
		case <-time.After(o.interval):
		}
	}
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "", "HTTP listener to probe, loopback ip:port")
	flag.StringVar(&o.host, "host", "", "Host header of the probes")
	flag.IntVar(&o.from, "from", 0, "status expected before the change (0: do not check)")
	flag.IntVar(&o.to, "to", 200, "status that shows the change is effective")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "most time from the action until the flip")
	flag.DurationVar(&o.interval, "interval", 5*time.Millisecond, "pause between probes")
	flag.StringVar(&o.shell, "exec", "", "action: shell command (sh -c)")
	flag.StringVar(&o.unix, "unix", "", "action: HAProxy runtime API socket (with -send)")
	flag.StringVar(&o.send, "send", "", "action: command line for the runtime API")
	flag.Parse()
	var bad []string
	if err := checkLoopback(o.addr); err != nil {
		bad = append(bad, err.Error())
	}
	if o.host == "" {
		bad = append(bad, "-host is required")
	}
	if o.to < 100 || o.to > 599 {
		bad = append(bad, fmt.Sprintf("-to %d is not an HTTP status", o.to))
	}
	if o.timeout <= 0 || o.interval < 0 {
		bad = append(bad, "-timeout must be positive and -interval not negative")
	}
	if (o.unix == "") != (o.send == "") || (o.unix != "" && o.shell != "") {
		bad = append(bad, "give -unix with -send, or -exec, or no action")
	}
	if len(bad) > 0 {
		fmt.Fprintln(os.Stderr, "scale-maps:", strings.Join(bad, "; "))
		os.Exit(2)
	}
	r, err := run(context.Background(), o)
	fmt.Println(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale-maps:", err)
		os.Exit(1)
	}
}
