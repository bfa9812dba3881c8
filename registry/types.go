package registry

import "time"

// State is the filing state of a registrable domain's record. The string
// forms are fixed interfaces (registry file, database, API).
type State uint8

// Record states, in the order of DESIGN.md's decision table.
const (
	StateFiled         State = iota + 1 // filed, with an access record here
	StateChanging                       // filed, change filing in progress
	StateAccessPending                  // access filing passed preliminary review
	StateRectifying                     // in rectification, before the deadline
	StateNoAccess                       // filed elsewhere, no access record here
	StateFilingPending                  // first filing / new website under review
	StateCancelled                      // filing cancelled by MIIT
	StateAccessRevoked                  // access cancelled by this provider
	StateBlacklisted                    // blacklisted
)

// Verdict is the outcome of a decision.
type Verdict uint8

// Verdicts.
const (
	Pass Verdict = iota + 1
	Block
)

// Reason is a reason code: a closed set used as metric label values, JSON
// fields and keys of the block page's explanation.
type Reason string

// Reason codes.
const (
	ReasonFiled                Reason = "filed"
	ReasonAccessPending        Reason = "access_pending"
	ReasonRectifying           Reason = "rectifying"
	ReasonRectificationOverdue Reason = "rectification_overdue"
	ReasonNoAccess             Reason = "no_access"
	ReasonFilingPending        Reason = "filing_pending"
	ReasonCancelled            Reason = "cancelled"
	ReasonAccessRevoked        Reason = "access_revoked"
	ReasonBlacklisted          Reason = "blacklisted"
	ReasonUnfiled              Reason = "unfiled"
	ReasonSuffixNotFileable    Reason = "suffix_not_fileable"
	ReasonIPAccess             Reason = "ip_access"
	ReasonInvalidHost          Reason = "invalid_host"
	ReasonOverrideAllow        Reason = "override_allow"
	ReasonOverrideDeny         Reason = "override_deny"
)

// Record is one registrable domain's filing record.
type Record struct {
	Domain          string // registrable domain, A-label, lower case
	State           State
	FilingNumber    string // website filing number, e.g. 京ICP备10206937号-1
	Subject         string
	SubjectType     string // enterprise, personal, government, ...
	Province        string
	Upstream        string // optional host:port overriding the listener's upstream
	RectifyDeadline time.Time
	UpdatedAt       time.Time
}

// Scope says what an override covers.
type Scope uint8

// Override scopes.
const (
	ScopeExact  Scope = iota + 1 // only this host
	ScopeDomain                  // this registrable domain and every name under it
)

// Action is what an override does.
type Action uint8

// Override actions.
const (
	ActionAllow Action = iota + 1
	ActionDeny
)

// Override is a support whitelist or ops denylist entry.
type Override struct {
	ID      string
	Host    string // normalised host or registrable domain
	Scope   Scope
	Action  Action
	Expires time.Time // the override stops applying at this instant
	Reason  string
	Ticket  string
	Who     string
	Created time.Time
}
