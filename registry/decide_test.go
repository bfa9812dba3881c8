package registry

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	t0       = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	deadline = time.Date(2026, 12, 31, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))
)

// tableRecords has one record per state, named after it.
func tableRecords() []Record {
	return []Record{
		{Domain: "filed.cn", State: StateFiled, FilingNumber: "京ICP备10206937号-1", Upstream: "10.0.0.5:443"},
		{Domain: "changing.cn", State: StateChanging, FilingNumber: "沪ICP备2026012345号-1"},
		{Domain: "pending-access.cn", State: StateAccessPending, FilingNumber: "浙ICP备2025034567号-2"},
		{Domain: "rectifying.cn", State: StateRectifying, FilingNumber: "粤ICP备19087654号-3", RectifyDeadline: deadline},
		{Domain: "no-access.cn", State: StateNoAccess, FilingNumber: "鲁ICP备17012345号-1"},
		{Domain: "pending-filing.cn", State: StateFilingPending},
		{Domain: "cancelled.cn", State: StateCancelled},
		{Domain: "revoked.cn", State: StateAccessRevoked},
		{Domain: "blacklisted.cn", State: StateBlacklisted},
		{Domain: "例子.中国", State: StateFiled, FilingNumber: "京ICP备09051301号-2"},
		{Domain: "shop.com.cn", State: StateFiled, FilingNumber: "沪ICP备2026012346号-1"},
	}
}

func mustSnapshot(t testing.TB, recs []Record, ovs []Override) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(recs, ovs)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	return s
}

func TestDecideTable(t *testing.T) {
	snap := mustSnapshot(t, tableRecords(), nil)
	tests := []struct {
		name    string
		host    string
		now     time.Time
		policy  Policy
		verdict Verdict
		reason  Reason
		norm    string
		domain  string
	}{
		{"filed", "filed.cn", t0, Policy{}, Pass, ReasonFiled, "filed.cn", "filed.cn"},
		{"filed subdomain", "www.filed.cn", t0, Policy{}, Pass, ReasonFiled, "www.filed.cn", "filed.cn"},
		{"filed deep subdomain", "a.b.c.filed.cn", t0, Policy{}, Pass, ReasonFiled, "a.b.c.filed.cn", "filed.cn"},
		{"filed upper case, trailing dot, port", "WWW.Filed.CN.:443", t0, Policy{}, Pass, ReasonFiled, "www.filed.cn", "filed.cn"},
		{"changing stays reachable", "changing.cn", t0, Policy{}, Pass, ReasonFiled, "changing.cn", "changing.cn"},
		{"access pending", "pending-access.cn", t0, Policy{}, Pass, ReasonAccessPending, "pending-access.cn", "pending-access.cn"},
		{"rectifying before deadline", "rectifying.cn", deadline.Add(-time.Nanosecond), Policy{}, Pass, ReasonRectifying, "rectifying.cn", "rectifying.cn"},
		{"rectifying at deadline", "rectifying.cn", deadline, Policy{}, Block, ReasonRectificationOverdue, "rectifying.cn", "rectifying.cn"},
		{"rectifying after deadline", "www.rectifying.cn", deadline.Add(time.Hour), Policy{}, Block, ReasonRectificationOverdue, "www.rectifying.cn", "rectifying.cn"},
		{"no access", "no-access.cn", t0, Policy{}, Block, ReasonNoAccess, "no-access.cn", "no-access.cn"},
		{"filing pending", "pending-filing.cn", t0, Policy{}, Block, ReasonFilingPending, "pending-filing.cn", "pending-filing.cn"},
		{"cancelled", "cancelled.cn", t0, Policy{}, Block, ReasonCancelled, "cancelled.cn", "cancelled.cn"},
		{"access revoked", "revoked.cn", t0, Policy{}, Block, ReasonAccessRevoked, "revoked.cn", "revoked.cn"},
		{"blacklisted", "m.blacklisted.cn", t0, Policy{}, Block, ReasonBlacklisted, "m.blacklisted.cn", "blacklisted.cn"},
		{"unfiled", "unfiled.cn", t0, Policy{}, Block, ReasonUnfiled, "unfiled.cn", "unfiled.cn"},
		{"unfiled subdomain of filed suffix", "shop.com.cn.evil.cn", t0, Policy{}, Block, ReasonUnfiled, "shop.com.cn.evil.cn", "evil.cn"},
		{"second-level suffix", "www.shop.com.cn", t0, Policy{}, Pass, ReasonFiled, "www.shop.com.cn", "shop.com.cn"},
		{"unicode domain", "www.例子.中国", t0, Policy{}, Pass, ReasonFiled, "www.xn--fsqu00a.xn--fiqs8s", "xn--fsqu00a.xn--fiqs8s"},
		{"a-label domain", "xn--fsqu00a.xn--fiqs8s", t0, Policy{}, Pass, ReasonFiled, "xn--fsqu00a.xn--fiqs8s", "xn--fsqu00a.xn--fiqs8s"},
		{"suffix not fileable", "unfiled-demo.io", t0, Policy{}, Block, ReasonSuffixNotFileable, "unfiled-demo.io", "unfiled-demo.io"},
		{"no name passes by default", "", t0, Policy{}, Pass, ReasonIPAccess, "", ""},
		{"ipv4 passes by default", "192.0.2.7", t0, Policy{}, Pass, ReasonIPAccess, "192.0.2.7", ""},
		{"ipv4 blocked by policy", "192.0.2.7", t0, Policy{IPAccess: Block}, Block, ReasonIPAccess, "192.0.2.7", ""},
		{"no name blocked by policy", "", t0, Policy{IPAccess: Block}, Block, ReasonIPAccess, "", ""},
		{"invalid: space", "filed .cn", t0, Policy{}, Block, ReasonInvalidHost, "", ""},
		{"invalid: slash", "filed.cn/x", t0, Policy{}, Block, ReasonInvalidHost, "", ""},
		{"invalid: NUL", "filed.cn\x00.evil.cn", t0, Policy{}, Block, ReasonInvalidHost, "", ""},
		{"invalid: userinfo", "filed.cn@unfiled.cn", t0, Policy{}, Block, ReasonInvalidHost, "", ""},
		{"public suffix", "com.cn", t0, Policy{}, Block, ReasonInvalidHost, "com.cn", ""},
		{"tld", "cn", t0, Policy{}, Block, ReasonInvalidHost, "cn", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.host, snap, tt.now, tt.policy)
			if d.Verdict != tt.verdict || d.Reason != tt.reason {
				t.Errorf("Decide(%q) = %s %s, want %s %s\n%s", tt.host, d.Verdict, d.Reason, tt.verdict, tt.reason, d.Explain())
			}
			if d.Input != tt.host {
				t.Errorf("Input: got %q, want %q", d.Input, tt.host)
			}
			if tt.reason != ReasonInvalidHost && d.Host != tt.norm {
				t.Errorf("Host: got %q, want %q", d.Host, tt.norm)
			}
			if d.Domain != tt.domain {
				t.Errorf("Domain: got %q, want %q", d.Domain, tt.domain)
			}
			if d.Reason == ReasonInvalidHost && d.Err == nil {
				t.Errorf("invalid_host without Err")
			}
			if !strings.Contains(d.Explain(), string(tt.reason)) {
				t.Errorf("Explain() does not name the reason %q:\n%s", tt.reason, d.Explain())
			}
		})
	}
}

func TestDecideSuffixList(t *testing.T) {
	list, err := LoadSuffixes(strings.NewReader("io\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host   string
		p      Policy
		reason Reason
	}{
		{"unfiled-demo.io", Policy{}, ReasonSuffixNotFileable},
		{"unfiled-demo.io", Policy{Suffixes: list}, ReasonUnfiled},
		{"unfiled-demo.cn", Policy{Suffixes: list}, ReasonSuffixNotFileable},
		{"unfiled-demo.cn", Policy{}, ReasonUnfiled},
	}
	for _, tt := range tests {
		if d := Decide(tt.host, nil, t0, tt.p); d.Reason != tt.reason {
			t.Errorf("Decide(%q) with %d suffixes: got %s, want %s", tt.host, tt.p.Suffixes.Len(), d.Reason, tt.reason)
		}
	}
}

func TestDecidePublicSuffixErr(t *testing.T) {
	d := Decide("com.cn", nil, t0, Policy{})
	if !errors.Is(d.Err, ErrPublicSuffix) {
		t.Errorf("Err: got %v, want %v", d.Err, ErrPublicSuffix)
	}
}

func TestDecideRecordFields(t *testing.T) {
	snap := mustSnapshot(t, tableRecords(), nil)
	d := Decide("www.filed.cn", snap, t0, Policy{})
	if got, want := d.FilingNumber(), "京ICP备10206937号-1"; got != want {
		t.Errorf("FilingNumber: got %q, want %q", got, want)
	}
	if got, want := d.Upstream(), "10.0.0.5:443"; got != want {
		t.Errorf("Upstream: got %q, want %q", got, want)
	}
	if !d.ValidUntil.IsZero() {
		t.Errorf("ValidUntil: got %v, want zero", d.ValidUntil)
	}
	r := Decide("rectifying.cn", snap, t0, Policy{})
	if !r.ValidUntil.Equal(deadline) {
		t.Errorf("rectifying ValidUntil: got %v, want %v", r.ValidUntil, deadline)
	}
	b := Decide("no-access.cn", snap, t0, Policy{})
	if got := b.Upstream(); got != "" {
		t.Errorf("blocked Upstream: got %q, want %q", got, "")
	}
	if Decide("filed.cn", nil, t0, Policy{}).Reason != ReasonUnfiled {
		t.Errorf("nil snapshot must decide unfiled")
	}
}

func TestDecideOverrides(t *testing.T) {
	exp := t0.Add(time.Hour)
	allow := func(host string, sc Scope) Override {
		return Override{ID: "a-" + host + "-" + sc.String(), Host: host, Scope: sc, Action: ActionAllow, Expires: exp, Ticket: "T-1", Reason: "access filing passed review"}
	}
	deny := func(host string, sc Scope) Override {
		return Override{ID: "d-" + host + "-" + sc.String(), Host: host, Scope: sc, Action: ActionDeny, Expires: exp}
	}
	tests := []struct {
		name     string
		ovs      []Override
		host     string
		now      time.Time
		verdict  Verdict
		reason   Reason
		override string // ID of Decision.Override
		ignored  string // ID of Decision.Ignored
	}{
		{"exact allow opens unfiled host", []Override{allow("www.unfiled.cn", ScopeExact)}, "www.unfiled.cn", t0, Pass, ReasonOverrideAllow, "a-www.unfiled.cn-exact", ""},
		{"exact allow is exact", []Override{allow("www.unfiled.cn", ScopeExact)}, "api.unfiled.cn", t0, Block, ReasonUnfiled, "", ""},
		{"exact allow on the domain name only", []Override{allow("unfiled.cn", ScopeExact)}, "www.unfiled.cn", t0, Block, ReasonUnfiled, "", ""},
		{"domain allow covers subdomains", []Override{allow("unfiled.cn", ScopeDomain)}, "a.b.unfiled.cn", t0, Pass, ReasonOverrideAllow, "a-unfiled.cn-domain", ""},
		{"domain allow opens no_access", []Override{allow("no-access.cn", ScopeDomain)}, "no-access.cn", t0, Pass, ReasonOverrideAllow, "a-no-access.cn-domain", ""},
		{"domain deny closes filed", []Override{deny("filed.cn", ScopeDomain)}, "www.filed.cn", t0, Block, ReasonOverrideDeny, "d-filed.cn-domain", ""},
		{"exact deny closes one host", []Override{deny("www.filed.cn", ScopeExact)}, "www.filed.cn", t0, Block, ReasonOverrideDeny, "d-www.filed.cn-exact", ""},
		{"exact deny leaves siblings", []Override{deny("www.filed.cn", ScopeExact)}, "api.filed.cn", t0, Pass, ReasonFiled, "", ""},
		{"domain deny beats exact allow", []Override{allow("www.unfiled.cn", ScopeExact), deny("unfiled.cn", ScopeDomain)}, "www.unfiled.cn", t0, Block, ReasonOverrideDeny, "d-unfiled.cn-domain", ""},
		{"exact deny beats domain allow", []Override{allow("unfiled.cn", ScopeDomain), deny("www.unfiled.cn", ScopeExact)}, "www.unfiled.cn", t0, Block, ReasonOverrideDeny, "d-www.unfiled.cn-exact", ""},
		{"exact deny preferred over domain deny", []Override{deny("filed.cn", ScopeDomain), deny("www.filed.cn", ScopeExact)}, "www.filed.cn", t0, Block, ReasonOverrideDeny, "d-www.filed.cn-exact", ""},
		{"exact allow preferred over domain allow", []Override{allow("unfiled.cn", ScopeDomain), allow("www.unfiled.cn", ScopeExact)}, "www.unfiled.cn", t0, Pass, ReasonOverrideAllow, "a-www.unfiled.cn-exact", ""},
		{"allow never opens blacklisted", []Override{allow("blacklisted.cn", ScopeDomain)}, "blacklisted.cn", t0, Block, ReasonBlacklisted, "", "a-blacklisted.cn-domain"},
		{"exact allow never opens blacklisted", []Override{allow("www.blacklisted.cn", ScopeExact)}, "www.blacklisted.cn", t0, Block, ReasonBlacklisted, "", "a-www.blacklisted.cn-exact"},
		{"deny on blacklisted", []Override{allow("blacklisted.cn", ScopeDomain), deny("blacklisted.cn", ScopeDomain)}, "blacklisted.cn", t0, Block, ReasonOverrideDeny, "d-blacklisted.cn-domain", ""},
		{"allow just before expiry", []Override{allow("unfiled.cn", ScopeDomain)}, "unfiled.cn", exp.Add(-time.Nanosecond), Pass, ReasonOverrideAllow, "a-unfiled.cn-domain", ""},
		{"allow expired at its instant", []Override{allow("unfiled.cn", ScopeDomain)}, "unfiled.cn", exp, Block, ReasonUnfiled, "", ""},
		{"deny expired", []Override{deny("filed.cn", ScopeDomain)}, "filed.cn", exp.Add(time.Second), Pass, ReasonFiled, "", ""},
		{"expired deny lets allow through", []Override{deny("unfiled.cn", ScopeDomain), func() Override { o := allow("unfiled.cn", ScopeDomain); o.Expires = exp.Add(time.Hour); return o }()}, "unfiled.cn", exp, Pass, ReasonOverrideAllow, "a-unfiled.cn-domain", ""},
		{"permanent deny", []Override{{ID: "perm", Host: "filed.cn", Scope: ScopeDomain, Action: ActionDeny}}, "filed.cn", t0.AddDate(10, 0, 0), Block, ReasonOverrideDeny, "perm", ""},
		{"unicode override", []Override{allow("新.中国", ScopeDomain)}, "www.新.中国", t0, Pass, ReasonOverrideAllow, "a-新.中国-domain", ""},
		{"override of another domain", []Override{allow("other.cn", ScopeDomain)}, "unfiled.cn", t0, Block, ReasonUnfiled, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := mustSnapshot(t, tableRecords(), tt.ovs)
			d := Decide(tt.host, snap, tt.now, Policy{})
			if d.Verdict != tt.verdict || d.Reason != tt.reason {
				t.Errorf("Decide(%q) = %s %s, want %s %s\n%s", tt.host, d.Verdict, d.Reason, tt.verdict, tt.reason, d.Explain())
			}
			var gotOv, gotIg string
			if d.Override != nil {
				gotOv = d.Override.ID
			}
			if d.Ignored != nil {
				gotIg = d.Ignored.ID
			}
			if gotOv != tt.override {
				t.Errorf("Override: got %q, want %q", gotOv, tt.override)
			}
			if gotIg != tt.ignored {
				t.Errorf("Ignored: got %q, want %q", gotIg, tt.ignored)
			}
		})
	}
}

func TestDecideValidUntil(t *testing.T) {
	e1, e2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	ovs := []Override{
		{ID: "x", Host: "www.unfiled.cn", Scope: ScopeExact, Action: ActionAllow, Expires: e2},
		{ID: "y", Host: "unfiled.cn", Scope: ScopeDomain, Action: ActionAllow, Expires: e1},
		{ID: "z", Host: "rectifying.cn", Scope: ScopeDomain, Action: ActionDeny, Expires: e1},
	}
	snap := mustSnapshot(t, tableRecords(), ovs)
	tests := []struct {
		host string
		now  time.Time
		want time.Time
	}{
		{"www.unfiled.cn", t0, e1},          // the domain allow expires first
		{"www.unfiled.cn", e1, e2},          // then the exact one
		{"www.unfiled.cn", e2, time.Time{}}, // then unfiled for good
		{"rectifying.cn", t0, e1},           // the deny
		{"rectifying.cn", e1, deadline},     // then the deadline
		{"filed.cn", t0, time.Time{}},
	}
	for _, tt := range tests {
		d := Decide(tt.host, snap, tt.now, Policy{})
		if !d.ValidUntil.Equal(tt.want) {
			t.Errorf("Decide(%q) at %v: ValidUntil got %v, want %v", tt.host, tt.now, d.ValidUntil, tt.want)
		}
	}
}

func TestExplain(t *testing.T) {
	ovs := []Override{{ID: "a", Host: "blacklisted.cn", Scope: ScopeDomain, Action: ActionAllow, Expires: t0.Add(time.Hour), Ticket: "T-42"}}
	snap := mustSnapshot(t, tableRecords(), ovs)
	tests := []struct {
		host string
		want []string
	}{
		{"www.filed.cn", []string{"www.filed.cn", "domain:     filed.cn", "京ICP备10206937号-1", "verdict:    pass (filed)"}},
		{"blacklisted.cn", []string{"ignored:", "T-42", "verdict:    block (blacklisted)"}},
		{"com.cn", []string{"public suffix", "block (invalid_host)"}},
		{"", []string{"(no name)", "ip_access"}},
		{"unfiled-demo.io", []string{"record:     none", "MIIT"}},
	}
	for _, tt := range tests {
		d := Decide(tt.host, snap, t0, Policy{})
		got := d.Explain()
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("Explain(%q): got %q, want it to contain %q", tt.host, got, w)
			}
		}
	}
}
