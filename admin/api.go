package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/icpgate/icpgate/registry"
)

// Request body caps (docs/admin-api.md): 1 MiB, 4 MiB for bulk, and a
// small one for the sign-in body.
const (
	maxBody       = 1 << 20
	maxBulkBody   = 4 << 20
	maxLoginBody  = 4 << 10
	maxBulkItems  = 1000
	maxListLimit  = 1000
	maxReportRows = 10000
	// auditInputMax caps the raw input kept in an audit entry.
	auditInputMax = 8 << 10
	// storeTimeout bounds a store call made after the client has gone
	// (an audit entry, Apply), so a stuck store cannot pin goroutines.
	storeTimeout = 30 * time.Second
)

// apiError is an error answer of the admin API: its status and JSON body
// (docs/admin-api.md, "Errors").
type apiError struct {
	Status   int    `json:"-"`
	Code     string `json:"error"`
	Message  string `json:"message"`
	Field    string `json:"field,omitempty"`
	NeedRole string `json:"need_role,omitempty"`
	State    string `json:"state,omitempty"`
	// Problem is a finer code under Code for the console to say in its
	// own words ("unsafe_char", "too_long"; docs/admin-api.md), with Args
	// filling its placeholders. Message stays the English for everyone
	// else.
	Problem string            `json:"problem,omitempty"`
	Args    map[string]string `json:"args,omitempty"`

	retryAfter time.Duration // 429: Retry-After
	allow      string        // 405: Allow
}

func (e *apiError) Error() string { return e.Message }

// because sets e's Problem and its Args from key, value pairs, and
// returns e.
func (e *apiError) because(problem string, kv ...string) *apiError {
	e.Problem = problem
	for i := 0; i+1 < len(kv); i += 2 {
		if e.Args == nil {
			e.Args = make(map[string]string, len(kv)/2)
		}
		e.Args[kv[i]] = kv[i+1]
	}
	return e
}

// invalid is a 400 naming the bad field.
func invalid(field, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "invalid", Field: field, Message: fmt.Sprintf(format, args...)}
}

func unauthenticated(msg string) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: msg}
}

func forbidden(need Role, have Role) *apiError {
	return &apiError{Status: http.StatusForbidden, Code: "forbidden", NeedRole: need.String(),
		Message: fmt.Sprintf("this needs the %s role; your token's role is %s", need, have)}
}

func csrfError(msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Code: "csrf", Message: msg}
}

func notFound(msg string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "not_found", Message: msg}
}

func rateLimited(what string, wait time.Duration) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Code: "rate_limited", retryAfter: wait,
		Message: fmt.Sprintf("too many %s; retry in %d s", what, retryAfter(wait))}
}

func unavailable(msg string) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msg}
}

func errMethod(allow string) *apiError {
	return &apiError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", allow: allow,
		Message: "method not allowed; allowed: " + allow}
}

// writeError writes e as the JSON error body with its status and headers.
func writeError(w http.ResponseWriter, e *apiError) {
	switch e.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="icpgate"`)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter(e.retryAfter)))
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", e.allow)
	}
	writeJSON(w, e.Status, e)
}

// endpoint is one method of one API resource.
type endpoint struct {
	// role is the least role that may call it; 0: no authentication
	// (sign-in handles its own).
	role Role
	// action names a mutation in the audit log ("override.create"); ""
	// for reads. Every attempt at a mutation is audited, whatever its
	// outcome.
	action string
	// maxBody caps the request body of a mutation.
	maxBody int64
	serve   func(*call)
}

// resource maps methods to endpoints; HEAD follows GET.
type resource map[string]*endpoint

// call is one API request on its way through the checks.
type call struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	ep  *endpoint
	now time.Time
	// tok is the authenticated token; sess is set when it came by cookie.
	tok    Token
	authed bool
	sess   *session
	// body is a mutation's request body, read whole (within maxBody).
	body []byte
	// action, target and normalized go into the audit entry; action
	// defaults to the endpoint's (a bulk item is an "override.create").
	action, target, normalized string
}

// initAPI sets up the API's state.
func (s *Server) initAPI() {
	s.hosts = make(map[string]bool, len(s.cfg.Hosts))
	for _, h := range s.cfg.Hosts {
		s.hosts[strings.TrimSuffix(strings.ToLower(h), ".")] = true
	}
	s.sessions = newSessionStore()
	s.searches = make(chan struct{}, maxSearches)
	s.failures = newLimiterSet[string](limiterSetSize, s.cfg.FailedLoginsPerMinute, s.cfg.FailedLoginsPerMinute)
	s.mutators = newLimiterSet[[32]byte](limiterSetSize, s.cfg.MutationsPerMinute, min(mutationBurst, s.cfg.MutationsPerMinute))
}

// routeAPI mounts /v1/ and the console on mux.
func (s *Server) routeAPI(mux *http.ServeMux) {
	mutate := func(role Role, action string, limit int64, f func(*call)) *endpoint {
		return &endpoint{role: role, action: action, maxBody: limit, serve: f}
	}
	read := func(f func(*call)) *endpoint { return &endpoint{role: RoleViewer, serve: f} }
	routes := map[string]resource{
		"/v1/explain":       {"GET": read(s.explain)},
		"/v1/records":       {"GET": read(s.searchRecords)},
		"/v1/requests/{id}": {"GET": read(s.explainRequest)},
		"/v1/session": {
			"GET":    read(s.whoami),
			"POST":   {action: "login", maxBody: maxLoginBody, serve: s.login},
			"DELETE": mutate(RoleViewer, "logout", maxBody, s.logout),
		},
		"/v1/overrides": {
			"GET": read(s.listOverrides),
			// support is the least role of a create; a deny needs admin,
			// checked once the body says which it is.
			"POST": mutate(RoleSupport, "override.create", maxBody, s.createOverride),
		},
		"/v1/overrides/bulk": {"POST": mutate(RoleAdmin, "override.bulk", maxBulkBody, s.bulkOverrides)},
		"/v1/overrides/{id}": {
			"GET":    read(s.getOverride),
			"PATCH":  mutate(RoleSupport, "override.update", maxBody, s.updateOverride),
			"DELETE": mutate(RoleSupport, "override.delete", maxBody, s.deleteOverride),
		},
		"/v1/audit":          {"GET": read(s.listAudit)},
		"/v1/report/unfiled": {"GET": read(s.reportUnfiled)},
	}
	for path, res := range routes {
		mux.Handle(path, s.dispatch(res))
	}
	mux.Handle("/v1/", s.checkHost(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("no such endpoint: "+r.URL.Path))
	})))
	console := s.checkHost(onlyGet(consoleHandler()))
	mux.Handle("/{$}", console)
	mux.Handle("/console/", console)
}

// dispatch picks the endpoint of the request's method and runs it
// through authentication, CSRF, role and rate-limit checks.
func (s *Server) dispatch(res resource) http.Handler {
	methods := make([]string, 0, len(res)+1)
	for m := range res {
		methods = append(methods, m)
		if m == http.MethodGet {
			methods = append(methods, http.MethodHead)
		}
	}
	slices.Sort(methods)
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		if m == http.MethodHead {
			m = http.MethodGet
		}
		ep, ok := res[m]
		if !ok {
			writeError(w, errMethod(allow))
			return
		}
		c := &call{s: s, w: w, r: r, ep: ep, now: s.cfg.Now()}
		if e := s.hostError(r); e != nil {
			c.deny(e)
			return
		}
		s.serveEndpoint(c)
	})
}

// serveEndpoint runs the checks every endpoint shares, in this order
// (after the Host check of dispatch, 421): authentication (401, 429 for a client over its failed-authentication
// budget), CSRF for cookie mutations (403), role (403), the per-token
// mutation rate (429), the body cap (413); then the endpoint.
func (s *Server) serveEndpoint(c *call) {
	ep := c.ep
	if ep.role != 0 {
		if e := s.authenticate(c); e != nil {
			c.deny(e)
			return
		}
		if ep.action != "" && c.sess != nil {
			if e := checkCSRF(c.r, c.sess); e != nil {
				c.deny(e)
				return
			}
		}
		if c.tok.Role < ep.role {
			c.deny(forbidden(ep.role, c.tok.Role))
			return
		}
		if ep.action != "" && ep.action != "logout" {
			if ok, wait := s.mutators.take(c.tok.Hash, c.now); !ok {
				c.deny(rateLimited("changes with this token", wait))
				return
			}
		}
	}
	if ep.action != "" {
		body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, ep.maxBody))
		c.body = body
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				c.reject(&apiError{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
					Message: fmt.Sprintf("request body larger than %d bytes", ep.maxBody)})
				return
			}
			c.reject(invalid("", "reading request body: %v", err))
			return
		}
	}
	ep.serve(c)
}

// deny answers a request refused before it was looked at (authentication,
// role, CSRF, rate limit) and audits it when it was a mutation attempt.
func (c *call) deny(e *apiError) {
	if c.ep.action != "" {
		if c.body == nil {
			// The raw input, as far as the audit log keeps it; the rest
			// of the body is never read.
			c.body, _ = io.ReadAll(io.LimitReader(c.r.Body, auditInputMax+1))
		}
		c.audit("denied", e.Message)
	}
	writeError(c.w, e)
}

// reject answers a mutation refused on its content (400, 404, 409, 412,
// 413, 422, 428) and audits it. The store being down (503) is not audited:
// there is nowhere to write it; it is logged.
func (c *call) reject(e *apiError) {
	if e.Status == http.StatusServiceUnavailable {
		writeError(c.w, e)
		return
	}
	c.audit("rejected", e.Message)
	writeError(c.w, e)
}

// entry returns the audit entry of this call with an outcome and detail.
func (c *call) entry(outcome, detail string) AuditEntry {
	e := AuditEntry{
		At:         c.now.UTC(),
		Remote:     c.r.RemoteAddr,
		Action:     cmp.Or(c.action, c.ep.action),
		Target:     redact(c.target),
		Normalized: c.normalized,
		Outcome:    outcome,
		Detail:     redact(detail),
	}
	if c.authed {
		e.Who, e.Role = c.tok.Name, c.tok.Role.String()
	}
	if c.ep.action != "login" { // a sign-in body is the token itself
		var note string
		e.Input, note = auditInput(c.body)
		if note != "" {
			e.Detail = strings.TrimPrefix(e.Detail+"; "+note, "; ")
		}
	}
	return e
}

// audit appends an entry that goes with no stored change.
func (c *call) audit(outcome, detail string) {
	c.s.appendAudit(c.r, c.entry(outcome, detail))
}

// appendAudit writes e, logging when it cannot: the request's answer does
// not depend on it.
func (s *Server) appendAudit(r *http.Request, e AuditEntry) {
	if s.cfg.Backend == nil {
		s.log.Warn("audit entry not stored: no backend", "action", e.Action, "outcome", e.Outcome, "who", e.Who, "remote", e.Remote)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	if err := s.cfg.Backend.AppendAudit(ctx, e); err != nil {
		s.log.Error("storing audit entry", "action", e.Action, "outcome", e.Outcome, "who", e.Who, "remote", e.Remote, "error", err)
	}
}

// tokenPattern matches a token secret wherever it was pasted.
var tokenPattern = regexp.MustCompile(`icpg_[A-Za-z0-9_-]{43}`)

// redact blanks out anything shaped like a token secret.
func redact(s string) string {
	if !strings.Contains(s, tokenPrefix) {
		return s
	}
	return tokenPattern.ReplaceAllString(s, tokenPrefix+"[redacted]")
}

// auditInput returns a request body as the audit log keeps it: the JSON
// itself (compacted) when it is valid and at most auditInputMax bytes,
// else a JSON string of its start, with a note saying so. Token secrets
// are blanked out either way.
func auditInput(body []byte) (json.RawMessage, string) {
	if len(body) == 0 {
		return nil, ""
	}
	if bytes.Contains(body, []byte(tokenPrefix)) {
		body = tokenPattern.ReplaceAll(body, []byte(tokenPrefix+"[redacted]"))
	}
	if len(body) <= auditInputMax && json.Valid(body) {
		var b bytes.Buffer
		if json.Compact(&b, body) == nil {
			return b.Bytes(), ""
		}
	}
	note := "input is not JSON"
	if len(body) > auditInputMax {
		note = fmt.Sprintf("input cut to its first %d bytes", auditInputMax)
		body = body[:auditInputMax]
		for len(body) > 0 && !utf8.Valid(body) {
			body = body[:len(body)-1] // a character cut in two
		}
	}
	s, _ := json.Marshal(strings.ToValidUTF8(string(body), "\uFFFD"))
	return s, note
}

// apply runs Config.Apply after a stored change. Calls are serialised so
// two changes cannot swap their views of the overrides in the wrong
// order. A failure is logged: the change is stored and the next Apply
// (or a restart) carries it.
func (s *Server) apply(r *http.Request) {
	if s.cfg.Apply == nil {
		return
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	if err := s.cfg.Apply(ctx); err != nil {
		s.log.Error("applying overrides to the registry (the change is stored)", "error", err)
	}
}

// storeError maps a Backend error to the API's answer.
func (s *Server) storeError(err error, what string) *apiError {
	switch {
	case errors.Is(err, ErrNotFound):
		return notFound("no such override")
	case errors.Is(err, registry.ErrInvalidOverride):
		// Validation here comes first and is stricter; kept as a 400 so a
		// store's own check can never surface as "unavailable".
		return invalid("", "%v", err)
	case errors.Is(err, ErrConflict):
		return &apiError{Status: http.StatusPreconditionFailed, Code: "conflict",
			Message: "the override was changed by someone else; read it again"}
	}
	s.log.Error("admin store", "op", what, "error", err)
	return unavailable("the admin store is unavailable: " + what + " failed (the data plane keeps serving)")
}

// needBackend returns 503 when no Backend is configured.
func (s *Server) needBackend() *apiError {
	if s.cfg.Backend == nil {
		return unavailable("no admin store is configured on this gateway")
	}
	return nil
}

// explain answers GET /v1/explain?host=NAME.
func (s *Server) explain(c *call) {
	q := c.r.URL.Query()
	if e := onlyParams(q, "host"); e != nil {
		writeError(c.w, e)
		return
	}
	if _, ok := q["host"]; !ok {
		writeError(c.w, invalid("host", "missing query parameter host").because("required"))
		return
	}
	d := s.reg.Decide(q.Get("host"))
	writeJSON(c.w, http.StatusOK, Explain(&d))
}

// onlyParams refuses query parameters other than names, so a typo
// ("acton=deny") is an error rather than a silently wider answer.
func onlyParams(q map[string][]string, names ...string) *apiError {
	for k, v := range q {
		if !slices.Contains(names, k) {
			return invalid(k, "unknown query parameter %q (known: %s)", k, strings.Join(names, ", ")).because("unknown_param", "name", k)
		}
		if len(v) > 1 {
			return invalid(k, "query parameter %q given %d times", k, len(v)).because("param_twice", "name", k)
		}
	}
	return nil
}
