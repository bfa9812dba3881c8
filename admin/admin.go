// Package admin is icpgate's control plane over HTTP: Prometheus metrics,
// health and readiness probes, and the decision API that support staff and
// `icpgate check` use to answer "why is this site blocked?".
//
// It imports registry (never proxy; a dependency test enforces this) and is
// wired by cmd/icpgate:
//
//	srv := admin.New(admin.Config{Address: "127.0.0.1:9090"}, reg, promReg, ready, log)
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Shutdown(ctx)
//
// Endpoints (GET and HEAD only):
//
//	/metrics                 Prometheus exposition of the gatherer
//	/healthz                 200 "ok" while the process serves HTTP
//	/readyz                  200 once the registry has loaded, else 503 + JSON detail
//	/v1/explain?host=NAME    the decision for NAME with its trace, as JSON
package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

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
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = 5 * time.Second
	}
	if ready == nil {
		ready = func() (bool, string) { return true, "" }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, reg: reg, gatherer: gatherer, ready: ready, log: log.With("component", "admin")}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(gatherer))
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/v1/explain", s.explain)
	s.handler = onlyGet(mux)
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
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
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
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
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

// errorBody is the JSON body of every admin error response.
type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, ok := q["host"]; !ok {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "missing query parameter host"})
		return
	}
	host := q.Get("host")
	d := s.reg.Decide(host)
	writeJSON(w, http.StatusOK, Explain(&d))
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
// /v1/explain. The first six fields are a fixed interface (DESIGN.md).
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

// reusePort sets SO_REUSEPORT on the admin socket before it binds.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
