package admin_test

import (
	"testing"

	"github.com/icpgate/icpgate/admin"
)

// TestSessionTimeZone: the session tells the console which zone to show
// times in: Asia/Shanghai unless configured.
func TestSessionTimeZone(t *testing.T) {
	for _, tc := range []struct{ set, want string }{{"", "Asia/Shanghai"}, {"Asia/Urumqi", "Asia/Urumqi"}} {
		e := newEnv(t, func(c *admin.Config) { c.TimeZone = tc.set })
		ck, _ := e.login(e.secret["viewer"])
		r := e.do(req{method: "GET", path: "/v1/session", cookie: ck})
		if m := r.obj(t); r.status != 200 || m["time_zone"] != tc.want {
			t.Errorf("TimeZone %q: GET /v1/session got %d %v, want time_zone %q", tc.set, r.status, m, tc.want)
		}
	}
}
