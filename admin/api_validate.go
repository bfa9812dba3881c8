package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/icpgate/icpgate/registry"
)

// Limits of override text fields, in characters.
const (
	maxReasonLen = 500
	maxTicketLen = 100
	// maxTTLDays keeps "Nd" far from overflowing a time.Duration.
	maxTTLDays = 100000
)

// decodeObject parses body as exactly one JSON object and returns its
// members by their exact names (encoding/json would also take "HOST" for
// "host"). known is asked about each name and refuses unknown ones; a
// name given twice is refused too, so the audit log's raw input cannot
// say one thing while the stored override says another.
func decodeObject(body []byte, known func(name string) *apiError) (map[string]json.RawMessage, *apiError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, invalid("", "the body must be one JSON object").because("malformed_json")
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalid("", "malformed JSON at byte %d: %v", dec.InputOffset(), err).because("malformed_json")
		}
		name, _ := tok.(string) // object keys are always strings
		if _, dup := m[name]; dup {
			return nil, invalid(name, "field %q given twice", name).because("field_twice", "name", name)
		}
		if e := known(name); e != nil {
			return nil, e
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalid(name, "malformed JSON in field %q at byte %d: %v", name, dec.InputOffset(), err).because("malformed_json")
		}
		m[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, invalid("", "malformed JSON at byte %d: %v", dec.InputOffset(), err).because("malformed_json")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("", "trailing data after the JSON object at byte %d", dec.InputOffset()).because("malformed_json")
	}
	return m, nil
}

// knownFields refuses names outside names, naming the field.
func knownFields(names ...string) func(string) *apiError {
	return func(name string) *apiError {
		for _, n := range names {
			if n == name {
				return nil
			}
		}
		return invalid(name, "unknown field %q (known: %s)", name, strings.Join(names, ", ")).because("unknown_field", "name", name)
	}
}

// stringField returns a string member; absent and null give "", false.
func stringField(m map[string]json.RawMessage, name string) (string, bool, *apiError) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var v string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
		return "", false, invalid(name, "%s must be a string", name).because("malformed_json")
	}
	if !utf8.Valid(raw) {
		// encoding/json would quietly turn the bad bytes into U+FFFD.
		return "", false, invalid(name, "%s is not valid UTF-8: send text in UTF-8", name).because("not_utf8")
	}
	return v, true, nil
}

// boolField returns a boolean member; absent and null give false.
func boolField(m map[string]json.RawMessage, name string) (bool, *apiError) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		return false, nil
	}
	var v bool
	if json.Unmarshal(raw, &v) != nil {
		return false, invalid(name, "%s must be true or false", name).because("malformed_json")
	}
	return v, nil
}

// overrideRequest is a create (POST) or update (PATCH) body, parsed but
// not yet validated. Empty strings mean absent.
type overrideRequest struct {
	Host, Scope, Action, Reason, Ticket, TTL, Expires string
	Confirm                                           bool
	// HasReason and HasTicket tell an update that sets "" from one that
	// leaves the field alone.
	HasReason, HasTicket bool
}

var createFields = []string{"host", "scope", "action", "reason", "ticket", "ttl", "expires", "confirm"}

// parseCreate parses a create body.
func parseCreate(body []byte) (overrideRequest, *apiError) {
	var req overrideRequest
	m, e := decodeObject(body, knownFields(createFields...))
	if e != nil {
		return req, e
	}
	for _, f := range []struct {
		name string
		dst  *string
		has  *bool
	}{
		{"host", &req.Host, nil}, {"scope", &req.Scope, nil}, {"action", &req.Action, nil},
		{"reason", &req.Reason, &req.HasReason}, {"ticket", &req.Ticket, &req.HasTicket},
		{"ttl", &req.TTL, nil}, {"expires", &req.Expires, nil},
	} {
		v, has, e := stringField(m, f.name)
		if e != nil {
			return req, e
		}
		*f.dst = v
		if f.has != nil {
			*f.has = has
		}
	}
	if req.Confirm, e = boolField(m, "confirm"); e != nil {
		return req, e
	}
	return req, nil
}

// parseUpdate parses a PATCH body: ttl, expires, reason, ticket.
func parseUpdate(body []byte) (overrideRequest, *apiError) {
	var req overrideRequest
	m, e := decodeObject(body, func(name string) *apiError {
		switch name {
		case "ttl", "expires", "reason", "ticket":
			return nil
		case "host", "scope", "action":
			return invalid(name, "%s cannot change: delete the override and create a new one", name).because("cannot_change")
		case "confirm":
			return invalid(name, "confirm applies only when creating an allow")
		}
		return invalid(name, "unknown field %q (an update takes ttl, expires, reason, ticket)", name).because("unknown_field", "name", name)
	})
	if e != nil {
		return req, e
	}
	var has [4]bool
	for i, f := range []struct {
		name string
		dst  *string
	}{{"ttl", &req.TTL}, {"expires", &req.Expires}, {"reason", &req.Reason}, {"ticket", &req.Ticket}} {
		v, ok, e := stringField(m, f.name)
		if e != nil {
			return req, e
		}
		*f.dst, has[i] = v, ok
	}
	req.HasReason, req.HasTicket = has[2], has[3]
	if req.TTL == "" && req.Expires == "" && !has[2] && !has[3] {
		return req, invalid("", "nothing to change: give ttl, expires, reason or ticket").because("nothing_to_change")
	}
	return req, nil
}

// parseAction parses the action field.
func parseAction(s string) (registry.Action, *apiError) {
	switch s {
	case "allow":
		return registry.ActionAllow, nil
	case "deny":
		return registry.ActionDeny, nil
	case "":
		return 0, invalid("action", `action is required: "allow" or "deny"`).because("required")
	}
	return 0, invalid("action", `action must be "allow" or "deny", got %q`, s).because("action_bad")
}

// overridePolicy is what validating an override needs besides the
// request: the clock, the expiry limits and the registry's records.
type overridePolicy struct {
	now                             time.Time
	defaultAllow, maxAllow, maxDeny time.Duration
	snap                            *registry.Snapshot
}

// policy returns the override policy at now.
func (s *Server) policy(now time.Time) *overridePolicy {
	return &overridePolicy{now: now, defaultAllow: s.cfg.DefaultAllowTTL, maxAllow: s.cfg.MaxAllowTTL,
		maxDeny: s.cfg.MaxDenyTTL, snap: s.reg.Snapshot()}
}

// validateCreate turns a create request into the override to store (ID,
// Who and Created left for the caller). On error the returned override's
// Host is the normalised host when it got that far (for the audit log).
func (p *overridePolicy) validateCreate(req overrideRequest) (registry.Override, *apiError) {
	var o registry.Override
	action, e := parseAction(req.Action)
	if e != nil {
		return o, e
	}
	o.Action = action
	host, domain, e := validateHost(req.Host)
	if e != nil {
		return o, e
	}
	o.Host = host
	switch req.Scope {
	case "":
		o.Scope = registry.ScopeExact
		if host == domain {
			o.Scope = registry.ScopeDomain
		}
	case "exact":
		o.Scope = registry.ScopeExact
	case "domain":
		if host != domain {
			return o, invalid("scope", "scope domain needs a registrable domain, and %s is under %s: use host %q, or scope exact", host, domain, domain).
				because("scope_not_domain", "host", host, "domain", domain)
		}
		o.Scope = registry.ScopeDomain
	default:
		return o, invalid("scope", `scope must be "exact" or "domain", got %q`, req.Scope).because("scope_bad")
	}
	if o.Reason, e = checkText("reason", req.Reason, 1, maxReasonLen); e != nil {
		return o, e
	}
	least := 0
	if action == registry.ActionAllow {
		least = 1
	}
	if o.Ticket, e = checkText("ticket", req.Ticket, least, maxTicketLen); e != nil {
		return o, e
	}
	if o.Expires, e = p.expiry(action, req.TTL, req.Expires, true); e != nil {
		return o, e
	}
	if action == registry.ActionAllow {
		if e := p.allowable(domain, req.Confirm); e != nil {
			return o, e
		}
	}
	return o, nil
}

// applyUpdate applies an update request to a stored override.
func (p *overridePolicy) applyUpdate(o *registry.Override, req overrideRequest) *apiError {
	var e *apiError
	if req.HasReason {
		if o.Reason, e = checkText("reason", req.Reason, 1, maxReasonLen); e != nil {
			return e
		}
	}
	if req.HasTicket {
		least := 0
		if o.Action == registry.ActionAllow {
			least = 1
		}
		if o.Ticket, e = checkText("ticket", req.Ticket, least, maxTicketLen); e != nil {
			return e
		}
	}
	exp, e := p.expiry(o.Action, req.TTL, req.Expires, false)
	if e != nil {
		return e
	}
	if exp.IsZero() {
		return nil
	}
	if o.Action == registry.ActionAllow && (o.Expires.IsZero() || exp.After(o.Expires)) {
		// Extending an allow is allowing again: the blacklist still wins.
		// (Confirmation of a cancelled or filing_pending domain was given
		// when it was created.)
		dom, err := registry.RegistrableDomain(o.Host)
		if err == nil {
			if e := p.allowable(dom, true); e != nil {
				return e
			}
		}
	}
	o.Expires = exp
	return nil
}

// allowable refuses an allow the registry says must not be given: 422
// for a blacklisted domain, 409 for a cancelled or filing_pending one
// unless confirmed.
func (p *overridePolicy) allowable(domain string, confirm bool) *apiError {
	rec := p.snap.Lookup(domain)
	if rec == nil {
		return nil
	}
	switch rec.State {
	case registry.StateBlacklisted:
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "not_allowed", State: rec.State.String(),
			Message: domain + " is blacklisted: an allow never overrides the blacklist"}
	case registry.StateCancelled, registry.StateFilingPending:
		if !confirm {
			what := "its filing was cancelled (it needs a new filing)"
			if rec.State == registry.StateFilingPending {
				what = "its first filing is under review and the site must stay offline until it passes"
			}
			return &apiError{Status: http.StatusConflict, Code: "confirmation_required", State: rec.State.String(),
				Message: domain + " is " + rec.State.String() + ": " + what + `; send "confirm": true to allow it anyway`}
		}
	}
	return nil
}

// validateHost normalises an override's host as the data plane does and
// returns it with its registrable domain.
func validateHost(raw string) (host, domain string, e *apiError) {
	if raw == "" {
		return "", "", invalid("host", "host is required").because("required")
	}
	if strings.Contains(raw, "*") {
		return "", "", invalid("host", `host: wildcards are not supported; an override with scope "domain" on the registrable domain covers every name under it`).because("host_wildcard")
	}
	n, kind, err := registry.Normalize(raw)
	if err != nil {
		return "", "", invalid("host", "host: %v", err).because("host_invalid")
	}
	switch kind {
	case registry.HostIP:
		return "", "", invalid("host", "host: %s is an IP address; filing, and so every override, is per domain name", n).because("host_ip")
	case registry.HostEmpty:
		return "", "", invalid("host", "host is required").because("required")
	}
	d, err := registry.RegistrableDomain(n)
	if errors.Is(err, registry.ErrPublicSuffix) {
		return n, "", invalid("host", "host: %s is a public suffix, not a domain anyone files", n).because("host_public_suffix", "host", n)
	}
	if err != nil {
		return n, "", invalid("host", "host: %v", err).because("host_invalid")
	}
	return n, d, nil
}

// checkText checks a text field: surrounding white space trimmed, least
// to most characters, valid UTF-8 without characters DisplayUnsafe
// refuses.
func checkText(field, v string, least, most int) (string, *apiError) {
	v = strings.TrimSpace(v)
	n := utf8.RuneCountInString(v)
	if n < least {
		return "", invalid(field, "%s is required", field).because("required")
	}
	if n > most {
		return "", invalid(field, "%s is %d characters; at most %d", field, n, most).
			because("too_long", "max", strconv.Itoa(most), "length", strconv.Itoa(n))
	}
	if !utf8.ValidString(v) {
		return "", invalid(field, "%s is not valid UTF-8", field).because("not_utf8")
	}
	pos := 0
	for _, r := range v {
		pos++
		if DisplayUnsafe(r) {
			return "", invalid(field, "%s must be plain text on one line: character %d is U+%04X, %s; remove it",
				field, pos, r, unsafeKind(r)).
				because("unsafe_char", "position", strconv.Itoa(pos), "char", fmt.Sprintf("U+%04X", r))
		}
	}
	if tokenPattern.MatchString(v) {
		// It would be kept in the override and in the audit log's
		// before/after for ever.
		return "", invalid(field, "%s contains what looks like an icpgate token; never paste a token anywhere (revoke it if it was shared)", field).because("token_pasted")
	}
	return v, nil
}

// expiry computes an override's expiry from ttl or expires (not both),
// measured from now and capped by the action's maximum. Creating an allow
// without either gets the default; a deny needs one. For an update,
// neither means no change (zero time).
func (p *overridePolicy) expiry(action registry.Action, ttl, expires string, creating bool) (time.Time, *apiError) {
	limit, setting := p.maxAllow, "admin.max_allow_ttl"
	if action == registry.ActionDeny {
		limit, setting = p.maxDeny, "admin.max_deny_ttl"
	}
	var at time.Time
	field := "ttl"
	switch {
	case ttl != "" && expires != "":
		return time.Time{}, invalid("ttl", "give ttl or expires, not both").because("ttl_and_expires")
	case ttl != "":
		d, err := parseTTL(ttl)
		if err != nil {
			return time.Time{}, invalid("ttl", "ttl: %v", err).because("ttl_bad")
		}
		if d <= 0 {
			return time.Time{}, invalid("ttl", "ttl must be positive, got %q", ttl).because("ttl_bad")
		}
		if d > limit {
			return time.Time{}, invalid("ttl", "ttl %s is too long: at most %s from now (%s)", ttl, days(limit), setting).
				because("too_far", "days", wholeDays(limit))
		}
		at = p.now.Add(d)
	case expires != "":
		field = "expires"
		t, err := time.Parse(time.RFC3339, expires)
		if err != nil {
			return time.Time{}, invalid("expires", "expires must be an RFC 3339 time such as 2027-01-11T05:00:00Z, got %q", expires).because("expires_bad")
		}
		at = t
	case !creating:
		return time.Time{}, nil
	case action == registry.ActionAllow:
		at = p.now.Add(p.defaultAllow)
	default:
		return time.Time{}, invalid("ttl", "a deny needs ttl or expires (at most %s from now)", days(limit)).
			because("deny_needs_expiry", "days", wholeDays(limit))
	}
	// Microseconds: what PostgreSQL keeps, so the stored expiry is the
	// one answered.
	at = at.UTC().Truncate(time.Microsecond)
	if !at.After(p.now) {
		return time.Time{}, invalid(field, "%s is in the past (%s)", field, at.Format(time.RFC3339Nano)).because("in_past")
	}
	if at.Sub(p.now) > limit {
		return time.Time{}, invalid(field, "%s is too far: at most %s from now (%s)", field, days(limit), setting).
			because("too_far", "days", wholeDays(limit))
	}
	return at, nil
}

// parseTTL parses a Go duration ("720h", "90m") or a number of days ("45d").
func parseTTL(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
		d, err := strconv.Atoi(n)
		if err != nil || d > maxTTLDays {
			return 0, fmt.Errorf("%q is too many days", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`%q is not a duration such as "720h" or "45d"`, s)
	}
	return d, nil
}

// days formats a duration in days when it is a whole number of them.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + " days"
	}
	return d.String()
}

// wholeDays is d in whole days, for an error's args.
func wholeDays(d time.Duration) string { return strconv.FormatInt(int64(d/(24*time.Hour)), 10) }

// parseIfMatch parses If-Match: one strong ETag "<version>".
func parseIfMatch(h string) (int64, *apiError) {
	h = strings.TrimSpace(h)
	if len(h) < 3 || h[0] != '"' || h[len(h)-1] != '"' {
		return 0, invalid("If-Match", `If-Match must be the override's ETag, e.g. "3", got %s`, quoteHost(h)).because("if_match_bad")
	}
	v, err := strconv.ParseInt(h[1:len(h)-1], 10, 64)
	if err != nil || v < 1 {
		return 0, invalid("If-Match", `If-Match must be the override's ETag, e.g. "3", got %s`, quoteHost(h)).because("if_match_bad")
	}
	return v, nil
}

// DisplayUnsafe reports whether r may not be part of text a person types
// for others to read (an override's reason or ticket): control characters
// (C0, DEL, C1: tabs and line breaks break the one-line tables that print
// it, escapes drive terminals), line and paragraph separators (U+2028,
// U+2029), and invisible format characters (category Cf), among them the
// bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E,
// U+2066-U+2069) that make text display in another order than it is
// stored, so a reason can read as something it does not say. U+200D
// (zero width joiner) is kept: emoji sequences need it, and it moves
// nothing. The CLI escapes the same characters when it prints text stored
// before they were refused.
func DisplayUnsafe(r rune) bool {
	if r == '\u200d' {
		return false
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// unsafeKind names what sort of character DisplayUnsafe refused.
func unsafeKind(r rune) string {
	switch {
	case unicode.IsControl(r):
		return "a control character (tabs and line breaks included)"
	case unicode.In(r, unicode.Zl, unicode.Zp):
		return "a line or paragraph separator"
	case unicode.In(r, unicode.Bidi_Control):
		return "a bidirectional control, which can make text display in another order than it is stored"
	}
	return "an invisible formatting character"
}
