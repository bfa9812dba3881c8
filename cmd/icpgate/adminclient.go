package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// tokenEnv names the environment variable the admin commands read their
// token from (never a flag: flags show up in ps and shell history).
const tokenEnv = "ICPGATE_TOKEN"

// clientFlags are the flags every admin command takes.
type clientFlags struct {
	config string
	admin  string
	json   bool
}

// addClientFlags registers -config, --admin and --json on fs.
func addClientFlags(fs *flag.FlagSet) *clientFlags {
	var cf clientFlags
	fs.StringVar(&cf.config, "config", "", "config file naming admin.address (default: the embedded sample config)")
	fs.StringVar(&cf.admin, "admin", "", "admin API base URL, e.g. http://127.0.0.1:9090 (default: from the config's admin.address)")
	fs.BoolVar(&cf.json, "json", false, "print JSON for scripts instead of a table")
	return &cf
}

// adminClient talks to a running gateway's admin API with a bearer token.
type adminClient struct {
	base  *url.URL // scheme and host; paths are appended
	where string   // what to name in "not running at" errors
	token string
	hc    *http.Client
}

// newAdminClient builds the client from --admin or the config's
// admin.address (HTTPS to the first admin.tls_names name when set), with
// the token from ICPGATE_TOKEN.
func newAdminClient(cf *clientFlags) (*adminClient, error) {
	token := strings.TrimSpace(os.Getenv(tokenEnv))
	if token == "" {
		return nil, fmt.Errorf("%s is not set: export the token that `icpgate token create` printed (export %s=icpg_...)", tokenEnv, tokenEnv)
	}
	c := &adminClient{token: token}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cf.admin != "" {
		raw := cf.admin
		if !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--admin: must be an http(s) URL such as http://127.0.0.1:9090, got %q", cf.admin)
		}
		c.base = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
		c.where = u.Host
	} else {
		cfg, err := LoadConfig(cf.config)
		if err != nil {
			return nil, err
		}
		if loc, err := time.LoadLocation(cfg.Policy.TimeZone); err == nil && cfg.Policy.TimeZone != "" {
			displayZone.Store(loc)
		}
		dial := dialableAddress(cfg.Admin.Address)
		c.where = dial
		c.base = &url.URL{Scheme: "http", Host: dial}
		if len(cfg.Admin.TLSNames) > 0 {
			// The certificate is for the names, which may not resolve to
			// this listener from here: name the first one (TLS and Host),
			// dial the configured address.
			_, port, _ := net.SplitHostPort(dial)
			c.base = &url.URL{Scheme: "https", Host: net.JoinHostPort(cfg.Admin.TLSNames[0], port)}
			d := &net.Dialer{Timeout: 10 * time.Second}
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, dial)
			}
		}
	}
	tr.Proxy = nil // the admin listener is local or on a management network
	c.hc = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	return c, nil
}

// dialableAddress turns a listen address into one to connect to: an
// unspecified host (all interfaces) is reached on loopback.
func dialableAddress(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// apiError is an error answer of the admin API (docs/admin-api.md).
type apiError struct {
	Status   int    `json:"-"`
	Code     string `json:"error"`
	Message  string `json:"message"`
	Field    string `json:"field"`
	NeedRole string `json:"need_role"`
	State    string `json:"state"`
	// RetryAfter is the 429's Retry-After, in seconds.
	RetryAfter string `json:"-"`
}

// flagOfField maps the API's field names to the flags that set them.
var flagOfField = map[string]string{
	"host": "HOST", "ticket": "--ticket", "reason": "--reason", "ttl": "--ttl",
	"expires": "--expires", "scope": "--scope", "confirm": "--confirm",
}

// Error says what went wrong and what to do, in the words of the CLI.
func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	switch e.Code {
	case "unauthenticated":
		return fmt.Sprintf("the token in %s was not accepted (%s): it may be mistyped or revoked; ask an admin for a new one", tokenEnv, msg)
	case "forbidden":
		if e.NeedRole != "" {
			return fmt.Sprintf("forbidden: %s (ask an admin for a %s token)", msg, e.NeedRole)
		}
		return "forbidden: " + msg
	case "confirmation_required":
		// The API's hint names its JSON field; the CLI's is the flag.
		msg, _, _ = strings.Cut(msg, `; send "confirm"`)
		return fmt.Sprintf("the domain's registry record is %q: %s\nIf the allow is intended, re-run with --confirm.", e.State, msg)
	case "conflict":
		return "someone else changed it since it was read: " + msg + "; run the command again"
	case "rate_limited":
		if e.RetryAfter != "" {
			return fmt.Sprintf("rate limited: %s (retry after %s s)", msg, e.RetryAfter)
		}
		return "rate limited: " + msg
	case "misdirected":
		return fmt.Sprintf("the admin API refused the host name in the URL (%s): use its IP address, or list the name in admin.hosts", msg)
	case "unavailable":
		return "the gateway's control-plane store is unavailable (" + msg + "); the data plane keeps serving, try again later"
	case "invalid":
		if f, ok := flagOfField[e.Field]; ok {
			return fmt.Sprintf("%s: %s", f, msg)
		}
		if e.Field != "" {
			return fmt.Sprintf("%s: %s", e.Field, msg)
		}
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (%d %s)", msg, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (%d)", msg, e.Status)
}

// response is a successful answer.
type response struct {
	header http.Header
	body   []byte
}

// do sends a request and returns the answer, or an *apiError for a non-2xx
// status, or a transport error saying whether the gateway runs at all.
func (c *adminClient) do(ctx context.Context, method, path string, query url.Values, body any, ifMatch string) (*response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("the gateway isn't running at %s (connection refused): start icpgate serve, or point --admin or -config at it", c.where)
		}
		return nil, fmt.Errorf("admin API at %s: %w", c.where, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: reading the answer: %w", c.where, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Message = strings.TrimSpace(string(b))
			if len(e.Message) > 200 {
				e.Message = e.Message[:200]
			}
			e.Message = fmt.Sprintf("unexpected answer from %s: %s", c.where, e.Message)
		}
		return nil, e
	}
	return &response{header: resp.Header, body: b}, nil
}

// getJSON GETs path and decodes the JSON answer into v.
func (c *adminClient) getJSON(ctx context.Context, path string, query url.Values, v any) (*response, error) {
	r, err := c.do(ctx, http.MethodGet, path, query, nil, "")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return nil, fmt.Errorf("admin API at %s: decoding %s: %w", c.where, path, err)
	}
	return r, nil
}

// sendJSON sends body with method and decodes the JSON answer into v.
func (c *adminClient) sendJSON(ctx context.Context, method, path string, body any, ifMatch string, v any) (*response, error) {
	r, err := c.do(ctx, method, path, nil, body, ifMatch)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return nil, fmt.Errorf("admin API at %s: decoding the answer to %s %s: %w", c.where, method, path, err)
	}
	return r, nil
}
