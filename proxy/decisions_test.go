package proxy

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDecisionSeries: the decision series a listener can move exist at 0
// from the start, for the protocols its listeners serve; a pair that
// cannot happen is never exported; an outcome the Decider did not declare
// still counts, from its first decision.
func TestDecisionSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	outcomes := []Outcome{{"filed", true}, {"unfiled", false}, {"ip_access", true}, {"ip_access", false}}
	_, err := NewServer(Config{
		Listeners: []ListenerConfig{
			{Name: "web", Protocol: "http", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
			{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
		},
		Outcomes: outcomes,
	}, mapDecider{}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	series := func() string {
		var b strings.Builder
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				b.WriteString(mf.GetName())
				for _, l := range mt.GetLabel() {
					b.WriteString(" " + l.GetName() + "=" + l.GetValue())
				}
				b.WriteString("\n")
			}
		}
		return b.String()
	}
	got := series()
	for _, want := range []string{
		"icpgate_decisions_total protocol=http reason=filed verdict=pass",
		"icpgate_decisions_total protocol=http reason=unfiled verdict=block",
		"icpgate_decisions_total protocol=tls reason=ip_access verdict=block",
		"icpgate_decisions_total protocol=tls reason=hrr_sni_mismatch verdict=block",
		"icpgate_idle_timeouts_total listener=tls",
		"icpgate_idle_timeouts_total listener=web",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing at start: %s", want)
		}
	}
	for _, never := range []string{
		"protocol=http reason=filed verdict=block",
		"protocol=tls reason=unfiled verdict=pass",
		"protocol=quic", // no quic listener
	} {
		if strings.Contains(got, never) {
			t.Errorf("exported a series that cannot move: %s", never)
		}
	}

	c := newDecisionCounter(m.Decisions, "http", outcomes)
	c.count(&Decision{Reason: "override_deny"})
	c.count(&Decision{Reason: "filed", Pass: true})
	if v := testutil.ToFloat64(m.Decisions.WithLabelValues("http", "block", "override_deny")); v != 1 {
		t.Errorf("undeclared outcome counted %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.Decisions.WithLabelValues("http", "pass", "filed")); v != 1 {
		t.Errorf("filed/pass counted %v, want 1", v)
	}
	if strings.Contains(series(), "protocol=http reason=override_deny verdict=pass") {
		t.Error("counting override_deny/block exported override_deny/pass")
	}
}

// BenchmarkDecisionCount: counting a decision neither locks nor allocates.
func BenchmarkDecisionCount(b *testing.B) {
	c := newDecisionCounter(NewMetrics(prometheus.NewRegistry()).Decisions, "http", []Outcome{{"unfiled", false}})
	d := Decision{Reason: "unfiled"}
	b.ReportAllocs()
	for b.Loop() {
		c.count(&d)
	}
}
