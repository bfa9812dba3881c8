package registry

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrUnknownState is returned (wrapped) when a state name or value is not
// one of the fixed states.
var ErrUnknownState = errors.New("unknown state")

// ErrUnknownVerdict is returned (wrapped) when a verdict name is neither
// "pass" nor "block".
var ErrUnknownVerdict = errors.New("unknown verdict")

// State is the filing state of a registrable domain's record. The string
// forms are fixed interfaces (registry file, database, API).
type State uint8

// Record states, those that pass first, then those that block.
const (
	StateFiled         State = iota + 1 // filed, with an access record here
	StateChanging                       // filed, change filing in progress
	StateAccessPending                  // access filing passed preliminary review
	StateRectifying                     // in rectification, before the deadline
	StateNoAccess                       // filed elsewhere, no access record here
	StateFilingPending                  // first filing / new website under review
	StateCancelled                      // filing cancelled (注销), by its holder or by the authority
	StateAccessRevoked                  // access cancelled by this provider
	StateBlacklisted                    // blacklisted

	numStates = int(StateBlacklisted)
)

// stateNames holds the fixed names, indexed by State.
var stateNames = [...]string{
	StateFiled:         "filed",
	StateChanging:      "changing",
	StateAccessPending: "access_pending",
	StateRectifying:    "rectifying",
	StateNoAccess:      "no_access",
	StateFilingPending: "filing_pending",
	StateCancelled:     "cancelled",
	StateAccessRevoked: "access_revoked",
	StateBlacklisted:   "blacklisted",
}

// States returns every valid state in table order.
func States() []State {
	s := make([]State, 0, numStates)
	for i := 1; i <= numStates; i++ {
		s = append(s, State(i))
	}
	return s
}

// Valid reports whether s is one of the fixed states.
func (s State) Valid() bool { return s >= StateFiled && s <= StateBlacklisted }

// String returns the fixed name of s ("filed", "no_access", ...), or
// "State(N)" for a value outside the set.
func (s State) String() string {
	if s.Valid() {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// NeedsFilingNumber reports whether a record in state s must carry a website
// filing number: the states in which the site is (or is about to be)
// reachable because a filing exists.
func (s State) NeedsFilingNumber() bool {
	switch s {
	case StateFiled, StateChanging, StateAccessPending, StateRectifying:
		return true
	}
	return false
}

// ParseState returns the State named name. Names are matched exactly:
// they are a fixed interface, and "Filed" is a typo worth reporting.
func ParseState(name string) (State, error) {
	for i := 1; i <= numStates; i++ {
		if stateNames[i] == name {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownState, name)
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnknownState, uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Verdict is the outcome of a decision.
type Verdict uint8

// Verdicts.
const (
	Pass Verdict = iota + 1
	Block
)

// String returns "pass" or "block" (or "Verdict(N)" for other values).
func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case Block:
		return "block"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// ParseVerdict parses "pass" or "block", as used by the ip_access policy.
func ParseVerdict(s string) (Verdict, error) {
	switch s {
	case "pass":
		return Pass, nil
	case "block":
		return Block, nil
	}
	return 0, fmt.Errorf("%w %q (want pass or block)", ErrUnknownVerdict, s)
}

// MarshalText implements encoding.TextMarshaler.
func (v Verdict) MarshalText() ([]byte, error) {
	if v != Pass && v != Block {
		return nil, fmt.Errorf("%w: %d", ErrUnknownVerdict, uint8(v))
	}
	return []byte(v.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (v *Verdict) UnmarshalText(b []byte) error {
	p, err := ParseVerdict(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

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

// allReasons is the closed set, in a stable order.
var allReasons = [...]Reason{
	ReasonFiled, ReasonAccessPending, ReasonRectifying, ReasonRectificationOverdue,
	ReasonNoAccess, ReasonFilingPending, ReasonCancelled, ReasonAccessRevoked,
	ReasonBlacklisted, ReasonUnfiled, ReasonSuffixNotFileable, ReasonIPAccess,
	ReasonInvalidHost, ReasonOverrideAllow, ReasonOverrideDeny,
}

// Reasons returns every reason code, for pre-registering metric label
// values and checking block-page texts. The slice is a fresh copy.
func Reasons() []Reason {
	r := allReasons
	return r[:]
}

// Verdicts reports which verdicts a decision with reason r can carry: each
// reason has one, but for ip_access, which follows the policy. Metrics are
// pre-registered from it, so a pair that cannot happen is never exported.
func (r Reason) Verdicts() (pass, block bool) {
	switch r {
	case ReasonFiled, ReasonAccessPending, ReasonRectifying, ReasonOverrideAllow:
		return true, false
	case ReasonIPAccess:
		return true, true
	}
	return false, true
}

// Record is one registrable domain's filing record.
type Record struct {
	Domain          string // registrable domain, A-label, lower case
	State           State
	FilingNumber    string // website filing number, e.g. 京ICP备10206937号-1
	Subject         string // subject (owner) name, e.g. 某某科技有限公司
	SubjectType     string // enterprise, personal, government, ...
	Province        string // province abbreviation, e.g. 京
	Upstream        string // optional host:port overriding the listener's upstream
	RectifyDeadline time.Time
	UpdatedAt       time.Time
}

// Equal reports whether r and o hold the same data (times compared as
// instants).
func (r *Record) Equal(o *Record) bool {
	return r.Domain == o.Domain && r.State == o.State && r.FilingNumber == o.FilingNumber &&
		r.Subject == o.Subject && r.SubjectType == o.SubjectType && r.Province == o.Province &&
		r.Upstream == o.Upstream && r.RectifyDeadline.Equal(o.RectifyDeadline) &&
		r.UpdatedAt.Equal(o.UpdatedAt)
}

// Scope says what an override covers.
type Scope uint8

// Override scopes.
const (
	ScopeExact  Scope = iota + 1 // only this host
	ScopeDomain                  // this registrable domain and every name under it
)

// String returns "exact" or "domain".
func (s Scope) String() string {
	switch s {
	case ScopeExact:
		return "exact"
	case ScopeDomain:
		return "domain"
	}
	return "Scope(" + strconv.Itoa(int(s)) + ")"
}

// Action is what an override does.
type Action uint8

// Override actions.
const (
	ActionAllow Action = iota + 1
	ActionDeny
)

// String returns "allow" or "deny".
func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionDeny:
		return "deny"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Override is a support whitelist or ops denylist entry.
type Override struct {
	ID      string
	Host    string // normalised host (ScopeExact) or registrable domain (ScopeDomain)
	Scope   Scope
	Action  Action
	Expires time.Time // the override stops applying at this instant; zero: never (deny only)
	Reason  string
	Ticket  string
	Who     string
	Created time.Time
}

// ActiveAt reports whether o applies at now: it stops applying at the
// instant it expires. A zero Expires never expires.
func (o *Override) ActiveAt(now time.Time) bool {
	return o.Expires.IsZero() || now.Before(o.Expires)
}

// Equal reports whether o and p hold the same data (times compared as
// instants).
func (o *Override) Equal(p *Override) bool {
	return o.ID == p.ID && o.Host == p.Host && o.Scope == p.Scope && o.Action == p.Action &&
		o.Expires.Equal(p.Expires) && o.Reason == p.Reason && o.Ticket == p.Ticket &&
		o.Who == p.Who && o.Created.Equal(p.Created)
}
