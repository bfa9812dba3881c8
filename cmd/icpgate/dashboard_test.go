package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/icpgate/icpgate/metrics"
	"github.com/icpgate/icpgate/registry"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// The operator-facing Prometheus files: the Grafana dashboard and the alert
// rules. TestDashboardMetricsExist checks every PromQL expression in them
// against a live scrape of the gateway.
const (
	dashboardPath = "../../configs/grafana/icpgate.json"
	alertsPath    = "../../configs/prometheus/alerts.yml"
)

// selector is one metric a PromQL expression names, with the label names
// its matchers use.
type selector struct {
	Metric string
	Labels []string
}

// errPromQL marks an expression the scanner cannot read.
var errPromQL = errors.New("unreadable PromQL")

// promqlKeywords are identifiers that are not metric names when they are
// not followed by "(": binary operators, modifiers and number literals.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "atan2": true, "group_left": true, "group_right": true,
}

// labelListKeywords are followed by a parenthesised list of label names,
// not by an expression.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// promqlSelectors returns the metrics an expression selects, in order of
// appearance, with the label names of their matchers. It is a scanner, not
// a full parser (the Prometheus test has a real server parse every
// expression): it skips string literals, range and subquery brackets,
// grouping label lists and Grafana variables ($job, ${x}, $__rate_interval),
// treats an identifier followed by "(" as a function or aggregation, and
// reads {__name__="x"} as metric x. Unbalanced brackets and unterminated
// strings are errors.
func promqlSelectors(expr string) ([]selector, error) {
	var out []selector
	depth := 0 // parentheses, to catch unbalanced input
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#':
			// A comment runs to the end of the line.
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '$':
			i = skipVariable(expr, i)
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("%w: unclosed [ at %d", errPromQL, i)
			}
			i += end + 1
		case c == '{':
			// A selector without a metric name before it: {__name__="x"}.
			labels, name, end, err := scanMatchers(expr, i)
			if err != nil {
				return nil, err
			}
			if name == "" {
				return nil, fmt.Errorf("%w: selector at %d has no metric name", errPromQL, i)
			}
			out = append(out, selector{Metric: name, Labels: labels})
			i = end
		case c == '(':
			depth++
			i++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("%w: unbalanced ) at %d", errPromQL, i)
			}
			i++
		case c == '}' || c == ']':
			return nil, fmt.Errorf("%w: unbalanced %c at %d", errPromQL, c, i)
		case isDigit(c) || (c == '.' && i+1 < len(expr) && isDigit(expr[i+1])):
			// A number or a duration (5m, 1h30m, 0x1f, 1e-3).
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.' ||
				((expr[i] == '-' || expr[i] == '+') && (expr[i-1] == 'e' || expr[i-1] == 'E'))) {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == ':') {
				i++
			}
			word := expr[start:i]
			j := skipSpace(expr, i)
			if labelListKeywords[strings.ToLower(word)] {
				if j < len(expr) && expr[j] == '(' {
					end := strings.IndexByte(expr[j:], ')')
					if end < 0 {
						return nil, fmt.Errorf("%w: unclosed label list after %s", errPromQL, word)
					}
					i = j + end + 1
				}
				continue
			}
			if j < len(expr) && expr[j] == '(' {
				continue // a function or an aggregation
			}
			if next := leadingWord(expr[j:]); next == "by" || next == "without" {
				continue // an aggregation with its grouping first: sum by (a) (x)
			}
			if promqlKeywords[strings.ToLower(word)] {
				continue
			}
			sel := selector{Metric: word}
			if j < len(expr) && expr[j] == '{' {
				labels, name, end, err := scanMatchers(expr, j)
				if err != nil {
					return nil, err
				}
				if name != "" && name != word {
					return nil, fmt.Errorf("%w: %s{__name__=%q}", errPromQL, word, name)
				}
				sel.Labels = labels
				i = end
			}
			out = append(out, sel)
		default:
			// Operators: + - * / % ^ == != <= >= < > , @ and the like.
			i++
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%w: %d unclosed (", errPromQL, depth)
	}
	return out, nil
}

// scanMatchers reads the label matchers starting at the "{" at i and
// returns the label names, the value of an equality __name__ matcher and
// the index after the closing "}".
func scanMatchers(expr string, i int) (labels []string, name string, end int, err error) {
	i++ // {
	for {
		i = skipSpace(expr, i)
		if i >= len(expr) {
			return nil, "", 0, fmt.Errorf("%w: unclosed {", errPromQL)
		}
		if expr[i] == '}' {
			return labels, name, i + 1, nil
		}
		if expr[i] == ',' {
			i++
			continue
		}
		start := i
		for i < len(expr) && isIdentChar(expr[i]) && expr[i] != ':' {
			i++
		}
		label := expr[start:i]
		if label == "" || isDigit(label[0]) {
			return nil, "", 0, fmt.Errorf("%w: bad matcher at %d", errPromQL, start)
		}
		i = skipSpace(expr, i)
		opStart := i
		for i < len(expr) && strings.IndexByte("=!~", expr[i]) >= 0 {
			i++
		}
		op := expr[opStart:i]
		if op != "=" && op != "!=" && op != "=~" && op != "!~" {
			return nil, "", 0, fmt.Errorf("%w: bad matcher operator %q at %d", errPromQL, op, opStart)
		}
		i = skipSpace(expr, i)
		if i >= len(expr) || (expr[i] != '"' && expr[i] != '\'' && expr[i] != '`') {
			return nil, "", 0, fmt.Errorf("%w: matcher %s without a quoted value", errPromQL, label)
		}
		vEnd, err := skipString(expr, i)
		if err != nil {
			return nil, "", 0, err
		}
		if label == "__name__" && op == "=" {
			name = expr[i+1 : vEnd-1]
		} else {
			labels = append(labels, label)
		}
		i = vEnd
	}
}

// skipString returns the index after the string literal starting at i.
func skipString(expr string, i int) (int, error) {
	q := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && q != '`':
			j++
		case expr[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: unterminated string at %d", errPromQL, i)
}

// skipVariable returns the index after the Grafana variable at i: $name,
// ${name} or ${name:format}.
func skipVariable(expr string, i int) int {
	i++
	if i < len(expr) && expr[i] == '{' {
		if end := strings.IndexByte(expr[i:], '}'); end >= 0 {
			return i + end + 1
		}
		return len(expr)
	}
	for i < len(expr) && isIdentChar(expr[i]) {
		i++
	}
	return i
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// leadingWord returns the lower-cased identifier s starts with.
func leadingWord(s string) string {
	n := 0
	for n < len(s) && isIdentChar(s[n]) {
		n++
	}
	return strings.ToLower(s[:n])
}

func isIdent(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

var promqlCases = []struct {
	expr string
	want string // "metric[label,...] metric ..." or "error"
}{
	{`up`, `up[]`},
	{`sum(rate(icpgate_decisions_total{job="$job",instance=~"$instance",verdict="block"}[$__rate_interval]))`,
		`icpgate_decisions_total[job,instance,verdict]`},
	{`sum by (protocol, verdict) (rate(a_total[5m])) / on (protocol) group_left (verdict) b`,
		`a_total[] b[]`},
	{`sum(rate(x[1m])) without (instance) > bool 3 * y offset 1h and z unless w or v`,
		`x[] y[] z[] w[] v[]`},
	{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{a="}",b=~"\"x\""}[5m:30s])))`, `h_bucket[a,b]`},
	{`{__name__="named_metric", job="j"} + named2{__name__="named2"}`, `named_metric[job] named2[]`},
	{"count(up{job=\"$job\"} == 0) or vector(0)", `up[job]`},
	{`label_replace(m, "dst", "$1", 'src', ` + "`(.*)`" + `)`, `m[]`},
	{`1e-3 * 0x1F + .5 - Inf + NaN`, ``},
	{"time() - last_ts # a comment naming not_a_metric\n", `last_ts[]`},
	{`rate(x[${__rate_interval}]) @ end()`, `x[]`},
	{`topk(5, max by (state) (icpgate_registry_records))`, `icpgate_registry_records[]`},
	{"sum\nby(a)(x) + max without (b) (y) + count BY (c) (z)", `x[] y[] z[]`},
	{`sum(rate(x[5m]`, `error`},
	{`x{a="b"`, `error`},
	{`x{a=b}`, `error`},
	{`x{a="b}`, `error`},
	{`x{0a="b"}`, `error`},
	{`x{a:b="c"}`, `error`},
	{`sum(x))`, `error`},
	{`{job="x"}`, `error`},
}

func formatSelectors(sels []selector) string {
	var parts []string
	for _, s := range sels {
		parts = append(parts, s.Metric+"["+strings.Join(s.Labels, ",")+"]")
	}
	return strings.Join(parts, " ")
}

func TestPromQLSelectors(t *testing.T) {
	for _, tt := range promqlCases {
		sels, err := promqlSelectors(tt.expr)
		got := formatSelectors(sels)
		if err != nil {
			got = "error"
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q (err %v)", tt.expr, got, tt.want, err)
		}
	}
}

// FuzzPromQLSelectors checks the scanner terminates on any input and only
// returns identifiers as metric and label names.
func FuzzPromQLSelectors(f *testing.F) {
	for _, tt := range promqlCases {
		f.Add(tt.expr)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		sels, err := promqlSelectors(expr)
		if err != nil {
			return
		}
		for _, s := range sels {
			// A metric is an identifier unless a __name__ matcher spelt it.
			if !isIdent(s.Metric) && !strings.Contains(expr, "__name__") {
				t.Fatalf("%q: got metric %q", expr, s.Metric)
			}
			for _, l := range s.Labels {
				if !isIdent(l) {
					t.Fatalf("%q: got label %q", expr, l)
				}
			}
		}
	})
}

// promExpr is one PromQL expression of the operator files and where it is.
type promExpr struct {
	where, expr string
}

// dashboardExprs returns every PromQL expression of the Grafana dashboard:
// panel targets (rows' nested panels included) and query variables, whose
// label_values(metric, label) form is reduced to the metric.
func dashboardExprs(t *testing.T) []promExpr {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var out []promExpr
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: panel: %v", dashboardPath, err)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %d %q has no queries", p.ID, p.Title)
			}
			for i, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %d %q: target %d has no expression", p.ID, p.Title, i)
					continue
				}
				out = append(out, promExpr{fmt.Sprintf("dashboard panel %q", p.Title), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			json.Unmarshal(v.Query, &q.Query) // older dashboards keep a bare string
		}
		inner, ok := strings.CutPrefix(q.Query, "label_values(")
		if !ok {
			t.Errorf("variable %s: got query %q, want label_values(metric, label)", v.Name, q.Query)
			continue
		}
		if k := strings.LastIndexByte(inner, ','); k >= 0 {
			inner = inner[:k]
		}
		out = append(out, promExpr{"dashboard variable " + v.Name, inner})
	}
	return out
}

// alertExprs returns the expression of every rule in the alert rules file.
func alertExprs(t *testing.T) []promExpr {
	t.Helper()
	b, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsPath, err)
	}
	var out []promExpr
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, promExpr{"alert " + r.Alert + r.Record, r.Expr})
		}
	}
	return out
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// syntheticMetrics are series Prometheus itself writes for each target or
// rule rather than scraping them.
func syntheticMetric(name string) bool {
	return name == "up" || strings.HasPrefix(name, "scrape_") || name == "ALERTS" || name == "ALERTS_FOR_STATE"
}

// exposedSeries reads a Prometheus text exposition and returns, for every
// series name, the label names it carries (histograms as their _bucket,
// _sum and _count series, as Prometheus stores them).
func exposedSeries(body string) map[string]map[string]bool {
	m := map[string]map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			continue
		}
		name := line[:end]
		if m[name] == nil {
			m[name] = map[string]bool{}
		}
		if line[end] == '{' {
			sels, err := promqlSelectors(line[:strings.LastIndexByte(line, '}')+1])
			if err == nil && len(sels) == 1 {
				for _, l := range sels[0].Labels {
					m[name][l] = true
				}
			}
		}
	}
	return m
}

// checkExprs returns a problem for every metric or matcher label that the
// expressions name and the exposition does not have.
func checkExprs(exprs []promExpr, exposed map[string]map[string]bool) []string {
	var problems []string
	for _, e := range exprs {
		sels, err := promqlSelectors(e.expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v: %s", e.where, err, e.expr))
			continue
		}
		if len(sels) == 0 {
			problems = append(problems, fmt.Sprintf("%s: names no metric: %s", e.where, e.expr))
		}
		for _, s := range sels {
			if syntheticMetric(s.Metric) {
				continue
			}
			labels, ok := exposed[s.Metric]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: metric %s is not exposed by the gateway", e.where, s.Metric))
				continue
			}
			for _, l := range s.Labels {
				if !labels[l] && !slices.Contains(targetLabels, l) {
					problems = append(problems, fmt.Sprintf("%s: metric %s has no label %q", e.where, s.Metric, l))
				}
			}
		}
	}
	return problems
}

// scrape returns the body of the gateway's /metrics.
func scrape(t *testing.T, g *Gateway) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// driveTraffic sends a passing and a blocked HTTP request and TLS
// handshake through g, so the lazily created decision series exist.
func driveTraffic(t *testing.T, g *Gateway) {
	t.Helper()
	httpAddr, tlsAddr := g.ProxyAddr("web").String(), g.ProxyAddr("tls").String()
	for _, host := range []string{"filed.cn", "unfiled.cn"} {
		httpGet(t, httpAddr, host)
	}
	if err := tlsHandshake(tlsAddr, "filed.cn"); err != nil {
		t.Errorf("tls filed.cn: %v", err)
	}
	if err := tlsHandshake(tlsAddr, "unfiled.cn"); err == nil {
		t.Error("tls unfiled.cn: got a handshake, want a block")
	}
	// A tunnel left silent until the idle watchdog closes it, so the idle
	// timeout counter has a series (the gateway creates it on the first).
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr,
		&tls.Config{ServerName: "filed.cn", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("tls filed.cn: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("idle tunnel: still open after 10s, want it closed by timeouts.idle")
	}
}

// writeOpsConfig is writeConfig with a short idle timeout.
func writeOpsConfig(t *testing.T, o *origin) string {
	t.Helper()
	path := writeConfig(t, t.TempDir(), o, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const drain = "timeouts:\n  drain: 2s\n"
	if !bytes.Contains(b, []byte(drain)) {
		t.Fatalf("writeConfig no longer writes %q", drain)
	}
	b = bytes.Replace(b, []byte(drain), []byte(drain+"  idle: 300ms\n"), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDashboardMetricsExist scrapes a running gateway and fails when the
// Grafana dashboard or the alert rules name a metric, or a matcher label,
// that the gateway does not expose.
func TestDashboardMetricsExist(t *testing.T) {
	o := startOrigin(t)
	g := runServe(t, writeOpsConfig(t, o))
	driveTraffic(t, g)
	// The watchdog counts an idle close just after closing the tunnel:
	// wait for the count rather than racing it.
	body := scrape(t, g)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(body, "\nicpgate_idle_timeouts_total{") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		body = scrape(t, g)
	}
	exposed := exposedSeries(body)
	// This gateway reads a registry file: the PostgreSQL source's series
	// come from a source built for the purpose, its histogram of sync
	// durations with a series of each kind as the first syncs make them.
	pg, err := newPGSource(PostgresConfig{DSN: "postgres://icpgate@127.0.0.1:1/unused"}, "", registry.New(registry.Options{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.close()
	pgReg := prometheus.NewRegistry()
	pg.register(pgReg)
	for _, kind := range []string{"full", "incremental"} {
		pg.syncDuration.WithLabelValues(kind)
	}
	rec := httptest.NewRecorder()
	metrics.Handler(pgReg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for name, labels := range exposedSeries(rec.Body.String()) {
		exposed[name] = labels
	}
	// Every family either registers, with its label names: a vector with
	// no series yet (a listener kind this gateway does not run) is there.
	families := describedSeries(append(collectorDescs(g.prom), collectorDescs(pgReg)...)...)
	for name, labels := range families {
		if exposed[name] == nil && exposed[name+"_bucket"] == nil {
			exposed[name] = labels
		}
	}

	exprs := append(dashboardExprs(t), alertExprs(t)...)
	if len(exprs) < 30 {
		t.Fatalf("got %d expressions, want the dashboard's and the alerts' (at least 30)", len(exprs))
	}
	for _, p := range checkExprs(exprs, exposed) {
		t.Error(p)
	}

	// The check itself must catch a misspelt metric and a wrong label.
	bad := []promExpr{
		{"bad metric", `rate(icpgate_decision_total[5m])`},
		{"bad label", `icpgate_decisions_total{verdikt="block"}`},
	}
	if got := checkExprs(bad, exposed); len(got) != 2 {
		t.Errorf("bad expressions: got %q, want 2 problems", got)
	}

	// Everything the issue asks the dashboard to show is on it.
	var all []string
	for _, e := range exprs {
		all = append(all, e.expr)
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{
		"icpgate_decisions_total", "icpgate_active_connections", "icpgate_bytes_total",
		"icpgate_tls_hello_errors_total", "icpgate_upstream_errors_total",
		"icpgate_http_request_duration_seconds_bucket", "icpgate_registry_cache_requests_total",
		"icpgate_registry_records", "icpgate_registry_last_success_timestamp_seconds",
		"icpgate_registry_reloads_total", "icpgate_registry_last_reload_failed", "by (instance)",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("dashboard and alerts never use %q", want)
		}
	}
	// Every family the gateway exports has a dashboard panel (histograms
	// through their _bucket, _sum or _count series).
	inPanels := map[string]bool{}
	for _, e := range dashboardExprs(t) {
		sels, _ := promqlSelectors(e.expr)
		for _, s := range sels {
			name := s.Metric
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && families[base] != nil {
					name = base
				}
			}
			inPanels[name] = true
		}
	}
	var missing []string
	for name := range families {
		if strings.HasPrefix(name, "icpgate_") && !inPanels[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metric families on no dashboard panel: %s", strings.Join(missing, " "))
	}
	for _, want := range []string{"icpgate_registry_change_lag_seconds", "icpgate_tls_without_sni_total", "icpgate_quic_dropped_datagrams_total", "icpgate_build_info"} {
		if families[want] == nil {
			t.Errorf("family %s is not registered: the coverage check sees less than the gateway exports", want)
		}
	}
}

// TestDashboardShape checks the dashboard's variables and that every
// gateway query honours the job and instance selection.
func TestDashboardShape(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name+":"+v.Type)
	}
	sort.Strings(vars)
	if got, want := strings.Join(vars, " "), "datasource:datasource instance:query job:query runbook_base:textbox"; got != want {
		t.Errorf("variables: got %q, want %q", got, want)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Datasource != nil && p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: got datasource %q, want %q", p.Title, p.Datasource.UID, "${datasource}")
		}
	}
	for _, e := range dashboardExprs(t) {
		if strings.HasPrefix(e.where, "dashboard variable") {
			continue
		}
		sels, err := promqlSelectors(e.expr)
		if err != nil {
			t.Errorf("%s: %v", e.where, err)
			continue
		}
		for _, s := range sels {
			if !strings.Contains(e.expr, s.Metric+`{job="$job",instance=~"$instance"`) {
				t.Errorf("%s: %s is not filtered by job and instance: %s", e.where, s.Metric, e.expr)
			}
		}
	}
}

// runbookDefault is where the runbook links go unless the operator names
// a copy: docs/operations.md in the repository.
const runbookDefault = "https://github.com/icpgate/icpgate/blob/main/docs/operations.md"

// operationsAnchors returns the anchors of docs/operations.md's headings,
// as GitHub (and Gitea and GitLab) make them: lower case, punctuation
// other than - and _ dropped, spaces as hyphens.
func operationsAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	fence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		heading, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if fence || !strings.HasPrefix(line, "#") || !ok {
			continue
		}
		anchors[headingAnchor(heading)] = true
	}
	return anchors
}

// headingAnchor is the anchor GitHub gives a Markdown heading.
func headingAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAlertsRunbook checks that every alert has a severity, a summary, a
// description and a runbook_url pointing at its own section of
// docs/operations.md, under the runbook_base external label when
// Prometheus has one and the repository's copy otherwise, and that the
// section exists.
func TestAlertsRunbook(t *testing.T) {
	if got, want := headingAnchor("Control plane: tokens, overrides, audit, report"), "control-plane-tokens-overrides-audit-report"; got != want {
		t.Errorf("headingAnchor: got %q, want %q", got, want)
	}
	b, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	anchors := operationsAnchors(t)
	// Without the label, the gateway's own copy (/docs/ on the scrape
	// target), else the repository's.
	const base = "{{ with $externalLabels.runbook_base }}{{ . }}{{ else }}{{ with $labels.instance }}http://{{ . }}/docs/operations.md{{ else }}" + runbookDefault + "{{ end }}{{ end }}#"
	n := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: got severity %q, want critical or warning", r.Alert, s)
			}
			for _, k := range []string{"summary", "description"} {
				if r.Annotations[k] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, k)
				}
			}
			if got, want := r.Annotations["runbook_url"], base+strings.ToLower(r.Alert); got != want {
				t.Errorf("%s: got runbook_url %q, want %q", r.Alert, got, want)
			}
			if !anchors[strings.ToLower(r.Alert)] {
				t.Errorf("%s: docs/operations.md has no section %q", r.Alert, "### "+r.Alert)
			}
		}
	}
	if n < 7 {
		t.Errorf("got %d alerts, want at least the 7 the issue lists", n)
	}
}

// TestDashboardRunbookLinks checks the dashboard's links: every one goes
// to a section of docs/operations.md that exists, under the runbook_base
// variable (whose default is the repository's copy), and every alert's
// runbook is linked from a panel showing what it fires on.
func TestDashboardRunbookLinks(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type link struct {
		Title string `json:"title"`
		URL   string `json:"url"`
	}
	type panel struct {
		Title  string            `json:"title"`
		Links  []link            `json:"links"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Links      []link            `json:"links"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	def := ""
	for _, v := range d.Templating.List {
		if v.Name == "runbook_base" {
			json.Unmarshal(v.Query, &def)
		}
	}
	if def != runbookDefault {
		t.Errorf("variable runbook_base: got default %q, want %q", def, runbookDefault)
	}
	anchors := operationsAnchors(t)
	linked := map[string]bool{}
	check := func(where string, links []link) {
		for _, l := range links {
			anchor, ok := strings.CutPrefix(l.URL, "${runbook_base}#")
			if !ok {
				t.Errorf("%s: link %q goes to %q, want ${runbook_base}#section", where, l.Title, l.URL)
				continue
			}
			if !anchors[anchor] {
				t.Errorf("%s: link %q: docs/operations.md has no section #%s", where, l.Title, anchor)
			}
			linked[anchor] = true
		}
	}
	check("dashboard", d.Links)
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("panel %q", p.Title), p.Links)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if !linked["alerts-runbook"] {
		t.Error("dashboard: no link to the alerts runbook")
	}
	for _, e := range alertExprs(t) {
		alert := strings.TrimPrefix(e.where, "alert ")
		if !linked[strings.ToLower(alert)] {
			t.Errorf("no panel links to the runbook of %s", alert)
		}
	}
}

// dashboardPanel is a panel as TestDashboardUnits reads it.
type dashboardPanel struct {
	ID          int    `json:"id"`
	Title       string `json:"title"`
	Type        string `json:"type"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options any    `json:"options"`
			} `json:"matcher"`
			Properties []struct {
				ID    string `json:"id"`
				Value any    `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// unitKinds maps the Grafana units the dashboard uses to the kind of
// quantity they show; a query's kind (exprKind) must match its unit's.
var unitKinds = map[string][]string{
	"per second":       {"reqps", "cps", "ops", "pps"},
	"bytes per second": {"Bps"},
	"duration":         {"s"},
	"ratio":            {"percentunit"},
	"count":            {"short"},
	"cores":            {"short"},
	"bytes":            {"bytes"},
	"state":            {"bool_yes_no"},
}

// stateMetrics are 0/1 gauges: shown as is they are a state, summed or
// counted over instances a count.
var stateMetrics = map[string]bool{
	"up": true, "icpgate_registry_loaded": true, "icpgate_registry_last_reload_failed": true,
	"icpgate_registry_database_connected": true, "icpgate_registry_from_store": true,
}

// exprKind says what kind of quantity a dashboard expression yields, from
// its shape and the naming rules of the metrics it reads (_total counters,
// _seconds and _bytes units): a quantile or a mean of a _seconds
// histogram or time() minus a timestamp is a duration, any other division
// a ratio, a rate a per-second quantity (bytes per second for _bytes_total,
// cores for CPU seconds), an increase a count, a 0/1 gauge a state unless
// summed or counted, other gauges a duration, bytes or a count by suffix.
func exprKind(expr string) (string, error) {
	sels, err := promqlSelectors(expr)
	if err != nil {
		return "", err
	}
	if len(sels) == 0 {
		return "", errors.New("names no metric")
	}
	first := sels[0].Metric
	switch {
	case strings.Contains(expr, "histogram_quantile("):
		if !strings.HasSuffix(first, "_seconds_bucket") {
			return "", fmt.Errorf("quantile of %s, not a _seconds histogram", first)
		}
		return "duration", nil
	case topLevelDivision(expr):
		if len(sels) == 2 && strings.HasSuffix(first, "_seconds_sum") && strings.HasSuffix(sels[1].Metric, "_seconds_count") {
			return "duration", nil
		}
		return "ratio", nil
	case strings.Contains(expr, "time() -"):
		return "duration", nil
	case strings.Contains(expr, "rate("):
		switch {
		case strings.HasSuffix(first, "_bytes_total"):
			return "bytes per second", nil
		case strings.HasSuffix(first, "_seconds_total"):
			return "cores", nil
		}
		return "per second", nil
	case strings.Contains(expr, "increase("):
		return "count", nil
	case stateMetrics[first]:
		if strings.HasPrefix(expr, "sum(") || strings.HasPrefix(expr, "count(") {
			return "count", nil
		}
		return "state", nil
	case strings.HasSuffix(first, "_seconds"):
		return "duration", nil
	case strings.HasSuffix(first, "_bytes"):
		return "bytes", nil
	}
	return "count", nil
}

// topLevelDivision reports whether expr divides outside any brackets,
// strings and matchers.
func topLevelDivision(expr string) bool {
	depth := 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '"', '\'', '`':
			end, err := skipString(expr, i)
			if err != nil {
				return false
			}
			i = end - 1
		case '(', '{', '[':
			depth++
		case ')', '}', ']':
			depth--
		case '/':
			if depth == 0 {
				return true
			}
		}
	}
	return false
}

// TestDashboardUnits checks that no panel mixes units: each query's unit
// (the panel's, or an override for its refId) fits the kind of quantity
// the query yields, and a panel's queries share one unit, or two of the
// same kind with the second on the right axis.
func TestDashboardUnits(t *testing.T) {
	for _, tt := range []struct{ expr, want string }{
		{`sum(rate(icpgate_decisions_total{job="$job"}[5m]))`, "per second"},
		{`sum(rate(icpgate_bytes_total[5m]))`, "bytes per second"},
		{`rate(process_cpu_seconds_total[5m])`, "cores"},
		{`sum(icpgate_registry_cache_entries)`, "count"},
		{`sum(increase(icpgate_registry_reloads_total{result="failure"}[5m]))`, "count"},
		{`max by (instance) (icpgate_registry_database_connected)`, "state"},
		{`sum(icpgate_registry_loaded)`, "count"},
		{`sum(rate(a_total{x="a/b"}[5m])) / sum(rate(b_total[5m]))`, "ratio"},
		{`sum(rate(x_seconds_sum[5m])) / sum(rate(x_seconds_count[5m]))`, "duration"},
		{`histogram_quantile(0.9, sum by (le) (rate(x_seconds_bucket[5m])))`, "duration"},
		{`max(time() - icpgate_registry_last_success_timestamp_seconds)`, "duration"},
		{`process_resident_memory_bytes`, "bytes"},
	} {
		if got, err := exprKind(tt.expr); got != tt.want || err != nil {
			t.Errorf("exprKind(%s): got %q %v, want %q", tt.expr, got, err, tt.want)
		}
	}

	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range d.Panels {
		var p dashboardPanel
		if err := json.Unmarshal(r, &p); err != nil {
			t.Fatal(err)
		}
		if p.Type == "row" {
			continue
		}
		n++
		for _, e := range panelUnitProblems(p) {
			t.Errorf("panel %d %q: %s", p.ID, p.Title, e)
		}
	}
	if n < 50 {
		t.Errorf("checked %d panels, want the dashboard's (at least 50)", n)
	}

	// The check catches the mixes the issue found (a count with rates, a
	// state with a count) and bytes with a ratio on a second axis.
	for _, js := range []string{
		`{"title":"Decision cache","fieldConfig":{"defaults":{"unit":"short"}},
		  "targets":[{"refId":"A","expr":"sum(icpgate_registry_cache_entries)"},
		             {"refId":"B","expr":"sum(rate(icpgate_registry_cache_evictions_total[5m]))"}]}`,
		`{"title":"Database sessions and refused deletions","fieldConfig":{"defaults":{"unit":"short"}},
		  "targets":[{"refId":"A","expr":"max(icpgate_registry_database_connected)"},
		             {"refId":"B","expr":"max(icpgate_registry_deletion_refused_records)"}]}`,
		`{"title":"Memory and descriptors","fieldConfig":{"defaults":{"unit":"bytes"},
		  "overrides":[{"matcher":{"id":"byFrameRefID","options":"B"},
		    "properties":[{"id":"unit","value":"percentunit"},{"id":"custom.axisPlacement","value":"right"}]}]},
		  "targets":[{"refId":"A","expr":"process_resident_memory_bytes"},{"refId":"B","expr":"process_open_fds / process_max_fds"}]}`,
	} {
		var p dashboardPanel
		if err := json.Unmarshal([]byte(js), &p); err != nil {
			t.Fatal(err)
		}
		if got := panelUnitProblems(p); len(got) == 0 {
			t.Errorf("panel %q: no problem found", p.Title)
		}
	}
	// Two units of one kind on two axes are fine.
	var twoAxes dashboardPanel
	if err := json.Unmarshal([]byte(`{"title":"Decisions and connections","fieldConfig":{"defaults":{"unit":"reqps"},
		"overrides":[{"matcher":{"id":"byFrameRefID","options":"B"},
		  "properties":[{"id":"unit","value":"cps"},{"id":"custom.axisPlacement","value":"right"}]}]},
		"targets":[{"refId":"A","expr":"sum(rate(icpgate_decisions_total[5m]))"},{"refId":"B","expr":"sum(rate(icpgate_connections_total[5m]))"}]}`), &twoAxes); err != nil {
		t.Fatal(err)
	}
	if got := panelUnitProblems(twoAxes); len(got) != 0 {
		t.Errorf("requests and connections per second on two axes: got %q, want no problem", got)
	}
}

// panelUnitProblems returns what is wrong with the units of p's queries.
func panelUnitProblems(p dashboardPanel) []string {
	var problems []string
	unitOf := map[string]string{} // refId: unit
	rightAxis := map[string]bool{}
	for _, o := range p.FieldConfig.Overrides {
		for _, prop := range o.Properties {
			if prop.ID != "unit" && prop.ID != "custom.axisPlacement" {
				continue
			}
			ref, ok := o.Matcher.Options.(string)
			if o.Matcher.ID != "byFrameRefID" || !ok {
				problems = append(problems, fmt.Sprintf("override of %s by %s: use byFrameRefID so each query's unit is known", prop.ID, o.Matcher.ID))
				continue
			}
			switch v, _ := prop.Value.(string); prop.ID {
			case "unit":
				unitOf[ref] = v
			case "custom.axisPlacement":
				rightAxis[ref] = v == "right"
			}
		}
	}
	type axis struct{ unit, kind string }
	var left, right []axis
	for _, tg := range p.Targets {
		unit := p.FieldConfig.Defaults.Unit
		if u, ok := unitOf[tg.RefID]; ok {
			unit = u
		}
		kind, err := exprKind(tg.Expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", tg.RefID, err))
			continue
		}
		if !slices.Contains(unitKinds[kind], unit) {
			problems = append(problems, fmt.Sprintf("%s is a %s, shown in unit %q (want one of %q)", tg.RefID, kind, unit, unitKinds[kind]))
		}
		if rightAxis[tg.RefID] {
			right = append(right, axis{unit, kind})
		} else {
			left = append(left, axis{unit, kind})
		}
	}
	all := append(slices.Clone(left), right...)
	for _, a := range all[min(1, len(all)):] {
		if a.kind != all[0].kind {
			problems = append(problems, fmt.Sprintf("mixes a %s with a %s", all[0].kind, a.kind))
			break
		}
	}
	for _, side := range [][]axis{left, right} {
		for _, a := range side[min(1, len(side)):] {
			if a.unit != side[0].unit {
				problems = append(problems, fmt.Sprintf("units %q and %q on one axis", side[0].unit, a.unit))
				break
			}
		}
	}
	return problems
}

// collectorDescs returns the descriptors of c (for a registry, of everything
// registered in it).
func collectorDescs(c prometheus.Collector) []*prometheus.Desc {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var out []*prometheus.Desc
	for d := range ch {
		out = append(out, d)
	}
	return out
}

// describedSeries returns the metric names and variable label names of
// descs, read from their String form.
func describedSeries(descs ...*prometheus.Desc) map[string]map[string]bool {
	m := map[string]map[string]bool{}
	re := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for _, d := range descs {
		sm := re.FindStringSubmatch(d.String())
		if sm == nil {
			continue
		}
		labels := map[string]bool{}
		for _, l := range strings.FieldsFunc(sm[2], func(r rune) bool { return r == ',' || r == ' ' }) {
			labels[l] = true
		}
		m[sm[1]] = labels
	}
	return m
}

// TestDocsServedRunbook: a running gateway serves the runbook of its own
// release at /docs/operations.md (the alerts' default link), with an
// anchor for every alert.
func TestDocsServedRunbook(t *testing.T) {
	o := startOrigin(t)
	g := runServe(t, writeConfig(t, t.TempDir(), o, ""))
	resp, err := http.Get("http://" + g.AdminAddr().String() + "/docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /docs/operations.md: %d", resp.StatusCode)
	}
	for a := range operationsAnchors(t) {
		if !strings.Contains(string(body), ` id="`+a+`"`) {
			t.Errorf("served runbook has no anchor %q", a)
		}
	}
}
