// Package admin is icpgate's control plane over HTTP: Prometheus metrics,
// health and readiness probes, the admin API that support staff, the
// console and the `icpgate allow|deny|explain|audit|report` commands use
// (docs/admin-api.md is its contract), and the support console.
//
// It imports registry (never proxy; a dependency test enforces this) and is
// wired by cmd/icpgate:
//
//	srv := admin.New(admin.Config{
//		Address: "127.0.0.1:9090",
//		Backend: backend,              // adminstore.OpenBolt or OpenPostgres
//		Tokens:  tokens,               // adminstore.OpenTokenFile or OpenPostgres
//		Apply:   pushOverridesIntoReg, // file mode; nil with PostgreSQL
//		Report:  unfiledReport,
//	}, reg, promReg, ready, log)
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Shutdown(ctx)
//
// Endpoints:
//
//	/metrics                 Prometheus exposition of the gatherer (open, GET/HEAD)
//	/healthz                 200 "ok" while the process serves HTTP (open, GET/HEAD)
//	/readyz                  200 once the registry has loaded, else 503 + JSON detail (open, GET/HEAD)
//	/v1/explain?host=NAME    the decision for NAME with its trace (viewer)
//	/v1/records?filing_number=N|subject=S  registry records by filing number or subject (viewer)
//	/v1/requests/{id}[?host=H]  what a block page's request ID says: time, node, reason, host (viewer)
//	/v1/session              console sign-in (POST), who am I (GET), sign-out (DELETE)
//	/v1/overrides[/{id}]     the support whitelist and ops denylist (viewer reads; support/admin write)
//	/v1/overrides/bulk       many creates at once (admin)
//	/v1/audit                the audit log (viewer)
//	/v1/report/unfiled       the unfiled-site report, JSON or CSV (viewer)
//	/, /console/             the support console
//
// Every /v1/ request is authenticated (a Bearer token or a console session
// cookie), checked against its role, and every mutation attempt, whatever
// its outcome, lands in the audit log.
package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/metrics"
	"github.com/icpgate/icpgate/registry"
)

// ErrStarted is returned by Start when the server is already running.
var ErrStarted = errors.New("admin server already started")

// Config configures the admin server.
type Config struct {
	// Address is the host:port to listen on. Default "127.0.0.1:9090";
	// port 0 picks a free port.
	Address string
	// ReadHeaderTimeout bounds reading a request head. Default 5 s.
	ReadHeaderTimeout time.Duration
	// TLSConfig, when set, serves HTTPS with it. Default nil: plain HTTP.
	TLSConfig *tls.Config

	// Backend stores overrides and the audit log. Nil: the override and
	// audit endpoints answer 503 unavailable (explain and reports work).
	Backend Backend
	// Tokens authenticates API tokens. Nil: no one can authenticate, so
	// every /v1/ request answers 401.
	Tokens TokenStore
	// Apply runs after each successful override mutation; in file mode it
	// pushes the stored overrides into the registry. An error is logged and
	// the request still succeeds (the change is stored). Nil: nothing to do
	// (PostgreSQL mode: gateways pick changes up by NOTIFY).
	Apply func(context.Context) error
	// Report answers the unfiled-site report. Nil: /v1/report/ answers 404.
	Report Reporter
	// Hosts are the DNS names accepted in Host on /v1/ and the console
	// besides "localhost" (admin.hosts plus admin.tls_names); IP literals
	// are always accepted. Default none.
	Hosts []string
	// DefaultAllowTTL is an allow's lifetime when the request gives none.
	// Default 45 days.
	DefaultAllowTTL time.Duration
	// MaxAllowTTL caps an allow's expiry, measured from now. Default 90 days.
	MaxAllowTTL time.Duration
	// MaxDenyTTL caps a deny's expiry, measured from now. Default 365 days.
	MaxDenyTTL time.Duration
	// MutationsPerMinute limits mutations per token (burst 20, or the rate
	// when lower). Default 60.
	MutationsPerMinute int
	// FailedLoginsPerMinute limits failed authentications per client IP
	// (IPv6 per /64); over it every attempt from there gets 429 until the
	// bucket refills. Default 10 (also the burst).
	FailedLoginsPerMinute int
	// Node is this gateway's node name (node), which request IDs of its
	// blocks carry a tag of. Default "": no ID is told to be this node's.
	Node string
	// Docs, when set, is served read-only at /docs/ (the release's
	// documentation, *.md rendered to HTML), so alert runbook links work
	// without the public repository. Default nil: no /docs/.
	Docs fs.FS
	// TimeZone is the IANA zone the console shows times in, with their
	// offset (policy.time_zone). Default "Asia/Shanghai".
	TimeZone string
	// Now is the clock. Default time.Now; tests inject one.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultAllowTTL              = 45 * 24 * time.Hour
	DefaultMaxAllowTTL           = 90 * 24 * time.Hour
	DefaultMaxDenyTTL            = 365 * 24 * time.Hour
	DefaultMutationsPerMinute    = 60
	DefaultFailedLoginsPerMinute = 10
	DefaultTimeZone              = "Asia/Shanghai"
	// mutationBurst is the mutation limiter's burst.
	mutationBurst = 20
)

// withDefaults returns cfg with every zero (or negative) field set to its
// default, in one place.
func (cfg Config) withDefaults() Config {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.TimeZone == "" {
		cfg.TimeZone = DefaultTimeZone
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 5 * time.Second
	}
	if cfg.DefaultAllowTTL <= 0 {
		cfg.DefaultAllowTTL = DefaultAllowTTL
	}
	if cfg.MaxAllowTTL <= 0 {
		cfg.MaxAllowTTL = DefaultMaxAllowTTL
	}
	if cfg.MaxDenyTTL <= 0 {
		cfg.MaxDenyTTL = DefaultMaxDenyTTL
	}
	if cfg.MutationsPerMinute <= 0 {
		cfg.MutationsPerMinute = DefaultMutationsPerMinute
	}
	if cfg.FailedLoginsPerMinute <= 0 {
		cfg.FailedLoginsPerMinute = DefaultFailedLoginsPerMinute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// DefaultAddress is the admin listener's default address: loopback only.
const DefaultAddress = "127.0.0.1:9090"

// Server is the admin HTTP server. Create it with New.
type Server struct {
	cfg      Config
	reg      *registry.Registry
	gatherer prometheus.Gatherer
	ready    func() (bool, string)
	log      *slog.Logger
	handler  http.Handler

	hosts    map[string]bool // Config.Hosts, lower case, no trailing dot
	sessions *sessionStore
	failures *limiterSet[string]   // failed authentications per client IP (/64)
	mutators *limiterSet[[32]byte] // mutations per token hash
	applyMu  sync.Mutex            // serialises Config.Apply calls
	searches chan struct{}         // a token per running record search (api_search.go)

	mu   sync.Mutex // guards ln and srv
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when the serving goroutine returns
}

// New returns an admin server answering decisions from reg, metrics from
// gatherer and readiness from ready (which returns whether the gateway is
// ready and, when not, why). A nil ready means always ready; a nil log
// discards log lines.
func New(cfg Config, reg *registry.Registry, gatherer prometheus.Gatherer, ready func() (bool, string), log *slog.Logger) *Server {
	cfg = cfg.withDefaults()
	if ready == nil {
		ready = func() (bool, string) { return true, "" }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, reg: reg, gatherer: gatherer, ready: ready, log: log.With("component", "admin")}
	s.initAPI()
	open := http.NewServeMux()
	open.Handle("/metrics", metrics.Handler(gatherer))
	open.HandleFunc("/healthz", s.healthz)
	open.HandleFunc("/readyz", s.readyz)
	mux := http.NewServeMux()
	mux.Handle("/metrics", onlyGet(open))
	mux.Handle("/healthz", onlyGet(open))
	mux.Handle("/readyz", onlyGet(open))
	if cfg.Docs != nil {
		mux.Handle("/docs/", onlyGet(s.checkHost(&docsServer{fsys: cfg.Docs})))
	}
	s.routeAPI(mux)
	s.handler = mux
	return s
}

// Handler returns the server's HTTP handler, for mounting elsewhere or
// testing without a listener.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds the listener and serves in the background. Bind errors are
// returned; later serve errors are logged.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return ErrStarted
	}
	// SO_REUSEPORT like the data-plane listeners, so a new process can
	// start beside the old one during a zero-downtime upgrade.
	lc := net.ListenConfig{Control: reusePort}
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("admin: listening on %s: %w", s.cfg.Address, err)
	}
	if s.cfg.TLSConfig != nil {
		ln = tls.NewListener(ln, s.cfg.TLSConfig)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// Bodies are small (at most 4 MiB); a client trickling one is cut.
		ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.done = make(chan struct{})
	go s.serveAdmin(s.srv, ln, s.done)
	s.log.Info("admin listening", "address", ln.Addr().String())
	return nil
}

// serveAdmin runs the HTTP server until Shutdown.
func (s *Server) serveAdmin(srv *http.Server, ln net.Listener, done chan struct{}) {
	defer close(done)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("admin server stopped", "error", err)
	}
}

// Addr returns the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting, waits for in-flight requests until ctx is done,
// then closes what is left. It is safe to call without Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
	}
	<-done
	if err != nil {
		return fmt.Errorf("admin: shutting down: %w", err)
	}
	return nil
}

// onlyGet refuses every method but GET and HEAD with 405.
func onlyGet(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, errMethod("GET, HEAD"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte("ok\n"))
}

// readyBody is the JSON body of /readyz.
type readyBody struct {
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ok, detail := s.ready()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, readyBody{Ready: ok, Detail: detail})
}

// writeJSON writes v as indented JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Every body here is built from plain fields; this cannot happen.
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// Explanation is a decision in the form of `icpgate check --json` and
// /v1/explain. The first six fields are a fixed interface (docs/admin-api.md).
type Explanation struct {
	// Host is the input exactly as given.
	Host string `json:"host"`
	// Normalized is the normalised host; "" when invalid or absent.
	Normalized string `json:"normalized"`
	// Domain is the registrable domain; "" for IPs and invalid names.
	Domain string `json:"domain"`
	// Verdict is "pass" or "block".
	Verdict string `json:"verdict"`
	// Reason is the reason code.
	Reason string `json:"reason"`
	// FilingNumber is the matched record's website filing number, or "".
	FilingNumber string `json:"filing_number"`
	// Kind is "name", "ip" or "empty"; "" when the input was invalid.
	Kind string `json:"kind,omitempty"`
	// Record is the registry record of Domain, when there is one.
	Record *RecordInfo `json:"record,omitempty"`
	// Override is the override that decided, if any.
	Override *OverrideInfo `json:"override,omitempty"`
	// IgnoredOverride is an allow that matched a blacklisted domain.
	IgnoredOverride *OverrideInfo `json:"ignored_override,omitempty"`
	// RejectedRow is a row of the filing database for Domain that failed
	// validation and so gives it no record.
	RejectedRow *RejectedRowInfo `json:"rejected_row,omitempty"`
	// Error says why the input is invalid.
	Error string `json:"error,omitempty"`
	// ValidUntil is when the decision changes by itself (an override
	// expiring, a rectification deadline), if ever.
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	// Trace is the human-readable explanation, one step per line.
	Trace []string `json:"trace"`
}

// RecordInfo is a registry record in an Explanation.
type RecordInfo struct {
	Domain          string     `json:"domain"`
	State           string     `json:"state"`
	FilingNumber    string     `json:"filing_number,omitempty"`
	Subject         string     `json:"subject,omitempty"`
	SubjectType     string     `json:"subject_type,omitempty"`
	Province        string     `json:"province,omitempty"`
	Upstream        string     `json:"upstream,omitempty"`
	RectifyDeadline *time.Time `json:"rectify_deadline,omitempty"`
	UpdatedAt       *time.Time `json:"updated_at,omitempty"`
}

// RejectedRowInfo is a rejected database row in an Explanation.
type RejectedRowInfo struct {
	// Domain is the row's domain as the database has it.
	Domain string `json:"domain"`
	// Field is the column at fault, "" when no single one is.
	Field string `json:"field,omitempty"`
	// Value is that column's value.
	Value string `json:"value,omitempty"`
	// Error says what is wrong, naming the field and value.
	Error string `json:"error"`
}

// OverrideInfo is an override in an Explanation.
type OverrideInfo struct {
	ID      string     `json:"id,omitempty"`
	Host    string     `json:"host"`
	Scope   string     `json:"scope"`
	Action  string     `json:"action"`
	Expires *time.Time `json:"expires,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	Ticket  string     `json:"ticket,omitempty"`
	Who     string     `json:"who,omitempty"`
	Created *time.Time `json:"created,omitempty"`
}

// Explain converts a decision into its JSON form.
func Explain(d *registry.Decision) Explanation {
	e := Explanation{
		Host:            d.Input,
		Normalized:      d.Host,
		Domain:          d.Domain,
		Verdict:         d.Verdict.String(),
		Reason:          string(d.Reason),
		FilingNumber:    d.FilingNumber(),
		Record:          recordInfo(d.Record),
		Override:        overrideInfo(d.Override),
		IgnoredOverride: overrideInfo(d.Ignored),
		RejectedRow:     rejectedInfo(d.Rejected),
		ValidUntil:      timePtr(d.ValidUntil),
		Trace:           strings.Split(strings.TrimRight(d.Explain(), "\n"), "\n"),
	}
	if d.Reason != registry.ReasonInvalidHost {
		switch d.Kind {
		case registry.HostName:
			e.Kind = "name"
		case registry.HostIP:
			e.Kind = "ip"
		case registry.HostEmpty:
			e.Kind = "empty"
		}
	}
	if d.Err != nil {
		e.Error = d.Err.Error()
	}
	return e
}

func rejectedInfo(r *registry.RejectedRow) *RejectedRowInfo {
	if r == nil {
		return nil
	}
	return &RejectedRowInfo{Domain: r.Domain, Field: r.Field, Value: r.Value, Error: r.Reason}
}

func recordInfo(r *registry.Record) *RecordInfo {
	if r == nil {
		return nil
	}
	return &RecordInfo{
		Domain:          r.Domain,
		State:           r.State.String(),
		FilingNumber:    r.FilingNumber,
		Subject:         r.Subject,
		SubjectType:     r.SubjectType,
		Province:        r.Province,
		Upstream:        r.Upstream,
		RectifyDeadline: timePtr(r.RectifyDeadline),
		UpdatedAt:       timePtr(r.UpdatedAt),
	}
}

func overrideInfo(o *registry.Override) *OverrideInfo {
	if o == nil {
		return nil
	}
	return &OverrideInfo{
		ID:      o.ID,
		Host:    o.Host,
		Scope:   o.Scope.String(),
		Action:  o.Action.String(),
		Expires: timePtr(o.Expires),
		Reason:  o.Reason,
		Ticket:  o.Ticket,
		Who:     o.Who,
		Created: timePtr(o.Created),
	}
}

// timePtr returns nil for the zero time, so JSON omits it.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
