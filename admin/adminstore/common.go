package adminstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/registry"
)

var (
	// ErrUnavailable is returned (wrapped) when the database cannot be
	// reached or answer: connection refused or lost, a timeout, a server
	// shutting down, a schema that is not migrated. The admin API answers
	// 503; the data plane keeps serving.
	ErrUnavailable = errors.New("control-plane store unavailable")
	// ErrCorrupt is returned (wrapped, with the file and what is wrong)
	// when a bbolt file or a token file fails its checks. Nothing is
	// discarded: these files are the whitelist, the audit trail and the
	// tokens, so an operator must look (restore a backup).
	ErrCorrupt = errors.New("corrupt control-plane file")
	// ErrNameTaken is returned (wrapped) by TokenStore.Create when a live
	// token already has the name.
	ErrNameTaken = errors.New("a live token already has this name")
)

// Interface guards.
var (
	_ admin.Backend    = (*Bolt)(nil)
	_ admin.Backend    = (*Postgres)(nil)
	_ admin.TokenStore = (*Postgres)(nil)
	_ admin.TokenStore = (*TokenFile)(nil)
)

// defaultLimit is the page size when a filter's Limit is zero.
const defaultLimit = 100

// precision is the resolution times are stored with (PostgreSQL's).
const precision = time.Microsecond

// stamp returns t in UTC at the stored precision.
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(precision)
}

// limit returns the page size for a filter's Limit.
func limit(n int) int {
	if n <= 0 {
		return defaultLimit
	}
	return n
}

// checkOverride validates o as the registry would (scope, action, host a
// host name, domain scope on the registrable domain, an allow expires) and
// returns it with its host normalised and its times at the stored
// precision. An override the registry would skip is never stored.
func checkOverride(o registry.Override) (registry.Override, error) {
	if err := (&registry.Builder{}).AddOverride(o); err != nil {
		return o, err
	}
	n, _, err := registry.Normalize(o.Host)
	if err != nil { // AddOverride accepted it: cannot happen
		return o, fmt.Errorf("%w: host %q: %w", registry.ErrInvalidOverride, o.Host, err)
	}
	o.Host = n
	for _, f := range []struct{ name, v string }{{"reason", o.Reason}, {"ticket", o.Ticket}, {"who", o.Who}} {
		switch {
		case len(f.v) > 4096:
			return o, fmt.Errorf("%w: %s: more than 4096 bytes", registry.ErrInvalidOverride, f.name)
		case !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0:
			// PostgreSQL text holds neither; refuse in both backends.
			return o, fmt.Errorf("%w: %s: not valid UTF-8 text", registry.ErrInvalidOverride, f.name)
		}
	}
	o.Expires = stamp(o.Expires)
	o.Created = stamp(o.Created)
	return o, nil
}

// parseScope and parseAction read the stored names of registry.Scope and
// registry.Action.
func parseScope(s string) (registry.Scope, error) {
	switch s {
	case "exact":
		return registry.ScopeExact, nil
	case "domain":
		return registry.ScopeDomain, nil
	}
	return 0, fmt.Errorf("scope %q: must be exact or domain", s)
}

func parseAction(s string) (registry.Action, error) {
	switch s {
	case "allow":
		return registry.ActionAllow, nil
	case "deny":
		return registry.ActionDeny, nil
	}
	return 0, fmt.Errorf("action %q: must be allow or deny", s)
}

// overrideJSON is o as the audit log's Before and After hold it.
func overrideJSON(o admin.Override, at time.Time) json.RawMessage {
	b, err := json.Marshal(o.JSON(at))
	if err != nil { // plain strings and times: cannot fail
		panic(err)
	}
	return b
}

// prepareAudit checks e and fills in what the backend owns: At (now when
// zero; else at the stored precision), Outcome ("ok" when empty and the
// entry goes with a change), Input made valid JSON.
func prepareAudit(e *admin.AuditEntry, now time.Time, mutation bool) error {
	if e.At.IsZero() {
		e.At = stamp(now)
	} else {
		e.At = stamp(e.At)
	}
	if e.Action == "" {
		return errors.New("audit entry: action: required")
	}
	if e.Outcome == "" && mutation {
		e.Outcome = "ok"
	}
	switch e.Outcome {
	case "ok", "denied", "rejected":
	default:
		return fmt.Errorf("audit entry: outcome %q: must be ok, denied or rejected", e.Outcome)
	}
	// The audit log records hostile input too: text PostgreSQL cannot
	// hold (NUL, invalid UTF-8) is replaced rather than losing the entry.
	for _, p := range []*string{&e.Who, &e.Role, &e.Remote, &e.Action, &e.Target, &e.Normalized, &e.Detail} {
		*p = cleanText(*p)
	}
	e.Input = validJSON(e.Input)
	e.Before = validJSON(e.Before)
	e.After = validJSON(e.After)
	return nil
}

// cleanText returns s with invalid UTF-8 and NUL bytes replaced by U+FFFD.
func cleanText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// validJSON returns raw unchanged when it is empty or valid JSON in
// UTF-8, and otherwise as a JSON string: a request body that did not parse
// is still recorded (it is the attempt the audit log is for), just quoted.
func validJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	if json.Valid(raw) && utf8.Valid(raw) {
		return raw
	}
	b, _ := json.Marshal(string(raw)) // invalid UTF-8 becomes U+FFFD
	return b
}

// matchOverride reports whether o passes f (all but the cursor and limit).
// now is f.Now, or the current time, at the stored precision.
func matchOverride(o *admin.Override, f *admin.OverrideFilter, query string, now time.Time) bool {
	if f.Action != 0 && o.Action != f.Action {
		return false
	}
	if query != "" && !strings.Contains(o.Host, query) {
		return false
	}
	if f.Active != nil && o.ActiveAt(now) != *f.Active {
		return false
	}
	return true
}

// filterNow returns the instant f.Active is judged at.
func filterNow(f *admin.OverrideFilter) time.Time {
	if f.Now.IsZero() {
		return stamp(time.Now())
	}
	return stamp(f.Now)
}

// matchAudit reports whether e passes f (all but the cursor and limit).
// Since is inclusive, Until exclusive.
func matchAudit(e *admin.AuditEntry, f *admin.AuditFilter) bool {
	if f.Who != "" && e.Who != f.Who {
		return false
	}
	if f.Action != "" && e.Action != f.Action {
		return false
	}
	if f.Target != "" && e.Target != f.Target && e.Normalized != f.Target {
		return false
	}
	if !f.Since.IsZero() && e.At.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.At.Before(f.Until) {
		return false
	}
	return true
}

// maxNameLen is the longest token name.
const maxNameLen = 64

// checkTokenName reports whether name is 1–64 characters of
// [A-Za-z0-9._@-].
func checkTokenName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("token name %q: must be 1 to %d characters", name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return fmt.Errorf("token name %q: only letters, digits and . _ @ - are allowed", name)
		}
	}
	return nil
}

// checkTokenID reports whether id is 1–64 characters of [A-Za-z0-9_-] (a
// base64url prefix of the secret).
func checkTokenID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("token id %q: must be 1 to 64 characters", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("token id %q: only letters, digits, _ and - are allowed", id)
		}
	}
	return nil
}

// checkToken validates a token to be created and returns it with Created
// set (now when zero) at the stored precision and Revoked false.
func checkToken(t admin.Token, now time.Time) (admin.Token, error) {
	if err := checkTokenID(t.ID); err != nil {
		return t, err
	}
	if err := checkTokenName(t.Name); err != nil {
		return t, err
	}
	if t.Role.String() == "none" {
		return t, fmt.Errorf("token %s: role: must be viewer, support or admin", t.Name)
	}
	if t.Hash == ([32]byte{}) {
		return t, fmt.Errorf("token %s: hash: required", t.Name)
	}
	if t.Created.IsZero() {
		t.Created = now
	}
	t.Created = stamp(t.Created)
	t.Revoked = false
	return t, nil
}
