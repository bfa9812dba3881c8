package admin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/icpgate/icpgate/registry"
)

// fuzzSeeds are create and update bodies from the API tests.
var fuzzSeeds = []string{
	`{"host":"unfiled.cn","action":"allow","reason":"接入备案办理中","ticket":"SR-1"}`,
	`{"host":"例子.中国","scope":"domain","action":"allow","reason":"r","ticket":"T","ttl":"45d","expires":"","confirm":false}`,
	`{"host":"www.cancelled.cn","action":"allow","reason":"r","ticket":"T","confirm":true}`,
	`{"host":"blacklisted.cn","action":"allow","reason":"r","ticket":"T"}`,
	`{"host":"filed.cn","action":"deny","reason":"phishing","expires":"2027-01-01T00:00:00+08:00"}`,
	`{"host":"x.github.io","scope":"exact","action":"allow","reason":"r","ticket":"T","ttl":"720h30m"}`,
	`{"host":"*.a.cn","action":"allow"}`,
	`{"host":"1.2.3.4","action":"deny","ttl":"-1h"}`,
	`{"host":"com.cn","action":"allow","reason":"a\u0007","ticket":""}`,
	`{"ttl":"60d","reason":"extended","ticket":"SR-2"}`,
	`{"Host":"a.cn","host":"a.cn","host":"b.cn"}`,
	`{"reason":"see icpg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
	`[]`, `null`, `{}`, `{"host":"a.cn"}{}`, `{"host":`,
}

// FuzzOverrideRequest: any body is either a valid override the registry
// accepts, within the policy, or an error naming what is wrong; never a
// panic. The same body as an update of a stored override, and as audit
// input, keeps the same promises.
func FuzzOverrideRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	snap, err := registry.LoadSnapshot("testdata/api_registry.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	p := &overridePolicy{now: now, defaultAllow: DefaultAllowTTL, maxAllow: DefaultMaxAllowTTL, maxDeny: DefaultMaxDenyTTL, snap: snap}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := parseCreate(body)
		if e == nil {
			var o registry.Override
			o, e = p.validateCreate(req)
			if e == nil {
				checkValid(t, p, o, req.Confirm)
			}
		}
		if e != nil && (e.Status < 400 || e.Code == "" || e.Message == "") {
			t.Fatalf("error without status, code or message: %+v", e)
		}

		for _, stored := range []registry.Override{
			{ID: "1", Host: "unfiled.cn", Scope: registry.ScopeDomain, Action: registry.ActionAllow, Expires: now.Add(time.Hour), Reason: "r", Ticket: "T", Who: "w", Created: now},
			{ID: "2", Host: "www.filed.cn", Scope: registry.ScopeExact, Action: registry.ActionDeny, Expires: now.Add(time.Hour), Reason: "r", Who: "w", Created: now},
		} {
			if upd, e := parseUpdate(body); e == nil {
				o := stored
				if e := p.applyUpdate(&o, upd); e == nil {
					checkValid(t, p, o, true)
					if o.Host != stored.Host || o.Scope != stored.Scope || o.Action != stored.Action {
						t.Fatalf("update changed what cannot change: %+v -> %+v", stored, o)
					}
				}
			}
		}

		in, _ := auditInput(body)
		if len(in) > 0 && !json.Valid(in) {
			t.Fatalf("audit input is not JSON: %q", in)
		}
		if tokenPattern.Match(in) {
			t.Fatalf("audit input holds a token: %q", in)
		}
		if len(in) > 6*auditInputMax+2 {
			t.Fatalf("audit input of %d bytes", len(in))
		}
	})
}

// checkValid checks an override validation let through.
func checkValid(t *testing.T, p *overridePolicy, o registry.Override, confirmed bool) {
	t.Helper()
	if err := (&registry.Builder{}).AddOverride(o); err != nil {
		t.Fatalf("validated override refused by the registry: %v (%+v)", err, o)
	}
	if n, kind, err := registry.Normalize(o.Host); err != nil || kind != registry.HostName || n != o.Host {
		t.Fatalf("host %q is not normalised", o.Host)
	}
	dom, err := registry.RegistrableDomain(o.Host)
	if err != nil {
		t.Fatalf("host %q: %v", o.Host, err)
	}
	limit := p.maxAllow
	if o.Action == registry.ActionDeny {
		limit = p.maxDeny
	}
	if !o.Expires.After(p.now) || o.Expires.Sub(p.now) > limit {
		t.Fatalf("expires %v outside (now, now+%v]", o.Expires, limit)
	}
	for name, v := range map[string]string{"reason": o.Reason, "ticket": o.Ticket} {
		if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxReasonLen || strings.IndexFunc(v, unicode.IsControl) >= 0 || tokenPattern.MatchString(v) {
			t.Fatalf("%s %q let through", name, v)
		}
	}
	if o.Reason == "" || (o.Action == registry.ActionAllow && o.Ticket == "") {
		t.Fatalf("missing reason or ticket: %+v", o)
	}
	if o.Action == registry.ActionAllow {
		if rec := p.snap.Lookup(dom); rec != nil {
			switch {
			case rec.State == registry.StateBlacklisted:
				t.Fatalf("allow of blacklisted %s let through", dom)
			case (rec.State == registry.StateCancelled || rec.State == registry.StateFilingPending) && !confirmed:
				t.Fatalf("unconfirmed allow of %s %s let through", rec.State, dom)
			}
		}
	}
}
