package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/icpgate/icpgate/registry"
)

// The control plane keeps three kinds of state: overrides (the support
// whitelist and the ops denylist), the append-only audit log, and the
// access tokens of support staff. A Backend stores the first two; a
// TokenStore the third. Implementations live in package adminstore: the
// filing database (PostgreSQL mode, shared by every gateway) and a local
// bbolt file (file mode, one gateway).

// Errors a Backend or TokenStore returns; the API maps them to statuses.
var (
	// ErrNotFound: no override (or token) with that ID. 404.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the caller's version is not the stored one (someone
	// else changed or deleted the override since it was read). 412.
	ErrConflict = errors.New("changed by someone else")
)

// Role is what a token may do. Roles are ordered: each includes the ones
// below it.
type Role uint8

// Roles.
const (
	// RoleViewer reads: explain, overrides, audit, reports.
	RoleViewer Role = iota + 1
	// RoleSupport also creates, extends and removes allow overrides.
	RoleSupport
	// RoleAdmin also manages deny overrides and bulk operations.
	RoleAdmin
)

// String returns "viewer", "support" or "admin".
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleSupport:
		return "support"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole parses "viewer", "support" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "support":
		return RoleSupport, nil
	case "admin":
		return RoleAdmin, nil
	}
	return 0, errors.New(`role must be "viewer", "support" or "admin"`)
}

// Token is one person's access token as stored: never the secret itself,
// only its SHA-256.
type Token struct {
	// ID is a short public identifier (shown in listings and the audit
	// log), the first characters of the secret after its prefix.
	ID string `json:"id"`
	// Name is the person, e.g. "li.wei"; unique among live tokens.
	Name string `json:"name"`
	Role Role   `json:"-"`
	// Hash is the SHA-256 of the full secret.
	Hash    [32]byte  `json:"-"`
	Created time.Time `json:"created"`
	// Revoked tokens authenticate nothing.
	Revoked bool `json:"revoked"`
}

// TokenStore keeps tokens. A gateway reads it on every authentication;
// `icpgate token create` writes it while gateways run, so implementations
// must see tokens added by other processes (re-read a file when it
// changes, or query the database).
type TokenStore interface {
	// Lookup returns the live (not revoked) token with this hash, or
	// ErrNotFound.
	Lookup(ctx context.Context, hash [32]byte) (Token, error)
	// Create adds t; a live token with the same name is an error.
	Create(ctx context.Context, t Token) error
	// List returns every token, revoked ones too, oldest first.
	List(ctx context.Context) ([]Token, error)
	// Revoke revokes the live token with this name or ID, or ErrNotFound.
	Revoke(ctx context.Context, nameOrID string) error
}

// Override is a stored override: the registry's override plus its
// version for optimistic concurrency (ETag/If-Match) and last update.
type Override struct {
	registry.Override
	// Version starts at 1 and grows by one with every update.
	Version int64
	// Updated is when it was created or last updated (UTC).
	Updated time.Time
}

// OverrideFilter selects overrides to list. Zero fields match everything.
type OverrideFilter struct {
	// Action, when set, keeps only allows or only denies.
	Action registry.Action
	// Query keeps overrides whose host contains it (A-label, lower case).
	Query string
	// Active keeps only overrides active (true) or expired (false) at
	// Now; nil keeps both.
	Active *bool
	Now    time.Time
	// After is a pagination cursor: only overrides with a larger numeric
	// ID. Overrides are listed by ID ascending.
	After int64
	// Limit caps the number returned; 0 means 100.
	Limit int
}

// AuditEntry is one line of the audit log. It never holds a token.
type AuditEntry struct {
	ID int64     `json:"id"` // assigned by the backend, increasing
	At time.Time `json:"at"` // UTC; set by the backend when zero
	// Who is the token's name ("" when authentication failed), Role its role.
	Who  string `json:"who"`
	Role string `json:"role,omitempty"`
	// Remote is the client address (host:port) the request came from.
	Remote string `json:"remote"`
	// Action is e.g. "override.create", "override.update",
	// "override.delete", "login", "token.create", "token.revoke".
	Action string `json:"action"`
	// Target is the override ID or host acted on.
	Target string `json:"target,omitempty"`
	// Input is the request as sent (raw JSON), Normalized the host after
	// the data plane's normaliser.
	Input      json.RawMessage `json:"input,omitempty"`
	Normalized string          `json:"normalized,omitempty"`
	// Before and After are the override as JSON before and after the
	// change (null for a create's before and a delete's after).
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	// Outcome is "ok", "denied" (authentication, role, CSRF, rate limit)
	// or "rejected" (validation, conflict); Detail says why.
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	// Exact matches when set; Target also matches the normalised host,
	// so a search by domain finds creates (whose target is the new ID).
	Who, Action, Target string
	Since, Until        time.Time
	// Before is a pagination cursor: only entries with a smaller ID; 0
	// starts from the newest.
	Before int64
	// Limit caps the number returned; 0 means 100.
	Limit int
}

// Backend stores overrides and the audit log. Every mutation writes its
// audit entry in the same transaction (a change is never unaudited); the
// backend fills in the entry's ID, At (when zero), Before and After.
type Backend interface {
	// ListOverrides returns overrides matching f, by ID ascending.
	ListOverrides(ctx context.Context, f OverrideFilter) ([]Override, error)
	// GetOverride returns one override or ErrNotFound.
	GetOverride(ctx context.Context, id string) (Override, error)
	// CreateOverride stores o (its ID, Created are assigned; Version 1).
	CreateOverride(ctx context.Context, o registry.Override, audit AuditEntry) (Override, error)
	// UpdateOverride applies change to the override id if its stored
	// version is version (else ErrConflict; ErrNotFound when gone) and
	// bumps the version. An error from change aborts the update.
	UpdateOverride(ctx context.Context, id string, version int64, change func(*registry.Override) error, audit AuditEntry) (Override, error)
	// DeleteOverride removes the override id if its version is version.
	DeleteOverride(ctx context.Context, id string, version int64, audit AuditEntry) (Override, error)
	// Overrides returns every override (expired ones too) for the
	// registry snapshot.
	Overrides(ctx context.Context) ([]registry.Override, error)
	// AppendAudit appends an entry that goes with no change (a denied or
	// rejected attempt, a login).
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns entries matching f, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}

// ReportRow is one registrable domain in the unfiled-site report.
type ReportRow struct {
	Domain    string    `json:"domain"`
	Reason    string    `json:"reason"` // the block reason last seen
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Hits is the count; HitsError bounds how far it may overstate (the
	// heavy-hitter sketch's error), 0 when exact.
	Hits      uint64 `json:"hits"`
	HitsError uint64 `json:"hits_error"`
	// Destinations are where the blocked traffic would have gone, at most
	// a few per domain: the upstream (host:port, the record's or the
	// listener's), or in transparent mode the original destination
	// (ip:port).
	Destinations []string `json:"destinations"`
	// Nodes is how many gateways counted the domain, when the report is
	// the sum of every gateway's (PostgreSQL mode); 0 (absent) for one
	// gateway's own report.
	Nodes int `json:"nodes,omitempty"`
}

// Reporter answers the unfiled-site report (package unfiled).
type Reporter interface {
	// Top returns up to n rows by hits descending; reason "" means any.
	Top(n int, reason string) []ReportRow
	// WriteCSV writes every row, hits descending, with a header line.
	WriteCSV(w io.Writer, reason string) error
}

// tokenPrefix starts every token secret, so a leaked one is recognisable
// (secret scanners, logs) and a pasted password is told apart.
const tokenPrefix = "icpg_"

// NewToken returns a fresh secret for a person and its stored form. The
// secret is shown once and never stored.
func NewToken(name string, role Role, now time.Time) (secret string, t Token, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Token{}, err
	}
	secret = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Token{
		ID:      secret[len(tokenPrefix) : len(tokenPrefix)+8],
		Name:    name,
		Role:    role,
		Hash:    HashToken(secret),
		Created: now.UTC(),
	}, nil
}

// HashToken returns the stored hash of a token secret. Secrets carry 256
// random bits, so a plain SHA-256 (no salt, no stretching) cannot be
// reversed and lets a lookup be one indexed equality.
func HashToken(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// OverrideJSON is an override as the API shows it, and as the audit log's
// Before and After hold it.
type OverrideJSON struct {
	ID        string     `json:"id"`
	Host      string     `json:"host"`
	Scope     string     `json:"scope"`
	Action    string     `json:"action"`
	Reason    string     `json:"reason"`
	Ticket    string     `json:"ticket"`
	Expires   *time.Time `json:"expires"` // null: never (a deny without expiry)
	Created   time.Time  `json:"created"`
	CreatedBy string     `json:"created_by"`
	Updated   time.Time  `json:"updated"`
	Version   int64      `json:"version"`
	Active    bool       `json:"active"` // applies at the time it was shown
}

// JSON returns o as the API shows it at now.
func (o Override) JSON(now time.Time) OverrideJSON {
	j := OverrideJSON{
		ID: o.ID, Host: o.Host, Scope: o.Scope.String(), Action: o.Action.String(),
		Reason: o.Reason, Ticket: o.Ticket, Created: o.Created.UTC(), CreatedBy: o.Who,
		Updated: o.Updated.UTC(), Version: o.Version, Active: o.ActiveAt(now),
	}
	if !o.Expires.IsZero() {
		e := o.Expires.UTC()
		j.Expires = &e
	}
	return j
}
