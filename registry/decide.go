package registry

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Policy holds the decision settings that are not data.
type Policy struct {
	// IPAccess is the verdict for connections without a name (TLS without
	// SNI, HTTP/1.0 without Host) or with an IP literal. Zero means Pass:
	// filing is per domain, and large clouds let bare-IP access through.
	IPAccess Verdict
	// Suffixes is the list of fileable suffixes that tells unfiled from
	// suffix_not_fileable. Nil means the built-in MIIT list.
	Suffixes *Suffixes
}

func (p Policy) ipAccess() Verdict {
	if p.IPAccess == Block {
		return Block
	}
	return Pass
}

// Decision is the outcome of deciding one requested host, with everything
// an explanation needs. Decisions returned by Registry.Decide may be shared
// between callers: treat Record and Override as read-only.
type Decision struct {
	// Input is the host as given to Decide. Registry.Decide sets it to the
	// caller's own string on every call and never retains it.
	Input string
	// Host is the normalised host (A-label, lower case, no port or trailing
	// dot); empty when the input was empty or invalid.
	Host string
	// Kind classifies Host: HostEmpty, HostName or HostIP.
	Kind HostKind
	// Domain is the registrable domain of Host; empty for IP literals,
	// empty names, invalid names and bare public suffixes.
	Domain string
	// Verdict is Pass or Block.
	Verdict Verdict
	// Reason is the reason code of the verdict.
	Reason Reason
	// Record is the registry record of Domain, when there is one (it is
	// reported even when an override decided).
	Record *Record
	// Override is the override that decided, if any.
	Override *Override
	// Ignored is an allow override that matched but was not applied
	// because the domain is blacklisted.
	Ignored *Override
	// Rejected is a row of the filing database under Domain that failed
	// validation, if any: the reason Domain has no record (or, for a row
	// naming a subdomain, a row that never counted). Read-only.
	Rejected *RejectedRow
	// Err says why the input was invalid (Reason invalid_host).
	Err error
	// ValidUntil is the instant at which this decision may change without a
	// new snapshot (an override expiring, a rectification deadline
	// passing); zero when only a new snapshot can change it.
	ValidUntil time.Time
}

// Pass reports whether the verdict is Pass.
func (d *Decision) Pass() bool { return d.Verdict == Pass }

// FilingNumber returns the matched record's filing number, or "".
func (d *Decision) FilingNumber() string {
	if d.Record == nil {
		return ""
	}
	return d.Record.FilingNumber
}

// Upstream returns the matched record's upstream override when the verdict
// is Pass, or "".
func (d *Decision) Upstream() string {
	if d.Record == nil || d.Verdict != Pass {
		return ""
	}
	return d.Record.Upstream
}

// Decide applies the filing rules' decision (registry/doc.go) to host
// against snap at instant now.
// It is a pure function: same inputs, same Decision. A nil snap is an empty
// registry (every name is unfiled: fail closed). Host and Domain of the
// result may share memory with host; Registry.Decide copies them before
// caching.
func Decide(host string, snap *Snapshot, now time.Time, p Policy) Decision {
	d := Decision{Input: host}

	// 1. Normalise.
	n, kind, err := Normalize(host)
	if err != nil {
		d.Verdict, d.Reason, d.Err = Block, ReasonInvalidHost, err
		return d
	}
	d.Host, d.Kind = n, kind

	// 2. No name or an IP literal: the ip_access policy.
	if kind != HostName {
		d.Verdict, d.Reason = p.ipAccess(), ReasonIPAccess
		return d
	}

	// 3. Registrable domain. A bare public suffix ("com.cn", "cn") is
	// blocked as invalid_host, not unfiled: nobody can file it, so telling
	// its "owner" to file would be wrong, and it does not belong in the
	// filing team's list of unfiled sites. Overrides cannot name one either
	// (the snapshot rejects them), so nothing can open it.
	dom, err := RegistrableDomain(n)
	if err != nil {
		d.Verdict, d.Reason, d.Err = Block, ReasonInvalidHost, err
		return d
	}
	d.Domain = dom

	var rec *Record
	if snap != nil {
		rec = snap.Lookup(dom)
	}
	d.Record = rec
	if snap != nil && len(snap.rejected) > 0 {
		if rs := snap.rejected[dom]; len(rs) > 0 {
			d.Rejected = &rs[0]
		}
	}

	// 4. Overrides. Deny beats allow whatever the scope: an ops denylist
	// entry is a compliance control that a support whitelist must never
	// reopen. Within an action the exact-host entry is preferred over the
	// domain entry (it is the one reported). An allow never opens a
	// blacklisted domain. Expired overrides never apply; the earliest
	// expiry of the overrides that do apply bounds ValidUntil, since the
	// decision may change then.
	if snap != nil && len(snap.overrides) > 0 {
		if ovs := snap.overrides[dom]; len(ovs) > 0 {
			var deny, allow *Override
			for i := range ovs {
				o := &ovs[i]
				if !matches(o, n, dom) || !o.ActiveAt(now) {
					continue
				}
				d.ValidUntil = earliest(d.ValidUntil, o.Expires)
				switch o.Action {
				case ActionDeny:
					if deny == nil || (deny.Scope == ScopeDomain && o.Scope == ScopeExact) {
						deny = o
					}
				case ActionAllow:
					if allow == nil || (allow.Scope == ScopeDomain && o.Scope == ScopeExact) {
						allow = o
					}
				}
			}
			switch {
			case deny != nil:
				d.Verdict, d.Reason, d.Override = Block, ReasonOverrideDeny, deny
				d.ValidUntil = deny.Expires
				return d
			case allow != nil && rec != nil && rec.State == StateBlacklisted:
				d.Ignored = allow
				// Fall through to the record: blacklisted. The allow's
				// expiry cannot change that.
				d.ValidUntil = time.Time{}
			case allow != nil:
				d.Verdict, d.Reason, d.Override = Pass, ReasonOverrideAllow, allow
				return d
			}
		}
	}

	// 5. The record.
	if rec == nil {
		d.Verdict, d.Reason = Block, ReasonUnfiled
		if !p.Suffixes.Fileable(dom) {
			d.Reason = ReasonSuffixNotFileable
		}
		return d
	}
	d.Verdict, d.Reason = decideRecord(rec, now)
	if rec.State == StateRectifying && d.Verdict == Pass {
		d.ValidUntil = earliest(d.ValidUntil, rec.RectifyDeadline)
	}
	return d
}

// decideRecord is the table of record states to verdicts ("Registry record of the
// registrable domain").
func decideRecord(rec *Record, now time.Time) (Verdict, Reason) {
	switch rec.State {
	case StateFiled, StateChanging:
		// A change filing in progress must not take the site offline.
		return Pass, ReasonFiled
	case StateAccessPending:
		return Pass, ReasonAccessPending
	case StateRectifying:
		// The deadline is the first instant at which the site is overdue.
		if now.Before(rec.RectifyDeadline) {
			return Pass, ReasonRectifying
		}
		return Block, ReasonRectificationOverdue
	case StateNoAccess:
		return Block, ReasonNoAccess
	case StateFilingPending:
		return Block, ReasonFilingPending
	case StateCancelled:
		return Block, ReasonCancelled
	case StateAccessRevoked:
		return Block, ReasonAccessRevoked
	case StateBlacklisted:
		return Block, ReasonBlacklisted
	}
	// Snapshots only hold valid states; fail closed if one ever does not.
	return Block, ReasonUnfiled
}

// matches reports whether override o applies to host n with registrable
// domain dom.
func matches(o *Override, n, dom string) bool {
	switch o.Scope {
	case ScopeExact:
		return o.Host == n
	case ScopeDomain:
		return o.Host == dom
	}
	return false
}

// earliest returns the earlier of two instants, treating zero as "never".
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.Before(a):
		return b
	}
	return a
}

// Explain returns a human-readable trace of the decision, one step per
// line, as printed by `icpgate check`.
func (d *Decision) Explain() string {
	var b strings.Builder
	fmt.Fprintf(&b, "input:      %q\n", d.Input)
	if d.Reason == ReasonInvalidHost {
		if d.Host != "" {
			fmt.Fprintf(&b, "normalized: %s\n", d.Host)
		}
		msg := "not a valid host name"
		if errors.Is(d.Err, ErrPublicSuffix) {
			msg = "a public suffix, not a registrable domain: nobody can file it"
		} else if d.Err != nil {
			msg = d.Err.Error()
		}
		fmt.Fprintf(&b, "invalid:    %s\n", msg)
		fmt.Fprintf(&b, "verdict:    %s (%s)\n", d.Verdict, d.Reason)
		return b.String()
	}
	switch d.Kind {
	case HostEmpty:
		b.WriteString("normalized: (no name)\n")
	default:
		fmt.Fprintf(&b, "normalized: %s\n", d.Host)
	}
	if d.Kind != HostName {
		fmt.Fprintf(&b, "policy:     ip_access = %s (no name or an IP literal)\n", d.Verdict)
		fmt.Fprintf(&b, "verdict:    %s (%s)\n", d.Verdict, d.Reason)
		return b.String()
	}
	fmt.Fprintf(&b, "domain:     %s\n", d.Domain)
	if o := d.Override; o != nil {
		fmt.Fprintf(&b, "override:   %s\n", describeOverride(o))
	}
	if o := d.Ignored; o != nil {
		fmt.Fprintf(&b, "ignored:    %s (an allow never opens a blacklisted domain)\n", describeOverride(o))
	}
	if r := d.Record; r != nil {
		fmt.Fprintf(&b, "record:     state=%s", r.State)
		if r.FilingNumber != "" {
			fmt.Fprintf(&b, " filing_number=%s", r.FilingNumber)
		}
		if r.Subject != "" {
			fmt.Fprintf(&b, " subject=%q", r.Subject)
		}
		if !r.RectifyDeadline.IsZero() {
			fmt.Fprintf(&b, " rectify_deadline=%s", r.RectifyDeadline.Format(time.RFC3339))
		}
		if !r.UpdatedAt.IsZero() {
			fmt.Fprintf(&b, " updated_at=%s", r.UpdatedAt.Format(time.RFC3339))
		}
		b.WriteByte('\n')
	} else {
		b.WriteString("record:     none\n")
		if d.Reason == ReasonSuffixNotFileable {
			b.WriteString("suffix:     not on the MIIT list of fileable suffixes\n")
		}
	}
	if rj := d.Rejected; rj != nil {
		fmt.Fprintf(&b, "rejected:   %s\n", rj.Explain())
	}
	fmt.Fprintf(&b, "verdict:    %s (%s)\n", d.Verdict, d.Reason)
	if !d.ValidUntil.IsZero() {
		fmt.Fprintf(&b, "until:      %s\n", d.ValidUntil.Format(time.RFC3339))
	}
	return b.String()
}

func describeOverride(o *Override) string {
	s := fmt.Sprintf("%s %s %s", o.Action, o.Scope, o.Host)
	if o.Ticket != "" {
		s += " ticket=" + o.Ticket
	}
	if o.Reason != "" {
		s += fmt.Sprintf(" reason=%q", o.Reason)
	}
	if o.Who != "" {
		s += " by=" + o.Who
	}
	if !o.Expires.IsZero() {
		s += " expires=" + o.Expires.Format(time.RFC3339)
	}
	return s
}

// Explain says what the rejected row means for decisions, as the
// explanation of a decision prints it.
func (r *RejectedRow) Explain() string {
	return "database row rejected: " + r.Reason + "; the row is ignored (its domain has no record from it) until it is fixed in the filing database"
}
