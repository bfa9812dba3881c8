package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/admin"
)

// pageID finds the request ID on a block page.
var pageID = regexp.MustCompile(`<dd>([0-9A-Z]{7}-[0-9A-Z]{7}-[0-9A-Z]{7})</dd>`)

// TestRequestIDAnswered: a gateway served in-process blocks a request; the
// ID its page shows is answered by the admin API and by `icpgate explain
// --request-id` with the node, the time and the reason, the host verified
// when given and found among the unfiled report's candidates when not.
func TestRequestIDAnswered(t *testing.T) {
	o := startOrigin(t)
	path := fileModeConfig(t, t.TempDir(), o)
	g, _ := startServe(t, path)
	api := "http://" + g.AdminAddr().String()
	viewer := newToken(t, path, "viewer")

	before := time.Now().Truncate(time.Second)
	req, _ := http.NewRequest("GET", "http://"+g.ProxyAddr("web").String()+"/", nil)
	req.Host = "www.nowhere-filed.cn"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	after := time.Now()
	m := pageID.FindSubmatch(body)
	if resp.StatusCode != 403 || m == nil || resp.Header.Get("X-Request-Id") != string(m[1]) {
		t.Fatalf("got %d, X-Request-Id %q, page %s", resp.StatusCode, resp.Header.Get("X-Request-Id"), body)
	}
	id := string(m[1])

	ask := func(query string) admin.RequestAnswer {
		t.Helper()
		r, _ := http.NewRequest("GET", api+"/v1/requests/"+id+query, nil)
		r.Header.Set("Authorization", "Bearer "+viewer)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a admin.RequestAnswer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", query, resp.StatusCode, err)
		}
		return a
	}
	a := ask("?host=www.nowhere-filed.cn")
	if a.Node == nil || !a.Node.ThisNode || a.Node.Name != "test-node" {
		t.Errorf("node: got %+v, want test-node", a.Node)
	}
	if a.Time == nil || a.Time.Before(before) || a.Time.After(after) {
		t.Errorf("time: got %v, want between %v and %v", a.Time, before, after)
	} else if _, off := a.Time.Zone(); off != 8*3600 {
		t.Errorf("time: got %v, want Asia/Shanghai's +08:00", a.Time)
	}
	if a.Reason == nil || a.Reason.Code != "unfiled" || a.Reason.Meaning == "" {
		t.Errorf("reason: got %+v, want unfiled with its meaning", a.Reason)
	}
	if a.Host == nil || a.Host.Status != admin.HostVerified || a.Host.Host != "www.nowhere-filed.cn" {
		t.Errorf("host: got %+v, want www.nowhere-filed.cn verified", a.Host)
	}
	a = ask("")
	if a.Host == nil || a.Host.Status != admin.HostCandidates || len(a.Host.Candidates) == 0 ||
		a.Host.Candidates[0].Domain != "nowhere-filed.cn" || a.Host.Candidates[0].Host != "www.nowhere-filed.cn" {
		t.Errorf("host: got %+v, want the report's nowhere-filed.cn as the first candidate", a.Host)
	}

	with := func(args ...string) []string { return append(append([]string{"explain"}, args...), "--admin", api) }
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--request-id", strings.ToLower(id), "--host", "nowhere-filed.cn"},
			[]string{id, "test-node (this gateway)", "unfiled: The filing registry has no record", "www.nowhere-filed.cn (verified)", a.Time.Format("2006-01-02 15:04:05 +08:00")}},
		{[]string{"--request-id", id},
			[]string{"candidate(s) from the unfiled report", "nowhere-filed.cn", "www.nowhere-filed.cn", "add --host"}},
		{[]string{"--request-id", "0123456789abcdef"}, []string{"16-hex", "no details", "ask the visitor"}},
	} {
		code, out, errOut := cli(t, viewer, with(tt.args...)...)
		if code != exitOK {
			t.Errorf("explain %q: exit %d; %s", tt.args, code, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("explain %q: got %q, want %q", tt.args, out, w)
			}
		}
	}
	code, out, _ := cli(t, viewer, with("--json", "--request-id", id, "--host", "www.nowhere-filed.cn")...)
	var j admin.RequestAnswer
	if err := json.Unmarshal([]byte(out), &j); code != exitOK || err != nil || j.ID != id || j.Host.Status != admin.HostVerified {
		t.Errorf("explain --json --request-id: got %d %q %v", code, out, err)
	}
	typo := []byte(id)
	typo[3] ^= 1 // another base32 character
	if typo[3] == 'I' || typo[3] == 'L' || typo[3] == 'O' || typo[3] == 'U' {
		typo[3] = '7'
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--request-id", string(typo)}, "check character"},
		{[]string{"--request-id", id[:9]}, "characters"},
		{[]string{"--request-id", id, "filed.cn"}, "alone"},
		{[]string{"--host", "filed.cn", "filed.cn"}, "--host goes with --request-id"},
	} {
		if code, _, errOut := cli(t, viewer, with(tt.args...)...); code != exitError || !strings.Contains(errOut, tt.want) {
			t.Errorf("explain %q: got %d %q, want exit 2 mentioning %q", tt.args, code, errOut, tt.want)
		}
	}
}
