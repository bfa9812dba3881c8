package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/icpgate/icpgate/admin"
)

// TestAdminCLISearchAndRemoveByHost drives explain --filing-number and
// --subject, allow rm HOST and the audit table's ticket and reason against
// a gateway served in-process.
func TestAdminCLISearchAndRemoveByHost(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	path := fileModeConfig(t, dir, o)
	g, _ := startServe(t, path)
	api := "http://" + g.AdminAddr().String()
	support := newToken(t, path, "support")
	viewer := newToken(t, path, "viewer")
	with := func(args ...string) []string { return append(args, "--admin", api) }

	// Look-up by filing number (any width, with or without the site) and
	// by subject.
	for _, tt := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--filing-number", "京ICP备10206937号"}, exitOK, []string{"filed.cn", "京ICP备10206937号-1", "filed", "pass", "北京测试科技有限公司"}},
		{[]string{"--filing-number", "浙ＩＣＰ备２０２５０３４５６７号－２"}, exitOK, []string{"pending.cn", "浙ICP备2025034567号-2"}},
		{[]string{"--subject", "郑州测试"}, exitOK, []string{"cancelled.cn", "block", "cancelled"}},
		{[]string{"--subject", "没有这个主体"}, exitBlocked, []string{`no records with subject containing "没有这个主体"`}},
	} {
		code, out, errOut := cli(t, viewer, with(append([]string{"explain"}, tt.args...)...)...)
		if code != tt.code {
			t.Errorf("explain %q: exit %d, want %d; %s", tt.args, code, tt.code, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("explain %q: got %q, want %q", tt.args, out, w)
			}
		}
	}
	code, out, _ := cli(t, viewer, with("explain", "--json", "--filing-number", "京ICP备10206937号-1")...)
	var a admin.SearchAnswer
	if err := json.Unmarshal([]byte(out), &a); code != exitOK || err != nil || len(a.Records) != 1 || a.Records[0].Domain != "filed.cn" {
		t.Errorf("explain --json --filing-number: got %d %q %v", code, out, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", "--filing-number", "10206937"}, "filing_number"},
		{[]string{"explain", "--subject", "京"}, "at least 2"},
		{[]string{"explain", "filed.cn", "--subject", "北京"}, "not both"},
	} {
		if code, _, errOut := cli(t, viewer, with(tt.args...)...); code != exitError || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: got %d %q, want exit 2 mentioning %q", tt.args, code, errOut, tt.want)
		}
	}

	// allow rm HOST: refused while two active overrides match, listing
	// them; removes the one left.
	add := func(args ...string) admin.OverrideJSON {
		t.Helper()
		code, out, errOut := cli(t, support, with(append([]string{"allow", "add", "--json"}, args...)...)...)
		var o admin.OverrideJSON
		if err := json.Unmarshal([]byte(out), &o); code != exitOK || err != nil {
			t.Fatalf("allow add %q: %d %q %q", args, code, out, errOut)
		}
		return o
	}
	domain := add("unfiled.cn", "--ticket", "SR-11", "--reason", "接入备案初审通过")
	exact := add("unfiled.cn", "--scope", "exact", "--ticket", "SR-12", "--reason", "客户要求单独放行")
	code, _, errOut := cli(t, support, with("allow", "rm", "Unfiled.CN.")...)
	if code != exitError || !strings.Contains(errOut, "2 active allow overrides for unfiled.cn") ||
		!strings.Contains(errOut, domain.ID) || !strings.Contains(errOut, exact.ID) || !strings.Contains(errOut, "SR-12") {
		t.Errorf("allow rm with two matches: got %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, support, with("allow", "rm", exact.ID)...); code != exitOK {
		t.Fatalf("allow rm ID: %d %s", code, errOut)
	}
	code, out, errOut = cli(t, support, with("allow", "rm", "unfiled.cn")...)
	if code != exitOK || !strings.Contains(out, "removed allow override "+domain.ID+" for unfiled.cn") {
		t.Errorf("allow rm HOST: got %d %q %q", code, out, errOut)
	}
	for _, tt := range []struct{ arg, want string }{
		{"unfiled.cn", "no active allow override for unfiled.cn"},
		{"not a host", "neither an override ID nor a host name"},
	} {
		if code, _, errOut := cli(t, support, with("allow", "rm", tt.arg)...); code != exitError || !strings.Contains(errOut, tt.want) {
			t.Errorf("allow rm %q: got %d %q, want %q", tt.arg, code, errOut, tt.want)
		}
	}

	// The audit table shows each change's ticket and reason.
	code, out, errOut = cli(t, viewer, with("audit", "ls", "--action", "override.delete")...)
	if code != exitOK || !strings.Contains(out, "TICKET") || !strings.Contains(out, "REASON") ||
		!strings.Contains(out, "SR-12") || !strings.Contains(out, "客户要求单独放行") || !strings.Contains(out, "SR-11") {
		t.Errorf("audit ls: got %d %q %q, want the removed overrides' tickets and reasons", code, out, errOut)
	}
}
