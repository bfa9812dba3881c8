package adminstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/registry"
)

// The same behaviour is asked of both backends: testBackend and
// testTokenStore run against Bolt (bolt_test.go, tokenfile_test.go) and
// Postgres (postgres_test.go).

// t0 is the time the conformance tests act at; nanoseconds on purpose
// (stored to the microsecond).
var t0 = time.Date(2026, 11, 27, 5, 0, 0, 123456789, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d).Truncate(time.Microsecond) }

func sameOverride(a, b admin.Override) bool {
	return a.Override.Equal(&b.Override) && a.Version == b.Version && a.Updated.Equal(b.Updated)
}

func describe(o admin.Override) string {
	b, _ := json.Marshal(o.JSON(t0))
	return string(b)
}

func ids(os []admin.Override) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.Host)
	}
	return out
}

func auditCount(t *testing.T, b admin.Backend) int {
	t.Helper()
	es, err := b.ListAudit(context.Background(), admin.AuditFilter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func ptr[T any](v T) *T { return &v }

// testBackend checks an empty admin.Backend against the contract of
// admin/backend.go.
func testBackend(t *testing.T, b admin.Backend) {
	ctx := context.Background()
	// Overrides made below, by host.
	made := map[string]admin.Override{}
	create := func(o registry.Override, who string, when time.Time) admin.Override {
		t.Helper()
		got, err := b.CreateOverride(ctx, o, admin.AuditEntry{At: when, Who: who, Role: "support",
			Remote: "127.0.0.1:5555", Action: "override.create", Input: json.RawMessage(`{"host":"` + o.Host + `"}`)})
		if err != nil {
			t.Fatalf("CreateOverride(%s): %v", o.Host, err)
		}
		made[got.Host] = got
		return got
	}

	t.Run("create", func(t *testing.T) {
		o := create(registry.Override{Host: "例子.中国", Scope: registry.ScopeDomain, Action: registry.ActionAllow,
			Expires: t0.Add(720 * time.Hour), Reason: "接入备案办理中", Ticket: "SR-2026-1182", Who: "li.wei",
			Created: t0.Add(-time.Hour)}, "li.wei", t0)
		if o.Host != "xn--fsqu00a.xn--fiqs8s" {
			t.Errorf("host: got %q, want the A-label", o.Host)
		}
		if o.ID == "" || o.Version != 1 || !o.Created.Equal(at(0)) || !o.Updated.Equal(at(0)) {
			t.Errorf("got id %q version %d created %v updated %v, want an id, version 1, created = updated = %v",
				o.ID, o.Version, o.Created, o.Updated, at(0))
		}
		if !o.Expires.Equal(at(720 * time.Hour)) {
			t.Errorf("expires: got %v, want %v", o.Expires, at(720*time.Hour))
		}
		got, err := b.GetOverride(ctx, o.ID)
		if err != nil || !sameOverride(got, o) {
			t.Fatalf("GetOverride: got %s, %v, want %s", describe(got), err, describe(o))
		}
		// The audit entry, written with it.
		es, err := b.ListAudit(ctx, admin.AuditFilter{Limit: 1})
		if err != nil || len(es) != 1 {
			t.Fatalf("ListAudit: got %d entries, %v", len(es), err)
		}
		e := es[0]
		if e.ID <= 0 || !e.At.Equal(at(0)) || e.Who != "li.wei" || e.Role != "support" || e.Remote != "127.0.0.1:5555" ||
			e.Action != "override.create" || e.Target != o.ID || e.Outcome != "ok" || e.Before != nil {
			t.Errorf("audit entry: got %+v", e)
		}
		var after admin.OverrideJSON
		if err := json.Unmarshal(e.After, &after); err != nil {
			t.Fatalf("audit after %s: %v", e.After, err)
		}
		want := o.JSON(at(0))
		if after.ID != want.ID || after.Host != want.Host || after.Version != 1 || !after.Active ||
			after.Reason != want.Reason || after.Expires == nil || !after.Expires.Equal(*want.Expires) {
			t.Errorf("audit after: got %+v, want %+v", after, want)
		}
		var in map[string]string
		if err := json.Unmarshal(e.Input, &in); err != nil || in["host"] != "例子.中国" {
			t.Errorf("audit input: got %s (%v), want the request as sent", e.Input, err)
		}
	})

	t.Run("create invalid", func(t *testing.T) {
		before := auditCount(t, b)
		for _, o := range []registry.Override{
			{Host: "example.cn", Scope: registry.ScopeDomain, Action: registry.ActionAllow, Reason: "r", Ticket: "t"}, // allow without expiry
			{Host: "com.cn", Scope: registry.ScopeDomain, Action: registry.ActionDeny, Reason: "r"},                   // public suffix
			{Host: "www.example.cn", Scope: registry.ScopeDomain, Action: registry.ActionDeny, Reason: "r"},           // domain scope on a subdomain
			{Host: "1.2.3.4", Scope: registry.ScopeExact, Action: registry.ActionDeny, Reason: "r"},                   // IP literal
			{Host: "example.cn", Scope: registry.ScopeExact, Action: registry.ActionDeny, Reason: "a\x00b"},           // NUL
			{Host: "example.cn", Scope: registry.ScopeExact, Reason: "r"},                                             // no action
		} {
			_, err := b.CreateOverride(ctx, o, admin.AuditEntry{Who: "x", Action: "override.create"})
			if !errors.Is(err, registry.ErrInvalidOverride) {
				t.Errorf("CreateOverride(%+v): got %v, want ErrInvalidOverride", o, err)
			}
		}
		if n := auditCount(t, b); n != before {
			t.Errorf("audit entries after refused creates: got %d, want %d (a failed change is not audited as done)", n, before)
		}
	})

	// More overrides for the filters: an exact deny without expiry, an
	// expired allow, a deny that expires later.
	create(registry.Override{Host: "www.example.cn", Scope: registry.ScopeExact, Action: registry.ActionDeny,
		Reason: "phishing", Who: "ops"}, "ops", at(time.Minute))
	create(registry.Override{Host: "old.cn", Scope: registry.ScopeDomain, Action: registry.ActionAllow,
		Expires: t0.Add(-time.Hour), Reason: "expired", Ticket: "SR-1", Who: "li.wei"}, "li.wei", at(2*time.Minute))
	create(registry.Override{Host: "bad.example.com.cn", Scope: registry.ScopeExact, Action: registry.ActionDeny,
		Expires: t0.Add(48 * time.Hour), Reason: "abuse", Who: "ops"}, "ops", at(3*time.Minute))

	t.Run("list", func(t *testing.T) {
		all := []string{"xn--fsqu00a.xn--fiqs8s", "www.example.cn", "old.cn", "bad.example.com.cn"}
		for _, tc := range []struct {
			name string
			f    admin.OverrideFilter
			want []string
		}{
			{"all", admin.OverrideFilter{}, all},
			{"allow", admin.OverrideFilter{Action: registry.ActionAllow}, []string{all[0], all[2]}},
			{"deny", admin.OverrideFilter{Action: registry.ActionDeny}, []string{all[1], all[3]}},
			{"query", admin.OverrideFilter{Query: "EXAMPLE"}, []string{all[1], all[3]}},
			{"query no match", admin.OverrideFilter{Query: "nothing"}, nil},
			{"active", admin.OverrideFilter{Active: ptr(true), Now: t0}, []string{all[0], all[1], all[3]}},
			{"expired", admin.OverrideFilter{Active: ptr(false), Now: t0}, []string{all[2]}},
			{"expired later", admin.OverrideFilter{Active: ptr(false), Now: t0.Add(49 * time.Hour)}, []string{all[2], all[3]}},
			{"deny active", admin.OverrideFilter{Action: registry.ActionDeny, Active: ptr(true), Now: t0.Add(49 * time.Hour)}, []string{all[1]}},
			{"limit", admin.OverrideFilter{Limit: 2}, all[:2]},
			{"after", admin.OverrideFilter{After: mustInt(t, made[all[1]].ID)}, all[2:]},
		} {
			got, err := b.ListOverrides(ctx, tc.f)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !slices.Equal(ids(got), tc.want) {
				t.Errorf("%s: got %q, want %q", tc.name, ids(got), tc.want)
			}
		}
		// Page through one at a time, as the API's "next" does.
		var paged []string
		var after int64
		for range 10 {
			got, err := b.ListOverrides(ctx, admin.OverrideFilter{After: after, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				break
			}
			if !sameOverride(got[0], made[got[0].Host]) {
				t.Errorf("listed %s, created %s", describe(got[0]), describe(made[got[0].Host]))
			}
			paged = append(paged, got[0].Host)
			after = mustInt(t, got[0].ID)
		}
		if !slices.Equal(paged, all) {
			t.Errorf("paged: got %q, want %q", paged, all)
		}
		rs, err := b.Overrides(ctx)
		if err != nil || len(rs) != len(all) {
			t.Fatalf("Overrides: got %d, %v, want %d", len(rs), err, len(all))
		}
	})

	t.Run("update", func(t *testing.T) {
		o := made["xn--fsqu00a.xn--fiqs8s"]
		n := auditCount(t, b)
		// Wrong version: a conflict, nothing changed, nothing audited.
		_, err := b.UpdateOverride(ctx, o.ID, 7, func(r *registry.Override) error { r.Reason = "x"; return nil },
			admin.AuditEntry{Who: "li.wei", Action: "override.update"})
		if !errors.Is(err, admin.ErrConflict) {
			t.Fatalf("update with version 7: got %v, want ErrConflict", err)
		}
		// An error from the change aborts it.
		errNo := errors.New("no thanks")
		if _, err := b.UpdateOverride(ctx, o.ID, 1, func(*registry.Override) error { return errNo },
			admin.AuditEntry{Who: "li.wei", Action: "override.update"}); !errors.Is(err, errNo) {
			t.Fatalf("update whose change fails: got %v, want its error", err)
		}
		// A change the registry would refuse.
		if _, err := b.UpdateOverride(ctx, o.ID, 1, func(r *registry.Override) error { r.Expires = time.Time{}; return nil },
			admin.AuditEntry{Who: "li.wei", Action: "override.update"}); !errors.Is(err, registry.ErrInvalidOverride) {
			t.Fatalf("update removing an allow's expiry: got %v, want ErrInvalidOverride", err)
		}
		if _, err := b.UpdateOverride(ctx, "999999", 1, func(*registry.Override) error { return nil },
			admin.AuditEntry{Who: "li.wei", Action: "override.update"}); !errors.Is(err, admin.ErrNotFound) {
			t.Fatalf("update of a missing override: got %v, want ErrNotFound", err)
		}
		if _, err := b.UpdateOverride(ctx, "x1", 1, nil, admin.AuditEntry{Who: "li.wei", Action: "override.update"}); !errors.Is(err, admin.ErrNotFound) {
			t.Fatalf("update of id x1: got %v, want ErrNotFound", err)
		}
		if got := auditCount(t, b); got != n {
			t.Fatalf("audit entries after failed updates: got %d, want %d", got, n)
		}
		if cur, _ := b.GetOverride(ctx, o.ID); !sameOverride(cur, o) {
			t.Fatalf("after failed updates: got %s, want unchanged %s", describe(cur), describe(o))
		}

		// The right version.
		u, err := b.UpdateOverride(ctx, o.ID, 1, func(r *registry.Override) error {
			r.Expires = t0.Add(1000 * time.Hour)
			r.Reason = "extended"
			r.ID, r.Who, r.Created = "666", "mallory", time.Time{} // kept whatever the change does
			return nil
		}, admin.AuditEntry{At: t0.Add(time.Hour), Who: "wang.fang", Action: "override.update"})
		if err != nil {
			t.Fatal(err)
		}
		if u.Version != 2 || !u.Updated.Equal(at(time.Hour)) || u.Reason != "extended" ||
			!u.Expires.Equal(at(1000*time.Hour)) || u.ID != o.ID || u.Who != o.Who || !u.Created.Equal(o.Created) {
			t.Fatalf("updated: got %s", describe(u))
		}
		if got, _ := b.GetOverride(ctx, o.ID); !sameOverride(got, u) {
			t.Fatalf("GetOverride after update: got %s, want %s", describe(got), describe(u))
		}
		es, err := b.ListAudit(ctx, admin.AuditFilter{Limit: 1})
		if err != nil || len(es) != 1 {
			t.Fatal(err)
		}
		var before, after admin.OverrideJSON
		if json.Unmarshal(es[0].Before, &before) != nil || json.Unmarshal(es[0].After, &after) != nil {
			t.Fatalf("audit before/after: %s / %s", es[0].Before, es[0].After)
		}
		if es[0].Target != o.ID || before.Version != 1 || before.Reason != "接入备案办理中" || after.Version != 2 || after.Reason != "extended" {
			t.Errorf("audit of the update: got target %s before %+v after %+v", es[0].Target, before, after)
		}
		// The old version is now a conflict.
		if _, err := b.UpdateOverride(ctx, o.ID, 1, nil, admin.AuditEntry{Who: "x", Action: "override.update"}); !errors.Is(err, admin.ErrConflict) {
			t.Fatalf("update with the old version: got %v, want ErrConflict", err)
		}
		made[u.Host] = u
	})

	t.Run("concurrent updates", func(t *testing.T) {
		o := made["bad.example.com.cn"]
		const n = 4
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				_, errs[i] = b.UpdateOverride(ctx, o.ID, o.Version, func(r *registry.Override) error {
					r.Reason = fmt.Sprintf("writer %d", i)
					return nil
				}, admin.AuditEntry{Who: "ops", Action: "override.update"})
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, admin.ErrConflict):
				t.Errorf("concurrent update: got %v, want nil or ErrConflict", err)
			}
		}
		if ok != 1 {
			t.Fatalf("concurrent updates of one version: %d succeeded, want exactly 1", ok)
		}
		cur, err := b.GetOverride(ctx, o.ID)
		if err != nil || cur.Version != o.Version+1 {
			t.Fatalf("after concurrent updates: got version %d (%v), want %d", cur.Version, err, o.Version+1)
		}
		made[cur.Host] = cur
	})

	t.Run("delete", func(t *testing.T) {
		o := made["old.cn"]
		n := auditCount(t, b)
		if _, err := b.DeleteOverride(ctx, o.ID, 2, admin.AuditEntry{Who: "x", Action: "override.delete"}); !errors.Is(err, admin.ErrConflict) {
			t.Fatalf("delete with version 2: got %v, want ErrConflict", err)
		}
		if got := auditCount(t, b); got != n {
			t.Fatalf("audit entries after a failed delete: got %d, want %d", got, n)
		}
		d, err := b.DeleteOverride(ctx, o.ID, 1, admin.AuditEntry{Who: "li.wei", Action: "override.delete", At: t0.Add(2 * time.Hour)})
		if err != nil || !sameOverride(d, o) {
			t.Fatalf("delete: got %s, %v, want %s", describe(d), err, describe(o))
		}
		if _, err := b.GetOverride(ctx, o.ID); !errors.Is(err, admin.ErrNotFound) {
			t.Fatalf("GetOverride after delete: got %v, want ErrNotFound", err)
		}
		if _, err := b.DeleteOverride(ctx, o.ID, 1, admin.AuditEntry{Who: "x", Action: "override.delete"}); !errors.Is(err, admin.ErrNotFound) {
			t.Fatalf("second delete: got %v, want ErrNotFound", err)
		}
		es, _ := b.ListAudit(ctx, admin.AuditFilter{Limit: 1})
		if len(es) != 1 || es[0].Target != o.ID || es[0].After != nil || es[0].Before == nil || es[0].Action != "override.delete" {
			t.Fatalf("audit of the delete: got %+v", es)
		}
		// IDs are not reused.
		n2 := create(registry.Override{Host: "new.cn", Scope: registry.ScopeDomain, Action: registry.ActionDeny, Reason: "r", Who: "ops"}, "ops", at(3*time.Hour))
		if mustInt(t, n2.ID) <= mustInt(t, made["bad.example.com.cn"].ID) {
			t.Errorf("new ID %s not above the previous ones", n2.ID)
		}
		rs, err := b.Overrides(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var hosts []string
		for _, r := range rs {
			hosts = append(hosts, r.Host)
		}
		if want := []string{"xn--fsqu00a.xn--fiqs8s", "www.example.cn", "bad.example.com.cn", "new.cn"}; !slices.Equal(hosts, want) {
			t.Errorf("Overrides: got %q, want %q", hosts, want)
		}
	})

	t.Run("append audit", func(t *testing.T) {
		if err := b.AppendAudit(ctx, admin.AuditEntry{Who: "x", Action: "login", Outcome: "maybe"}); err == nil {
			t.Error("outcome maybe: got no error")
		}
		if err := b.AppendAudit(ctx, admin.AuditEntry{Who: "x", Outcome: "denied"}); err == nil {
			t.Error("no action: got no error")
		}
		if err := b.AppendAudit(ctx, admin.AuditEntry{Who: "x", Action: "login"}); err == nil {
			t.Error("no outcome on an entry without a change: got no error")
		}
		// A hostile attempt is recorded, made storable.
		err := b.AppendAudit(ctx, admin.AuditEntry{At: t0.Add(4 * time.Hour), Who: "", Remote: "192.0.2.1:4444",
			Action: "override.create", Target: "evil\x00\xff", Input: json.RawMessage("{\"host\":\xff\x00"),
			Outcome: "denied", Detail: "unauthenticated"})
		if err != nil {
			t.Fatal(err)
		}
		es, _ := b.ListAudit(ctx, admin.AuditFilter{Limit: 1})
		var in string
		if len(es) != 1 || es[0].Outcome != "denied" || es[0].Target != "evil\uFFFD\uFFFD" || json.Unmarshal(es[0].Input, &in) != nil ||
			!strings.HasPrefix(in, `{"host":`) || es[0].Before != nil || es[0].After != nil || !es[0].At.Equal(at(4*time.Hour)) {
			t.Fatalf("hostile attempt: got %+v (input %q)", es, in)
		}
		// A valid body is kept byte for byte, duplicate keys and all.
		raw := `{"host": "a.cn", "action":"allow", "action":"deny"}`
		if err := b.AppendAudit(ctx, admin.AuditEntry{Who: "li.wei", Action: "override.create", Input: json.RawMessage(raw),
			Normalized: "a.cn", Outcome: "rejected", Detail: "ambiguous", At: t0.Add(5 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		es, _ = b.ListAudit(ctx, admin.AuditFilter{Limit: 1})
		if len(es) != 1 || string(es[0].Input) != raw || es[0].Detail != "ambiguous" {
			t.Fatalf("input: got %+v, want %s verbatim", es, raw)
		}
	})

	t.Run("list audit", func(t *testing.T) {
		all, err := b.ListAudit(ctx, admin.AuditFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID {
				t.Fatalf("not newest first: id %d after %d", all[i].ID, all[i-1].ID)
			}
		}
		// 4 creates + 1 create, 1 + 1 updates, 1 delete, 2 appended.
		if len(all) != 10 {
			t.Fatalf("entries: got %d, want 10", len(all))
		}
		def, err := b.ListAudit(ctx, admin.AuditFilter{})
		if err != nil || len(def) != 10 {
			t.Fatalf("default limit: got %d, %v", len(def), err)
		}
		count := func(f admin.AuditFilter, keep func(admin.AuditEntry) bool) {
			t.Helper()
			var want []int64
			for _, e := range all {
				if keep(e) {
					want = append(want, e.ID)
				}
			}
			got, err := b.ListAudit(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []int64
			for _, e := range got {
				gotIDs = append(gotIDs, e.ID)
			}
			if !slices.Equal(gotIDs, want) || len(want) == 0 {
				t.Errorf("ListAudit(%+v): got %v, want %v (non-empty)", f, gotIDs, want)
			}
		}
		count(admin.AuditFilter{Who: "ops"}, func(e admin.AuditEntry) bool { return e.Who == "ops" })
		count(admin.AuditFilter{Action: "override.update"}, func(e admin.AuditEntry) bool { return e.Action == "override.update" })
		target := made["xn--fsqu00a.xn--fiqs8s"].ID
		count(admin.AuditFilter{Target: target}, func(e admin.AuditEntry) bool { return e.Target == target })
		// A search by host finds entries whose target is an ID.
		count(admin.AuditFilter{Target: "a.cn"}, func(e admin.AuditEntry) bool { return e.Target == "a.cn" || e.Normalized == "a.cn" })
		count(admin.AuditFilter{Who: "ops", Action: "override.create"}, func(e admin.AuditEntry) bool {
			return e.Who == "ops" && e.Action == "override.create"
		})
		since, until := at(2*time.Minute), at(2*time.Hour)
		count(admin.AuditFilter{Since: since}, func(e admin.AuditEntry) bool { return !e.At.Before(since) })
		count(admin.AuditFilter{Until: until}, func(e admin.AuditEntry) bool { return e.At.Before(until) })
		count(admin.AuditFilter{Since: since, Until: until}, func(e admin.AuditEntry) bool {
			return !e.At.Before(since) && e.At.Before(until)
		})
		count(admin.AuditFilter{Before: all[3].ID}, func(e admin.AuditEntry) bool { return e.ID < all[3].ID })
		count(admin.AuditFilter{Before: all[0].ID + 100}, func(admin.AuditEntry) bool { return true })
		if got, _ := b.ListAudit(ctx, admin.AuditFilter{Before: all[len(all)-1].ID}); len(got) != 0 {
			t.Errorf("before the oldest: got %d entries, want none", len(got))
		}
		// Page through three at a time.
		var paged []int64
		var before int64
		for range 10 {
			got, err := b.ListAudit(ctx, admin.AuditFilter{Before: before, Limit: 3})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				break
			}
			for _, e := range got {
				paged = append(paged, e.ID)
			}
			before = got[len(got)-1].ID
		}
		if len(paged) != len(all) || paged[0] != all[0].ID || paged[len(paged)-1] != all[len(all)-1].ID {
			t.Errorf("paged: got %v", paged)
		}
	})
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("id %q: %v", s, err)
	}
	return n
}

// newToken returns a fresh token and its secret.
func newToken(t *testing.T, name string, role admin.Role, created time.Time) (string, admin.Token) {
	t.Helper()
	secret, tok, err := admin.NewToken(name, role, created)
	if err != nil {
		t.Fatal(err)
	}
	return secret, tok
}

// testTokenStore checks an empty admin.TokenStore against the contract of
// admin/backend.go.
func testTokenStore(t *testing.T, s admin.TokenStore) {
	ctx := context.Background()
	secret, li := newToken(t, "li.wei", admin.RoleSupport, t0)
	if err := s.Create(ctx, li); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(ctx, admin.HashToken(secret))
	if err != nil {
		t.Fatal(err)
	}
	li.Created = at(0)
	if got != li {
		t.Fatalf("Lookup: got %+v, want %+v", got, li)
	}
	if _, err := s.Lookup(ctx, admin.HashToken(secret+"x")); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("Lookup of an unknown secret: got %v, want ErrNotFound", err)
	}

	_, again := newToken(t, "li.wei", admin.RoleAdmin, t0)
	if err := s.Create(ctx, again); !errors.Is(err, adminstore.ErrNameTaken) {
		t.Fatalf("second live li.wei: got %v, want ErrNameTaken", err)
	}
	dupID := again
	dupID.Name, dupID.ID = "other", li.ID
	if err := s.Create(ctx, dupID); err == nil {
		t.Fatal("a token with an existing ID: got no error")
	}
	dupHash := again
	dupHash.Name, dupHash.Hash = "other", li.Hash
	if err := s.Create(ctx, dupHash); err == nil {
		t.Fatal("a token with an existing hash: got no error")
	}
	for _, bad := range []admin.Token{
		{ID: "abcd1234", Name: "li wei", Role: admin.RoleViewer, Hash: [32]byte{1}},
		{ID: "abcd1234", Name: "", Role: admin.RoleViewer, Hash: [32]byte{1}},
		{ID: "abcd1234", Name: strings.Repeat("a", 65), Role: admin.RoleViewer, Hash: [32]byte{1}},
		{ID: "abcd1234", Name: "名字", Role: admin.RoleViewer, Hash: [32]byte{1}},
		{ID: "abcd1234", Name: "x", Role: 0, Hash: [32]byte{1}},
		{ID: "abcd1234", Name: "x", Role: admin.RoleViewer},
		{ID: "", Name: "x", Role: admin.RoleViewer, Hash: [32]byte{1}},
		{ID: "a/b", Name: "x", Role: admin.RoleViewer, Hash: [32]byte{1}},
	} {
		if err := s.Create(ctx, bad); err == nil || errors.Is(err, adminstore.ErrNameTaken) {
			t.Errorf("Create(%+v): got %v, want a validation error", bad, err)
		}
	}
	okName := strings.Repeat("a", 64)
	_, long := newToken(t, okName, admin.RoleViewer, t0.Add(time.Minute))
	if err := s.Create(ctx, long); err != nil {
		t.Fatalf("64-character name: %v", err)
	}
	wangSecret, wang := newToken(t, "wang.fang@example.cn", admin.RoleAdmin, t0.Add(-time.Minute))
	if err := s.Create(ctx, wang); err != nil {
		t.Fatal(err)
	}

	ts, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tk := range ts {
		names = append(names, tk.Name)
	}
	if want := []string{"wang.fang@example.cn", "li.wei", okName}; !slices.Equal(names, want) {
		t.Fatalf("List: got %q, want oldest first %q", names, want)
	}

	// Revoke by name; the name is free again.
	if err := s.Revoke(ctx, "li.wei"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, admin.HashToken(secret)); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("Lookup of a revoked token: got %v, want ErrNotFound", err)
	}
	if err := s.Revoke(ctx, "li.wei"); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("revoking again: got %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, again); err != nil {
		t.Fatalf("li.wei after revocation: %v", err)
	}
	// Revoke by ID.
	if err := s.Revoke(ctx, wang.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, admin.HashToken(wangSecret)); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("Lookup after revoking by ID: got %v, want ErrNotFound", err)
	}
	ts, _ = s.List(ctx)
	revoked := map[string]bool{}
	for _, tk := range ts {
		revoked[tk.ID] = tk.Revoked
	}
	if len(ts) != 4 || !revoked[li.ID] || !revoked[wang.ID] || revoked[again.ID] || revoked[long.ID] {
		t.Fatalf("List after revocations: got %+v", ts)
	}
	// A name that is another live token's ID is ambiguous.
	_, sneaky := newToken(t, again.ID, admin.RoleViewer, t0)
	if err := s.Create(ctx, sneaky); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, again.ID); err == nil || errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("revoking an ambiguous name: got %v, want a refusal", err)
	}
	if err := s.Revoke(ctx, "nobody"); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("revoking nobody: got %v, want ErrNotFound", err)
	}
}
