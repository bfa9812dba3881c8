package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/icpgate/icpgate/internal/pebbletest"
)

// pageDecider is a Decider with registrable domains, as the registry
// gives them: the last two labels of a name. Names in filed pass; every
// other valid name is blocked "unfiled" with its domain; an empty name or
// an IP literal is blocked "ip_access"; anything else "invalid_host".
type pageDecider struct{ filed map[string]bool }

func (d pageDecider) Decide(host string) Decision {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "" {
		return Decision{Reason: "ip_access"}
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return Decision{Reason: "ip_access", Host: h}
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return Decision{Reason: "invalid_host"}
		}
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return Decision{Reason: "invalid_host"}
	}
	dom := strings.Join(labels[len(labels)-2:], ".")
	if d.filed[dom] {
		return Decision{Pass: true, Reason: "filed", Host: h, Domain: dom, FilingNumber: "京ICP备10206937号-1"}
	}
	return Decision{Reason: "unfiled", Host: h, Domain: dom}
}

var testPageDecider = pageDecider{filed: map[string]bool{"filed.cn": true}}

// pageConfig is a one-tls-listener page-mode config.
func pageConfig(t testing.TB, upstream string, page TLSPage) Config {
	cfg := tlsListener(upstream)
	cfg.Node = "edge-test"
	cfg.Policy.ShowNode = true // the page's settings reach the TLS page
	cfg.Policy.TLSBlock = "page"
	if page.StorageDir == "" {
		page.StorageDir = t.TempDir()
	}
	cfg.Policy.TLSPage = page
	return cfg
}

// pageGet connects to addr as a browser would (SNI name, ALPN h2 and
// http/1.1, trusting roots), sends one GET with accept and returns the
// response, its body and the connection state.
func pageGet(addr, name string, roots *x509.CertPool, accept string) (*http.Response, string, tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		return nil, "", tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	st := c.ConnectionState()
	if _, err := fmt.Fprintf(c, "GET /index.html HTTP/1.1\r\nHost: %s\r\nAccept: %s\r\n\r\n", name, accept); err != nil {
		return nil, "", st, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", st, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp, string(body), st, err
	}
	// Then the gateway closes (close_notify, FIN).
	if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		return resp, string(body), st, fmt.Errorf("after the response: got %d bytes, %v, want EOF", n, err)
	}
	return resp, string(body), st, nil
}

func counter(c *prometheus.CounterVec, label string) float64 {
	return testutil.ToFloat64(c.WithLabelValues(label))
}

// TestTLSPagePebble is the end-to-end test against a real ACME server: an
// unfiled name gets a certificate issued by pebble on demand and the block
// page over HTTPS; a filed name passes through untouched; a hello without
// SNI never triggers issuance; the upstream is never dialled for a blocked
// connection; the certificate is stored on disk.
func TestTLSPagePebble(t *testing.T) {
	ca := pebbletest.Start(t, 0)
	up := newTLSUpstream(t, "up", nil)
	storage := t.TempDir()
	ignore := goleak.IgnoreCurrent()
	cfg := pageConfig(t, up.addr(), TLSPage{ACMEDirectory: ca.Directory, CARootsFile: ca.TLSRootsFile, StorageDir: storage, Timeout: 60 * time.Second})
	g := startGateway(t, cfg, testPageDecider)
	// Page mode is the engine's: it hands blocked connections to the page.
	servedByEngines(t, g)
	addr := g.addr("tls")
	pm := g.m.TLSPage

	for _, tt := range []struct {
		name, accept, wantType string
	}{
		{"www.unfiled.cn", "text/html", "text/html; charset=utf-8"},
		{"www.unfiled.cn", "application/json", "application/json; charset=utf-8"}, // the cached certificate
		{"unfiled.cn", "*/*", "text/html; charset=utf-8"},
	} {
		t.Run(tt.name+" "+tt.accept, func(t *testing.T) {
			resp, body, st, err := pageGet(addr, tt.name, ca.Roots, tt.accept)
			if err != nil {
				t.Fatalf("block page over TLS: %v", err)
			}
			if got, want := st.NegotiatedProtocol, "http/1.1"; got != want {
				t.Errorf("ALPN: got %q, want %q", got, want)
			}
			leaf := st.PeerCertificates[0]
			if err := leaf.VerifyHostname(tt.name); err != nil {
				t.Errorf("certificate: %v", err)
			}
			if got, want := leaf.DNSNames, []string{tt.name}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("certificate names: got %q, want %q", got, want)
			}
			if got, want := resp.StatusCode, http.StatusForbidden; got != want {
				t.Errorf("status: got %d, want %d", got, want)
			}
			for h, want := range map[string]string{"X-Icpgate-Reason": "unfiled", "Content-Type": tt.wantType, "Cache-Control": "no-store"} {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s: got %q, want %q", h, got, want)
				}
			}
			if !strings.Contains(body, "unfiled.cn") || !strings.Contains(body, "edge-test") {
				t.Errorf("body does not name the domain and node: %q", body)
			}
			if tt.accept == "application/json" {
				var j struct{ Domain, Reason, RequestID string }
				if err := json.Unmarshal([]byte(body), &j); err != nil {
					t.Fatalf("JSON body: %v: %q", err, body)
				}
				if j.Domain != "unfiled.cn" || j.Reason != "unfiled" {
					t.Errorf("JSON: got domain %q reason %q, want %q %q", j.Domain, j.Reason, "unfiled.cn", "unfiled")
				}
			}
		})
	}

	t.Run("filed passes through", func(t *testing.T) {
		c, err := dialTLS(addr, "filed.cn")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		got, err := httpGet(c, bufio.NewReader(c), "filed.cn")
		if want := "hello filed.cn from up"; got != want || err != nil {
			t.Errorf("got %q, %v, want %q", got, err, want)
		}
	})

	t.Run("concurrent first visits share one issuance", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, _, _, err := pageGet(addr, "burst.unfiled.cn", ca.Roots, "*/*")
				if err == nil && resp.StatusCode != http.StatusForbidden {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("got %v, want the block page", err)
			}
		}
	})

	t.Run("reload keeps or rebuilds the page server", func(t *testing.T) {
		before := g.srv.page.Load()
		if err := g.srv.Reload(cfg, nil); err != nil {
			t.Fatal(err)
		}
		if g.srv.page.Load() != before {
			t.Errorf("an unchanged config rebuilt the page server")
		}
		changed := cfg
		changed.Policy.TLSPage.IssuePerMinute = 5
		if err := g.srv.Reload(changed, nil); err != nil {
			t.Fatal(err)
		}
		if g.srv.page.Load() == before {
			t.Fatalf("a changed config kept the old page server")
		}
		// The new server's memory cache is empty: the certificate comes
		// from the disk storage, without a new issuance.
		resp, _, _, err := pageGet(addr, "www.unfiled.cn", ca.Roots, "*/*")
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("after reload: got %v, want the block page", err)
		}
		if got, want := counter(pm.CertificateRequests, issueStored), 1.0; got != want {
			t.Errorf("issuance checks %s: got %v, want %v", issueStored, got, want)
		}
	})

	t.Run("handshake without a request", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "www.unfiled.cn", RootCAs: ca.Roots})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		deadline := time.Now().Add(5 * time.Second)
		for counter(pm.Pages, pageNoRequest) != 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got, want := counter(pm.Pages, pageNoRequest), 1.0; got != want {
			t.Errorf("pages %s: got %v, want %v", pageNoRequest, got, want)
		}
	})

	t.Run("no SNI gets the alert", func(t *testing.T) {
		_, _, _, err := pageGet(addr, "", nil, "*/*")
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("got %v, want an access denied alert", err)
		}
	})

	if got, want := counter(pm.CertificateRequests, issueAllowed), 3.0; got != want {
		t.Errorf("issuances allowed: got %v, want %v", got, want)
	}
	for _, r := range []string{issueRefusedName, issueRefusedVerdict, issueRefusedRate, issueRefusedCap} {
		if got := counter(pm.CertificateRequests, r); got != 0 {
			t.Errorf("issuance check %s: got %v, want 0", r, got)
		}
	}
	for r, want := range map[string]float64{pageServed: 8, pageNotEligible: 1, pageNoCert: 0, pageHandshake: 0} {
		if got := counter(pm.Pages, r); got != want {
			t.Errorf("pages %s: got %v, want %v", r, got, want)
		}
	}
	if got, want := up.accepted.Load(), int64(1); got != want {
		t.Errorf("upstream connections: got %d, want %d (only the filed one)", got, want)
	}
	var stored []string
	filepath.WalkDir(storage, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".crt") {
			stored = append(stored, filepath.Base(path))
		}
		return nil
	})
	if got, want := strings.Join(stored, " "), "burst.unfiled.cn.crt unfiled.cn.crt www.unfiled.cn.crt"; got != want {
		t.Errorf("stored certificates: got %q, want %q", got, want)
	}
	g.stop(t)
	goleak.VerifyNone(t, append([]goleak.Option{ignore}, certmagicGlobals...)...)
}

// certmagicGlobals are goroutines certmagic keeps beyond a Server: its
// process-wide per-CA rate limiter; the lock-file refresher, which exits
// within 5 s of the unlock; and the idle keep-alive connection of the ACME
// issuer's HTTP client to the CA (its transport is unexported and has no
// idle timeout, so it stays until the CA closes it).
var certmagicGlobals = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
	goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
}

// TestTLSPageFallback: with the ACME server down, a blocked client gets the
// access_denied alert once TLSPage.Timeout has passed; a name refused by
// the hourly cap gets it at once. Both are counted.
func TestTLSPageFallback(t *testing.T) {
	up := newTLSUpstream(t, "up", nil)
	down := fmt.Sprintf("https://127.0.0.1:%d/dir", pebbletest.FreePorts(t, 1)[0])
	ignore := goleak.IgnoreCurrent()
	cfg := pageConfig(t, up.addr(), TLSPage{ACMEDirectory: down, Timeout: time.Second, MaxNamesPerHour: 1})
	g := startGateway(t, cfg, testPageDecider)

	_, pool := testCert(t)
	for _, tt := range []struct{ name, check string }{
		{"www.unfiled.cn", issueAllowed},
		{"other.unfiled.cn", issueRefusedCap},
	} {
		_, _, _, err := pageGet(g.addr("tls"), tt.name, pool, "*/*")
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("%s: got %v, want an access denied alert", tt.name, err)
		}
		if got, want := counter(g.m.TLSPage.CertificateRequests, tt.check), 1.0; got != want {
			t.Errorf("%s: issuance checks %s: got %v, want %v", tt.name, tt.check, got, want)
		}
	}
	if got, want := counter(g.m.TLSPage.Pages, pageNoCert), 2.0; got != want {
		t.Errorf("pages %s: got %v, want %v", pageNoCert, got, want)
	}
	if got := up.accepted.Load(); got != 0 {
		t.Errorf("upstream connections: got %d, want 0", got)
	}
	g.stop(t)
	goleak.VerifyNone(t, append([]goleak.Option{ignore}, certmagicGlobals...)...)
}

// TestTLSPageAllowIssue checks certmagic's on-demand decision: only blocked
// names with a registrable domain, in canonical form, under the rate and
// the hourly cap; a name with a stored certificate is not charged.
func TestTLSPageAllowIssue(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	cfg := pageConfig(t, "", TLSPage{ACMEDirectory: "https://127.0.0.1:1/dir", IssuePerMinute: 2, MaxNamesPerHour: 3})
	p, err := newTLSPage(cfg, testPageDecider, m.TLSPage, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	now := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }

	ctx := context.Background()
	stored := certmagic.StorageKeys.SiteCert(p.issuer.IssuerKey(), "stored.unfiled.cn")
	if err := p.storage.Store(ctx, stored, []byte("x")); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name    string
		advance time.Duration
		want    string
	}{
		{"filed.cn", 0, issueRefusedVerdict},
		{"www.filed.cn", 0, issueRefusedVerdict},
		{"127.0.0.1", 0, issueRefusedName},
		{"::1", 0, issueRefusedName},
		{"", 0, issueRefusedName},
		{"bad_name.cn", 0, issueRefusedName},
		{"WWW.UNFILED.CN", 0, issueRefusedName}, // not the canonical form
		{"localhost", 0, issueRefusedName},      // no registrable domain
		{"a.unfiled.cn", 0, issueAllowed},
		{"b.unfiled.cn", 0, issueAllowed},
		{"c.unfiled.cn", 0, issueRefusedRate}, // bucket of 2 is empty
		{"stored.unfiled.cn", 0, issueStored}, // free
		{"c.unfiled.cn", 30 * time.Second, issueAllowed},
		{"d.unfiled.cn", 5 * time.Minute, issueRefusedCap}, // 3 names this hour
		{"a.unfiled.cn", 0, issueAllowed},                  // seen this hour: not capped
		{"d.unfiled.cn", time.Hour, issueAllowed},          // a new hour
	} {
		now = now.Add(tt.advance)
		before := counter(m.TLSPage.CertificateRequests, tt.want)
		err := p.allowIssue(ctx, tt.name)
		if got := counter(m.TLSPage.CertificateRequests, tt.want) - before; got != 1 {
			t.Errorf("%q: counter %s rose by %v, want 1 (err %v)", tt.name, tt.want, got, err)
		}
		allowed := tt.want == issueAllowed || tt.want == issueStored
		if (err == nil) != allowed || (err != nil && !errors.Is(err, ErrIssueRefused)) {
			t.Errorf("%q: got %v, want allowed=%v", tt.name, err, allowed)
		}
	}
}

func TestPageEligible(t *testing.T) {
	for _, tt := range []struct {
		sni  string
		want bool
	}{
		{"www.unfiled.cn", true},
		{"", false},
		{"127.0.0.1", false},
		{"bad_name.cn", false},
		{"localhost", false},
	} {
		d := testPageDecider.Decide(tt.sni)
		if got := pageEligible(tt.sni, &d); got != tt.want {
			t.Errorf("pageEligible(%q): got %v, want %v", tt.sni, got, tt.want)
		}
	}
}

func TestTLSPageConfigValidation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		page TLSPage
		want string
	}{
		{TLSPage{ACMEDirectory: "http://ca.example/dir"}, "policy.tls_page.acme_directory"},
		{TLSPage{ACMEDirectory: "/dir"}, "policy.tls_page.acme_directory"},
		{TLSPage{IssuePerMinute: -1}, "policy.tls_page.issue_per_minute"},
		{TLSPage{MaxNamesPerHour: -1}, "policy.tls_page.max_names_per_hour"},
		{TLSPage{Timeout: -time.Second}, "policy.tls_page.timeout"},
		{TLSPage{CARootsFile: file}, "policy.tls_page.ca_roots_file"},
		{TLSPage{CARootsFile: file + ".missing"}, "policy.tls_page.ca_roots_file"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			_, err := NewServer(pageConfig(t, "", tt.page), testPageDecider, nil, nil)
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an ErrInvalidConfig naming %q", err, tt.want)
			}
		})
	}
	// A storage directory that cannot be created fails Start.
	srv, err := NewServer(pageConfig(t, "", TLSPage{StorageDir: filepath.Join(file, "sub")}), testPageDecider, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err == nil || !strings.Contains(err.Error(), "policy.tls_page.storage_dir") {
		t.Errorf("Start: got %v, want an error naming policy.tls_page.storage_dir", err)
	}
}

// TestTLSPageTLSALPNValidation lets pebble really validate the order with
// TLS-ALPN-01 (RFC 8737): its validation hello for the blocked name
// reaches the gateway's own tls listener, which answers with certmagic's
// challenge certificate; only then is the certificate issued.
func TestTLSPageTLSALPNValidation(t *testing.T) {
	port := pebbletest.FreePorts(t, 1)[0]
	ca := pebbletest.Start(t, port)
	up := newTLSUpstream(t, "up", nil)
	cfg := pageConfig(t, up.addr(), TLSPage{ACMEDirectory: ca.Directory, CARootsFile: ca.TLSRootsFile, Timeout: 60 * time.Second})
	cfg.Listeners[0].Address = fmt.Sprintf("127.0.0.1:%d", port)
	g := startGateway(t, cfg, testPageDecider)

	resp, body, st, err := pageGet(g.addr("tls"), "validated.unfiled.cn", ca.Roots, "*/*")
	if err != nil {
		t.Fatalf("block page over TLS: %v", err)
	}
	if err := st.PeerCertificates[0].VerifyHostname("validated.unfiled.cn"); err != nil {
		t.Errorf("certificate: %v", err)
	}
	if got, want := resp.StatusCode, http.StatusForbidden; got != want || !strings.Contains(body, "unfiled.cn") {
		t.Errorf("status: got %d, want %d with the block page", got, want)
	}
	if got := counter(g.m.TLSPage.Pages, pageChallenge); got < 1 {
		t.Errorf("validation handshakes answered: got %v, want at least 1", got)
	}
	if got := up.accepted.Load(); got != 0 {
		t.Errorf("upstream connections: got %d, want 0", got)
	}
}

// BenchmarkTLSPageBlock measures one blocked visit in page mode with the
// certificate in certmagic's memory cache: connect, full TLS 1.3 handshake
// (no resumption), GET, the block page, close. Client and gateway share the
// machine, so ns/op covers both ends.
func BenchmarkTLSPageBlock(b *testing.B) {
	up := newTLSUpstream(b, "up", nil)
	cfg := pageConfig(b, up.addr(), TLSPage{ACMEDirectory: "https://127.0.0.1:1/dir"})
	g := startGateway(b, cfg, testPageDecider)
	cert, pool := testCert(b)
	if _, err := g.srv.page.Load().magic.CacheUnmanagedTLSCertificate(context.Background(), cert, nil); err != nil {
		b.Fatal(err)
	}
	addr := g.addr("tls")
	b.ReportAllocs()
	for b.Loop() {
		resp, _, _, err := pageGet(addr, "unfiled.cn", pool, "*/*")
		if err != nil || resp.StatusCode != http.StatusForbidden {
			b.Fatalf("got %v, want the block page", err)
		}
	}
	b.StopTimer()
	if got := counter(g.m.TLSPage.CertificateRequests, issueAllowed); got != 0 {
		b.Errorf("issuances: got %v, want 0 (the cached certificate)", got)
	}
}
