package proxy

// The HTTPS block page (Policy.TLSBlock "page").
//
// A blocked TLS connection is normally refused with an alert, which a user
// cannot tell from a network fault. In page mode the gateway terminates TLS
// itself: the ClientHello that package sni already read is replayed into a
// crypto/tls server (sni.Conn replays the consumed bytes on Read), whose
// certificate certmagic obtains over ACME on demand. The client then gets
// one HTTP/1.1 response, the same block page the HTTP side writes
// (WriteBlock), and the connection is closed. The upstream is never dialled.
//
// Certificates are issued only for names being blocked right now, and
// never for IP literals, missing or invalid names: certmagic asks
// allowIssue (its OnDemand DecisionFunc) before it obtains one, and
// allowIssue asks the Decider again. New names are rate-limited (a token
// bucket, rate.Limiter) and capped per clock hour, because every name a client sends
// would otherwise cost an ACME order and count against the CA's limits.
// Names that already have a certificate in storage are not charged.
//
// Fail-closed: when a certificate cannot be had within TLSPage.Timeout
// (the CA is down, a limit refused the name), the client gets the same
// access_denied alert as in "alert" mode, never a pass, and the fallback is
// counted. To send that alert rather than crypto/tls's internal_error, the
// certificate is fetched in GetConfigForClient, which writes the alert to
// the socket itself and then mutes the connection for crypto/tls.
//
// ACME validation uses TLS-ALPN-01, answered by the gateway's own tls
// listeners: a validation hello (ALPN exactly "acme-tls/1") for a blocked
// name arrives here and gets certmagic's challenge certificate. HTTP-01 is
// off (the HTTP listeners do not answer it).

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/icpgate/icpgate/internal/acme"
	"github.com/icpgate/icpgate/metrics"
	"github.com/icpgate/icpgate/sni"
)

// DefaultTLSPageStorageDir is TLSPage.StorageDir's default, exported so
// that cmd documents and resolves the same directory.
const DefaultTLSPageStorageDir = "data/certmagic"

// Defaults of TLSPage fields.
const (
	defaultPageIssuePerMinute  = 10
	defaultPageMaxNamesPerHour = 100
	defaultPageTimeout         = 10 * time.Second
	pageCacheCapacity          = 10000    // certificates kept in memory
	pageMaxRequestHead         = 16 << 10 // request head read before answering
	noCertLogInterval          = 10 * time.Second
	acmeTLS1                   = "acme-tls/1"
)

// ErrIssueRefused is returned (wrapped) by the on-demand issuance check
// when a certificate must not be obtained for a name.
var ErrIssueRefused = errors.New("certificate issuance refused")

// Results of a page-mode block, the label values of TLSPageMetrics.Pages.
const (
	pageServed      = "served"          // the block page was written
	pageNoCert      = "no_certificate"  // no certificate in time: alert sent
	pageNotEligible = "not_eligible"    // no name, an IP or an invalid name: alert sent
	pageHandshake   = "handshake_error" // the client failed or left the handshake
	pageNoRequest   = "no_request"      // the client sent no request after the handshake
	pageChallenge   = "challenge"       // an ACME TLS-ALPN-01 validation was answered
)

// Results of the issuance check, the label values of
// TLSPageMetrics.CertificateRequests.
const (
	issueAllowed        = "allowed"         // a new name may be issued
	issueStored         = "stored"          // the name has a stored certificate: load it
	issueRefusedVerdict = "refused_verdict" // the name is not blocked (any more)
	issueRefusedName    = "refused_name"    // IP literal, invalid or non-canonical name
	issueRefusedRate    = "refused_rate"    // TLSPage.IssuePerMinute exhausted
	issueRefusedCap     = "refused_cap"     // TLSPage.MaxNamesPerHour reached
)

// TLSPageMetrics are the collectors of the HTTPS block page.
type TLSPageMetrics struct {
	// Pages counts blocked TLS connections handled in page mode by result:
	// served, no_certificate (fell back to the alert), not_eligible (no
	// name, an IP or an invalid name: alert), handshake_error, no_request,
	// challenge (an ACME validation handshake).
	Pages *prometheus.CounterVec
	// CertificateRequests counts on-demand issuance checks by result:
	// allowed, stored, refused_verdict, refused_name, refused_rate,
	// refused_cap.
	CertificateRequests *prometheus.CounterVec
}

// newTLSPageMetrics creates the page collectors and registers them into reg.
func newTLSPageMetrics(reg prometheus.Registerer) *TLSPageMetrics {
	m := &TLSPageMetrics{
		Pages: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: "tls_block_pages_total",
			Help: "Blocked TLS connections handled by the HTTPS block page, by result."}, []string{"result"}),
		CertificateRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: "tls_block_certificate_requests_total",
			Help: "On-demand certificate checks of the HTTPS block page, by result."}, []string{"result"}),
	}
	reg.MustRegister(m.Pages, m.CertificateRequests)
	return m
}

// tlsPage serves page-mode blocks for a Server: one certmagic cache and
// config, one ACME issuer, the issuance limits.
type tlsPage struct {
	conf     TLSPage // defaults applied
	dec      Decider
	log      *slog.Logger
	node     string
	status   int
	redirect string
	page     *BlockPage
	hello    time.Duration

	challenge *net.TCPAddr // the tls listener certmagic leaves TLS-ALPN-01 to

	cache     *certmagic.Cache
	magic     *certmagic.Config
	issuer    *certmagic.ACMEIssuer
	storage   certmagic.Storage
	tlsConf   *tls.Config // GetConfigForClient only
	challConf *tls.Config // certmagic's, for acme-tls/1 hellos

	results map[string]prometheus.Counter // Pages by result
	checks  map[string]prometheus.Counter // CertificateRequests by result

	issue *rate.Limiter    // new-name issuance: IssuePerMinute a minute, as a burst too
	now   func() time.Time // time source of issue and hour, replaced by tests

	mu    sync.Mutex // guards the fields below
	hour  int64      // clock hour (Unix hours) names counts
	names map[string]struct{}

	noCertLogged     time.Time // last Warn of logNoCert
	noCertSuppressed int       // failures since (that one included)
}

// withPageDefaults returns c with defaults applied.
func withPageDefaults(c TLSPage) TLSPage {
	if c.ACMEDirectory == "" {
		c.ACMEDirectory = certmagic.LetsEncryptProductionCA
	}
	if c.StorageDir == "" {
		c.StorageDir = DefaultTLSPageStorageDir
	}
	if c.IssuePerMinute == 0 {
		c.IssuePerMinute = defaultPageIssuePerMinute
	}
	if c.MaxNamesPerHour == 0 {
		c.MaxNamesPerHour = defaultPageMaxNamesPerHour
	}
	if c.Timeout == 0 {
		c.Timeout = defaultPageTimeout
	}
	return c
}

// validateTLSPage checks the TLSPage fields; bad names the field.
func validateTLSPage(c TLSPage, bad func(field, format string, args ...any) error) error {
	const f = "policy.tls_page."
	if c.ACMEDirectory != "" {
		if err := validHTTPSURL(c.ACMEDirectory); err != nil {
			return bad(f+"acme_directory", "%q: %v", c.ACMEDirectory, err)
		}
	}
	if c.IssuePerMinute < 0 {
		return bad(f+"issue_per_minute", "%d: must not be negative", c.IssuePerMinute)
	}
	if c.MaxNamesPerHour < 0 {
		return bad(f+"max_names_per_hour", "%d: must not be negative", c.MaxNamesPerHour)
	}
	if c.Timeout < 0 {
		return bad(f+"timeout", "%v: must not be negative", c.Timeout)
	}
	if c.CARootsFile != "" {
		if _, err := acme.LoadRoots(c.CARootsFile); err != nil {
			return bad(f+"ca_roots_file", "%v", err)
		}
	}
	return nil
}

// validHTTPSURL accepts an absolute https URL: ACME runs over HTTPS (RFC 8555).
func validHTTPSURL(s string) error {
	req, err := http.NewRequest(http.MethodGet, s, nil)
	if err != nil {
		return err
	}
	switch {
	case req.URL.Host == "":
		return errors.New("want an absolute https URL")
	case req.URL.Scheme == "https":
		return nil
	}
	return errors.New("want an https URL")
}

// newTLSPage builds the page server of cfg. challengeAddr is the bound
// address of a tls listener: certmagic's TLS-ALPN solver finds it taken and
// leaves the validation to that listener (see the file comment).
func newTLSPage(cfg Config, d Decider, m *TLSPageMetrics, log *slog.Logger, challengeAddr *net.TCPAddr) (*tlsPage, error) {
	c := withPageDefaults(cfg.Policy.TLSPage)
	p := &tlsPage{
		conf:      c,
		dec:       d,
		log:       log.With("component", "tls_page"),
		node:      cfg.Node,
		status:    cfg.Policy.HTTPBlockStatus,
		redirect:  cfg.Policy.RedirectURL,
		hello:     cfg.Timeouts.Hello,
		challenge: challengeAddr,
		issue:     rate.NewLimiter(rate.Limit(c.IssuePerMinute)/60, c.IssuePerMinute),
		names:     make(map[string]struct{}),
		now:       time.Now,
		results:   make(map[string]prometheus.Counter),
		checks:    make(map[string]prometheus.Counter),
	}
	if p.status == 0 {
		p.status = http.StatusForbidden
	}
	if p.hello <= 0 {
		p.hello = defaultHelloTimeout
	}
	bp, err := NewBlockPage(cfg.Policy)
	if err != nil {
		return nil, err
	}
	p.page = bp
	for _, r := range []string{pageServed, pageNoCert, pageNotEligible, pageHandshake, pageNoRequest, pageChallenge} {
		p.results[r] = m.Pages.WithLabelValues(r)
	}
	for _, r := range []string{issueAllowed, issueStored, issueRefusedVerdict, issueRefusedName, issueRefusedRate, issueRefusedCap} {
		p.checks[r] = m.CertificateRequests.WithLabelValues(r)
	}

	ac := acme.Config{
		Directory:     c.ACMEDirectory,
		Email:         c.Email,
		CARootsFile:   c.CARootsFile,
		Storage:       c.Storage,
		StorageDir:    c.StorageDir,
		OnDemand:      p.allowIssue,
		CacheCapacity: pageCacheCapacity,
		Logger:        zap.New(slogCore{l: p.log}),
	}
	if challengeAddr != nil {
		if !challengeAddr.IP.IsUnspecified() {
			ac.ChallengeHost = challengeAddr.IP.String()
		}
		ac.ChallengePort = challengeAddr.Port
	}
	am, err := acme.New(ac)
	if err != nil {
		return nil, fmt.Errorf("%w: policy.tls_page.%w", ErrInvalidConfig, err)
	}
	p.cache, p.magic, p.issuer, p.storage = am.Cache, am.Magic, am.Issuer, am.Magic.Storage
	p.challConf = p.magic.TLSConfig()
	p.tlsConf = &tls.Config{GetConfigForClient: p.configForClient}
	return p, nil
}

// stop ends certmagic's background maintenance.
func (p *tlsPage) stop() { p.cache.Stop() }

// allowIssue is certmagic's OnDemand DecisionFunc: it reports whether a
// certificate may be loaded or obtained for name (already normalised by
// certmagic: IDNA A-labels, lower case). Only a name the Decider blocks
// right now, with a registrable domain, qualifies; a name without a stored
// certificate also needs a token and room under the hourly cap.
func (p *tlsPage) allowIssue(ctx context.Context, name string) error {
	if _, err := netip.ParseAddr(name); err == nil || name == "" {
		p.checks[issueRefusedName].Inc()
		return fmt.Errorf("%w: %q is not a domain name", ErrIssueRefused, name)
	}
	d := p.dec.Decide(name)
	if d.Pass {
		p.checks[issueRefusedVerdict].Inc()
		return fmt.Errorf("%w: %s is not blocked", ErrIssueRefused, name)
	}
	// The Decider's normalised host must be the name itself, so a
	// certificate is only ever issued for the canonical form of a name.
	if d.Domain == "" || d.Host != name || d.Reason == "ip_access" || d.Reason == "invalid_host" {
		p.checks[issueRefusedName].Inc()
		return fmt.Errorf("%w: %q has no registrable domain", ErrIssueRefused, name)
	}
	if exists := p.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(p.issuer.IssuerKey(), name)); exists {
		p.checks[issueStored].Inc()
		return nil
	}
	if r := p.admit(name); r != issueAllowed {
		p.checks[r].Inc()
		return fmt.Errorf("%w: %s: %s", ErrIssueRefused, name, r)
	}
	p.checks[issueAllowed].Inc()
	return nil
}

// admit charges a new name against the hourly cap and the issuance rate
// and returns issueAllowed or the refusal.
func (p *tlsPage) admit(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if h := now.Unix() / 3600; h != p.hour {
		p.hour = h
		clear(p.names)
	}
	_, seen := p.names[name]
	if !seen && len(p.names) >= p.conf.MaxNamesPerHour {
		return issueRefusedCap
	}
	// After the cap, so a name the cap refuses costs no token.
	if !p.issue.AllowN(now, 1) {
		return issueRefusedRate
	}
	p.names[name] = struct{}{}
	return issueAllowed
}

// logNoCert logs why a blocked client got the alert instead of the page.
// A refusal by the issuance limits is expected under a flood of new names
// (and counted in TLSPageMetrics), so it is Debug; other failures (the CA
// unreachable, an order failing) are Warn, at most one line per
// noCertLogInterval, with the number of failures in between.
func (p *tlsPage) logNoCert(domain string, err error) {
	if errors.Is(err, ErrIssueRefused) {
		if p.log.Enabled(context.Background(), slog.LevelDebug) {
			p.log.Debug("block page certificate refused, sent the alert instead", "domain", domain, "error", err)
		}
		return
	}
	p.mu.Lock()
	now := p.now()
	p.noCertSuppressed++
	if !p.noCertLogged.IsZero() && now.Sub(p.noCertLogged) < noCertLogInterval {
		p.mu.Unlock()
		return
	}
	n := p.noCertSuppressed
	p.noCertLogged, p.noCertSuppressed = now, 0
	p.mu.Unlock()
	p.log.Warn("no block page certificate, sent the alert instead", "domain", domain, "failures", n, "error", err)
}

// pageConn is the connection the page's crypto/tls server runs on: the
// sni.Conn (which replays the ClientHello first) plus the per-connection
// state GetConfigForClient reaches through ClientHelloInfo.Conn.
type pageConn struct {
	*sni.Conn
	raw *net.TCPConn
	ctx context.Context // cancelled at the drain deadline
	rv  uint16          // record version of the hello, for the alert

	// Set during the handshake, in the handshake's goroutine.
	muted     bool  // the alert was sent: drop crypto/tls's writes
	certErr   error // why no certificate could be had
	challenge bool  // an acme-tls/1 validation hello
}

var errMuted = errors.New("connection muted after access_denied alert")

// Write sends b unless the connection was muted.
func (pc *pageConn) Write(b []byte) (int, error) {
	if pc.muted {
		return 0, errMuted
	}
	return pc.Conn.Write(b)
}

// configForClient picks the certificate of a page-mode handshake. A
// validation hello gets certmagic's config (challenge certificate, ALPN
// acme-tls/1); any other gets the name's certificate, obtained if need be
// within TLSPage.Timeout, and ALPN http/1.1 only. Without a certificate it
// sends access_denied itself and mutes the connection, so the client sees
// the same refusal as in alert mode rather than an internal_error.
func (p *tlsPage) configForClient(hi *tls.ClientHelloInfo) (*tls.Config, error) {
	pc := hi.Conn.(*pageConn)
	if len(hi.SupportedProtos) == 1 && hi.SupportedProtos[0] == acmeTLS1 {
		pc.challenge = true
		return p.challConf, nil
	}
	ctx, cancel := context.WithTimeout(pc.ctx, p.conf.Timeout)
	cert, err := p.magic.GetCertificateWithContext(ctx, hi)
	cancel()
	if err == nil && (cert == nil || len(cert.Certificate) == 0) {
		err = errors.New("no certificate")
	}
	if err != nil {
		pc.certErr = err
		p.results[pageNoCert].Inc() // before the client can see the alert
		writeAccessDenied(pc.raw, pc.rv)
		pc.muted = true
		return nil, fmt.Errorf("getting block page certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// pageEligible reports whether a blocked hello can get a page: it needs a
// server name with a registrable domain. Certificates are never requested
// for IP literals, missing or invalid names.
func pageEligible(serverName string, d *Decision) bool {
	if serverName == "" || d.Domain == "" || d.Host == "" || d.Reason == "ip_access" || d.Reason == "invalid_host" {
		return false
	}
	_, err := netip.ParseAddr(d.Host)
	return err != nil
}

// serve answers a blocked connection with the block page over TLS, or
// with the access_denied alert when that cannot be done. sc holds the
// hello the caller read; serve does not release it, and closes c.
func (p *tlsPage) serve(ctx context.Context, c *net.TCPConn, sc *sni.Conn, rv uint16, d *Decision) {
	pc := &pageConn{Conn: sc, raw: c, ctx: ctx, rv: rv}
	// The handshake may wait for an ACME order; the deadline also bounds
	// a client that stalls mid-handshake.
	c.SetDeadline(time.Now().Add(p.conf.Timeout + p.hello))
	tc := tls.Server(pc, p.tlsConf)
	err := tc.HandshakeContext(ctx)
	switch {
	case pc.certErr != nil:
		p.logNoCert(d.Domain, pc.certErr)
		lingerAfterAlert(c)
		return
	case err != nil:
		p.results[pageHandshake].Inc()
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.Debug("block page handshake failed", "domain", d.Domain, "error", err)
		}
		c.Close()
		return
	case pc.challenge:
		// The validation is the handshake itself (RFC 8737).
		p.results[pageChallenge].Inc()
		tc.Close()
		return
	}

	now := time.Now()
	req := BlockRequest{
		Host: d.Host, Decision: *d, Node: p.node, Status: p.status,
		RedirectURL: p.redirect, Page: p.page, Time: now,
		// Self-describing, as an http block's (blockid.go).
		RequestID: string(appendBlockID(make([]byte, 0, blockIDLen), p.node, d, d.Host, now)),
	}
	c.SetDeadline(time.Now().Add(p.hello))
	br := bufio.NewReaderSize(io.LimitReader(tc, pageMaxRequestHead), 4<<10)
	hr, err := http.ReadRequest(br)
	switch {
	case err == nil:
		req.Accept = hr.Header.Get("Accept")
		req.HeadOnly = hr.Method == http.MethodHead
	case errors.Is(err, io.EOF) || isTimeout(err):
		// Nothing asked, nothing to answer.
		p.results[pageNoRequest].Inc()
		c.Close()
		return
	}
	// A request that does not parse still gets the page: it is a block
	// either way, and the page is what the visitor needs to see.
	if err := WriteBlock(tc, req); err != nil {
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.Debug("writing block page", "domain", d.Domain, "error", err)
		}
		c.Close()
		return
	}
	p.results[pageServed].Inc()
	tc.CloseWrite() // close_notify
	lingerClose(c)
	c.Close()
}

// slogCore is a zapcore.Core writing to a slog.Logger, so certmagic's logs
// reach the gateway's logger.
type slogCore struct {
	l      *slog.Logger
	fields []zapcore.Field
}

var _ zapcore.Core = slogCore{}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// Enabled reports whether l is logged.
func (c slogCore) Enabled(l zapcore.Level) bool {
	return c.l.Enabled(context.Background(), slogLevel(l))
}

// With returns a core that adds fs to every entry.
func (c slogCore) With(fs []zapcore.Field) zapcore.Core {
	return slogCore{l: c.l, fields: append(slices.Clip(c.fields), fs...)}
}

// Check adds c to ce when e is enabled.
func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write logs e with its fields, sorted by key.
func (c slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", e.LoggerName))
	}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	c.l.LogAttrs(context.Background(), slogLevel(e.Level), e.Message, attrs...)
	return nil
}

// Sync does nothing: slog handlers write synchronously.
func (c slogCore) Sync() error { return nil }
