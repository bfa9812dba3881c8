package admin_test

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/unfiled"
	"github.com/icpgate/icpgate/internal/blockid"
	"github.com/icpgate/icpgate/registry"
)

// TestRequestID answers block request IDs: time in the console's zone,
// node, reason with its meaning, the host verified or found among the
// unfiled report's domains.
func TestRequestID(t *testing.T) {
	var rep *unfiled.Report
	e := newEnv(t, func(c *admin.Config) {
		rep = unfiled.New(unfiled.Options{Now: c.Now})
		c.Report = rep
		c.Node = "gw-1"
	})
	dst := netip.MustParseAddrPort("203.0.113.7:443")
	rep.Observe("unfiled", "many.cn", dst)
	rep.Observe("unfiled", "other.cn", dst)
	e.clock.Add(time.Minute)
	rep.Observe("unfiled", "many.cn", dst)

	at := t0.Add(30 * time.Second)
	mk := func(node, reason, host, domain string) string {
		return blockid.New(at, blockid.NodeTag(node), reason, host, domain).String()
	}
	get := func(id, host string) (resp, admin.RequestAnswer) {
		t.Helper()
		path := "/v1/requests/" + url.PathEscape(id)
		if host != "" {
			path += "?host=" + url.QueryEscape(host)
		}
		r := e.do(req{method: "GET", path: path, token: e.secret["viewer"]})
		var a admin.RequestAnswer
		if r.status == 200 {
			if err := json.Unmarshal([]byte(r.body), &a); err != nil {
				t.Fatalf("%s: %v", r.body, err)
			}
		}
		return r, a
	}

	t.Run("this node, host verified", func(t *testing.T) {
		id := mk("gw-1", "unfiled", "www.many.cn", "many.cn")
		r, a := get(strings.ToLower(id), "WWW.many.cn")
		if r.status != 200 {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if a.ID != id {
			t.Errorf("id: got %q, want %q", a.ID, id)
		}
		if !a.Time.Equal(at) || !strings.Contains(r.body, `"time": "2026-11-27T13:00:30+08:00"`) {
			t.Errorf("time: got %v in %s, want %v at +08:00", a.Time, r.body, at)
		}
		if a.Node == nil || !a.Node.ThisNode || a.Node.Name != "gw-1" {
			t.Errorf("node: got %+v, want gw-1", a.Node)
		}
		if a.Reason == nil || a.Reason.Code != "unfiled" || !strings.Contains(a.Reason.Meaning, "no record") {
			t.Errorf("reason: got %+v, want unfiled with its meaning", a.Reason)
		}
		if a.Host.Status != admin.HostVerified || a.Host.Host != "www.many.cn" || a.Host.Domain != "many.cn" {
			t.Errorf("host: got %+v, want www.many.cn verified", a.Host)
		}
	})
	t.Run("the www twin the visitor did not say", func(t *testing.T) {
		_, a := get(mk("gw-1", "unfiled", "www.many.cn", "many.cn"), "many.cn")
		if a.Host.Status != admin.HostVerified || a.Host.Host != "www.many.cn" {
			t.Errorf("host: got %+v, want www.many.cn verified", a.Host)
		}
	})
	t.Run("another name under the domain", func(t *testing.T) {
		_, a := get(mk("gw-1", "unfiled", "shop.many.cn", "many.cn"), "www.many.cn")
		if a.Host.Status != admin.HostSameDomain || a.Host.Domain != "many.cn" {
			t.Errorf("host: got %+v, want same_domain many.cn", a.Host)
		}
	})
	t.Run("another host", func(t *testing.T) {
		_, a := get(mk("gw-1", "unfiled", "www.many.cn", "many.cn"), "other.cn")
		if a.Host.Status != admin.HostMismatch || !strings.Contains(strings.Join(a.Summary, "\n"), "Ask the visitor") {
			t.Errorf("host: got %+v %q, want mismatch", a.Host, a.Summary)
		}
	})
	t.Run("candidates from the report", func(t *testing.T) {
		_, a := get(mk("gw-1", "unfiled", "www.many.cn", "many.cn"), "")
		if a.Host.Status != admin.HostCandidates || len(a.Host.Candidates) != 1 ||
			a.Host.Candidates[0].Domain != "many.cn" || a.Host.Candidates[0].Host != "www.many.cn" {
			t.Errorf("host: got %+v, want the candidate www.many.cn", a.Host)
		}
	})
	t.Run("not narrowed", func(t *testing.T) {
		// other.cn was last blocked before the ID's time.
		_, a := get(mk("gw-1", "unfiled", "other.cn", "other.cn"), "")
		if a.Host.Status != admin.HostUnknown || !strings.Contains(strings.Join(a.Summary, "\n"), "Ask the visitor which address they opened") {
			t.Errorf("host: got %+v %q, want unknown", a.Host, a.Summary)
		}
	})
	t.Run("another node", func(t *testing.T) {
		_, a := get(mk("gw-2", "cancelled", "www.many.cn", "many.cn"), "")
		tag := strings.ToUpper(a.Node.Tag)
		if a.Node.ThisNode || a.Node.Name != "" || len(tag) != 4 || !strings.Contains(strings.Join(a.Summary, "\n"), "node tag "+tag+", not this node") {
			t.Errorf("node: got %+v %q, want tag only", a.Node, a.Summary)
		}
		if a.Reason.Code != "cancelled" {
			t.Errorf("reason: got %+v, want cancelled", a.Reason)
		}
	})
	t.Run("old 16-hex ID", func(t *testing.T) {
		r, a := get("0123456789abcdef", "")
		if r.status != 200 || !a.Legacy || a.Time != nil || !strings.Contains(strings.Join(a.Summary, " "), "carries no details") {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	good := mk("gw-1", "unfiled", "www.many.cn", "many.cn")
	for _, tc := range []struct{ id, problem, says string }{
		{good[:10], "id_length", "this one 9"},
		{"U" + good[1:], "id_char", `'U'`},
		{strings.Replace(good, good[:1], map[bool]string{true: "1", false: "0"}[good[0] == '0'], 1), "id_check", "mistyped"},
	} {
		t.Run("malformed "+tc.problem, func(t *testing.T) {
			r, _ := get(tc.id, "")
			m := wantError(t, r, 400, "invalid", "id")
			if m["problem"] != tc.problem || !strings.Contains(m["message"].(string), tc.says) {
				t.Errorf("got %s, want problem %s saying %s", r.body, tc.problem, tc.says)
			}
		})
	}
	t.Run("unknown parameter", func(t *testing.T) {
		r := e.do(req{method: "GET", path: "/v1/requests/" + good + "?hots=x", token: e.secret["viewer"]})
		wantError(t, r, 400, "invalid", "hots")
	})
	t.Run("needs a token", func(t *testing.T) {
		r := e.do(req{method: "GET", path: "/v1/requests/" + good})
		wantError(t, r, 401, "unauthenticated", "")
	})
}

// TestRequestIDReasons: every reason code the registry can give has a
// reason tag, so a block ID never says "unknown" for one.
func TestRequestIDReasons(t *testing.T) {
	for _, r := range registry.Reasons() {
		if blockid.ReasonTag(string(r)) == 0 {
			t.Errorf("reason %s has no tag in blockid.Reasons", r)
		}
	}
}
