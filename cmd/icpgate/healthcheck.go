package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// cmdHealthcheck probes the admin listener's /healthz and exits 0 on 200,
// 1 when it does not answer 200, 2 on a usage or config error.
// Distroless images have no curl, so the container HEALTHCHECK calls the
// binary itself, with the config serve runs on: the probe follows
// admin.address and admin.tls_names instead of repeating them.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "config whose admin listener is probed (default: $ICPGATE_CONFIG, else "+installedConfig+" when it exists, else "+defaultAdminAddress+")")
	rawURL := fs.String("url", "", "probe this URL instead of the config's admin /healthz")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "icpgate healthcheck: unexpected argument %q\n", fs.Arg(0))
		return exitError
	}
	if *config != "" && *rawURL != "" {
		fmt.Fprintln(stderr, "icpgate healthcheck: -config and -url: give one of them")
		return exitError
	}
	target, hc, err := healthProbe(*config, *rawURL)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate healthcheck: %v\n", err)
		return exitError
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate healthcheck: %v\n", err)
		return exitError
	}
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate healthcheck: %v\n", err)
		return exitBlocked
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "icpgate healthcheck: %s answered %s\n", target, resp.Status)
		return exitBlocked
	}
	fmt.Fprintln(stdout, "ok")
	return exitOK
}

// healthProbe returns the URL to probe and the client to probe it with:
// rawURL as given, or the /healthz of the admin listener of the config
// (findConfig's choice when config is empty, quietly: a probe's stderr
// lands in `docker inspect`). An admin listener on all interfaces is
// probed on loopback; with admin.tls_names it is probed over HTTPS under
// the first name, dialling the configured address.
func healthProbe(config, rawURL string) (string, *http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The admin listener is local or on a management network; an
	// HTTP(S)_PROXY set for the gateway's other traffic must not take the
	// probe elsewhere.
	tr.Proxy = nil
	hc := &http.Client{Transport: tr}
	if rawURL != "" {
		return rawURL, hc, nil
	}
	cfg, err := LoadConfig(findConfig(config, "healthcheck", io.Discard))
	if err != nil {
		return "", nil, err
	}
	dial := dialableAddress(cfg.Admin.Address)
	u := url.URL{Scheme: "http", Host: dial, Path: "/healthz"}
	if names := cfg.Admin.TLSNames; len(names) > 0 {
		_, port, _ := net.SplitHostPort(dial)
		u = url.URL{Scheme: "https", Host: net.JoinHostPort(names[0], port), Path: "/healthz"}
		d := &net.Dialer{}
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dial)
		}
		// Not verified: the probe asks whether this process serves, sends
		// no credentials and reads only the status; a certificate from a
		// private CA, or one past renewal, is no reason to call the
		// gateway unhealthy and restart it.
		tr.TLSClientConfig = &tls.Config{ServerName: names[0], InsecureSkipVerify: true}
	}
	return u.String(), hc, nil
}
