package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// promServer is a real Prometheus (Debian's prometheus package) running on
// loopback with a temporary config and data directory.
type promServer struct {
	base   string // http://127.0.0.1:port
	log    *syncBuffer
	client *http.Client
}

// startPrometheus runs Prometheus scraping target (the gateway's admin
// address) every second as job "icpgate", with the alert rules loaded, and
// waits until it is ready. Cleanup stops it.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := needTool(t, "prometheus")
	rules, err := filepath.Abs(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: icpgate
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Prometheus takes a fixed port: find a free one. Another process could
	// take it before Prometheus binds; the start then fails with the log.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := &http.Transport{}
	p := &promServer{base: "http://" + addr, log: &syncBuffer{}, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited before it was ready: %v; log:\n%s", err, p.log.String())
		default:
		}
		resp, err := p.client.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s; log:\n%s", p.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promSample is one element of an instant vector.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// query evaluates expr through /api/v1/query. A PromQL error (parse or
// evaluation) is returned; a scalar result comes back as one sample.
func (p *promServer) query(expr string) ([]promSample, error) {
	resp, err := p.client.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query %s: %w: %s", expr, err, b)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	parse := func(v [2]any) (float64, error) {
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	switch r.Data.ResultType {
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(r.Data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parse(v)
		return []promSample{{Value: f}}, err
	case "vector":
		var vs []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &vs); err != nil {
			return nil, err
		}
		out := make([]promSample, 0, len(vs))
		for _, v := range vs {
			f, err := parse(v.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, promSample{Metric: v.Metric, Value: f})
		}
		return out, nil
	}
	return nil, fmt.Errorf("query %s: result type %s", expr, r.Data.ResultType)
}

// waitFor polls expr until ok accepts its result or 30 s pass, and returns
// the last result.
func (p *promServer) waitFor(t *testing.T, expr string, ok func([]promSample) bool) []promSample {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := p.query(expr)
		if err != nil {
			t.Fatal(err)
		}
		if ok(res) || time.Now().After(deadline) {
			return res
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// grafanaToPromQL fills the dashboard's variables for a Prometheus that
// scrapes one gateway every second.
var grafanaToPromQL = strings.NewReplacer("$__rate_interval", "1m", "$job", "icpgate", "$instance", ".*")

// dashboardQuery returns the first expression of the dashboard panel
// titled title, with the variables filled in.
func dashboardQuery(t *testing.T, title string) string {
	t.Helper()
	return dashboardQueries(t, title)[0]
}

// dashboardQueries returns the expressions of the dashboard panel titled
// title, in order, with the variables filled in.
func dashboardQueries(t *testing.T, title string) []string {
	t.Helper()
	var out []string
	for _, e := range dashboardExprs(t) {
		if e.where == fmt.Sprintf("dashboard panel %q", title) {
			out = append(out, grafanaToPromQL.Replace(e.expr))
		}
	}
	if len(out) == 0 {
		t.Fatalf("dashboard has no panel %q", title)
	}
	return out
}

// TestPrometheusEvaluatesDashboard runs a real Prometheus against a real
// gateway on loopback: it scrapes the gateway, loads the alert rules, and
// answers the dashboard's queries with the traffic the test sent.
func TestPrometheusEvaluatesDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	o := startOrigin(t)
	g := runServe(t, writeConfig(t, t.TempDir(), o, ""))
	driveTraffic := func() {
		for _, host := range []string{"filed.cn", "unfiled.cn", "cancelled.cn"} {
			httpGet(t, g.ProxyAddr("web").String(), host)
			tlsHandshake(g.ProxyAddr("tls").String(), host)
		}
		tlsHandshake(g.ProxyAddr("tls").String(), "") // no SNI: passes (policy.tls_without_sni)
	}
	driveTraffic() // the decision series exist from the first scrape on
	p := startPrometheus(t, g.AdminAddr().String())

	up := p.waitFor(t, `up{job="icpgate"}`, func(r []promSample) bool { return len(r) == 1 && r[0].Value == 1 })
	if len(up) != 1 || up[0].Value != 1 {
		t.Fatalf("up: got %v, want one target up; prometheus log:\n%s", up, p.log.String())
	}
	// Traffic between scrapes, so the rates are above zero.
	driveTraffic()

	t.Run("decisions by protocol and verdict", func(t *testing.T) {
		q := dashboardQuery(t, "Decisions by protocol and verdict")
		res := p.waitFor(t, q, func(r []promSample) bool { return len(r) == 4 && allPositive(r) })
		got := map[string]float64{}
		for _, s := range res {
			got[s.Metric["protocol"]+" "+s.Metric["verdict"]] = s.Value
		}
		for _, k := range []string{"http pass", "http block", "tls pass", "tls block"} {
			v, ok := got[k]
			// Two of the three hosts block, each sent twice: at most a
			// few decisions a second, never negative or absurd.
			if !ok || !(v > 0 && v < 100) {
				t.Errorf("%s: got %v (present %v), want a rate in (0, 100)/s; all: %v", k, v, ok, res)
			}
		}
		if len(got) != 4 {
			t.Errorf("got series %v, want exactly http/tls x pass/block", got)
		}
	})

	t.Run("blocked share", func(t *testing.T) {
		q := dashboardQuery(t, "Blocked share")
		res := p.waitFor(t, q, func(r []promSample) bool { return len(r) == 1 && r[0].Value > 0 })
		// Per host set: 1 pass and 2 blocks per protocol, so about 2/3.
		if len(res) != 1 || !(res[0].Value > 0.4 && res[0].Value < 0.9) {
			t.Errorf("got %v, want one ratio near 2/3", res)
		}
	})

	t.Run("registry records by state", func(t *testing.T) {
		q := dashboardQuery(t, "Registry records by state")
		res := p.waitFor(t, q, func(r []promSample) bool { return len(r) > 0 })
		got := map[string]float64{}
		for _, s := range res {
			got[s.Metric["state"]] = s.Value
		}
		// testdata/registry.jsonl: one record each in four states.
		for _, st := range []string{"filed", "cancelled", "blacklisted", "access_pending"} {
			if got[st] != 1 {
				t.Errorf("state %s: got %v, want 1", st, got[st])
			}
		}
		if got["no_access"] != 0 {
			t.Errorf("state no_access: got %v, want 0", got["no_access"])
		}
	})

	t.Run("instances ready of total", func(t *testing.T) {
		q := dashboardQueries(t, "Instances ready")
		if len(q) != 2 {
			t.Fatalf("got queries %q, want ready and total", q)
		}
		for i, want := range []float64{1, 1} {
			res := p.waitFor(t, q[i], func(r []promSample) bool { return len(r) == 1 && r[0].Value == want })
			if len(res) != 1 || res[0].Value != want {
				t.Errorf("%s: got %v, want %v", q[i], res, want)
			}
		}
	})

	t.Run("hellos without SNI", func(t *testing.T) {
		q := dashboardQuery(t, "Hellos without SNI by listener and verdict")
		// The series of both verdicts exist from the start; only the
		// passing one moves.
		rates := func(r []promSample) map[string]float64 {
			m := map[string]float64{}
			for _, s := range r {
				m[s.Metric["listener"]+" "+s.Metric["protocol"]+" "+s.Metric["verdict"]] = s.Value
			}
			return m
		}
		res := p.waitFor(t, q, func(r []promSample) bool { return rates(r)["tls tls pass"] > 0 })
		if got := rates(res); !(got["tls tls pass"] > 0) || got["tls tls block"] != 0 {
			t.Errorf("got %v, want a positive rate for tls tls pass and none blocked", got)
		}
	})

	t.Run("every dashboard and alert expression evaluates", func(t *testing.T) {
		for _, e := range append(dashboardExprs(t), alertExprs(t)...) {
			q := grafanaToPromQL.Replace(e.expr)
			if strings.HasPrefix(e.where, "dashboard variable") {
				continue // label_values() is Grafana's, not PromQL
			}
			res, err := p.query(q)
			if err != nil {
				t.Errorf("%s: %v", e.where, err)
				continue
			}
			for _, s := range res {
				if math.IsInf(s.Value, 0) {
					t.Errorf("%s: got %v in %v", e.where, s.Value, s)
				}
			}
		}
	})

	t.Run("alert rules loaded and healthy", func(t *testing.T) {
		var rules []string
		deadline := time.Now().Add(30 * time.Second)
		for {
			rules = rules[:0]
			unhealthy := ""
			resp, err := p.client.Get(p.base + "/api/v1/rules")
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Data struct {
					Groups []struct {
						Rules []struct {
							Name      string `json:"name"`
							Health    string `json:"health"`
							LastError string `json:"lastError"`
						} `json:"rules"`
					} `json:"groups"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range r.Data.Groups {
				for _, rule := range g.Rules {
					rules = append(rules, rule.Name)
					if rule.Health != "ok" {
						unhealthy += fmt.Sprintf(" %s=%s %s", rule.Name, rule.Health, rule.LastError)
					}
				}
			}
			if unhealthy == "" && len(rules) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rules not all healthy after 30s:%s", unhealthy)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if want := len(alertExprs(t)); len(rules) != want {
			t.Errorf("got %d rules %v, want %d", len(rules), rules, want)
		}
		// A healthy gateway fires none of them.
		res, err := p.query(`ALERTS{alertstate="firing"}`)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 0 {
			t.Errorf("got firing alerts %v, want none", res)
		}
	})
}

func allPositive(r []promSample) bool {
	for _, s := range r {
		if !(s.Value > 0) {
			return false
		}
	}
	return true
}
