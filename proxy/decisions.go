package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is one decision a Decider can give: a reason and its verdict.
// Config.Outcomes lists them so that every series of
// icpgate_decisions_total that can move exists, at zero, from the start (a
// dashboard panel on a rare reason shows 0, not "No data"), and no series
// for a pair that cannot happen (reason="filed",verdict="block") is ever
// exported.
type Outcome struct {
	Reason string
	Pass   bool
}

// proxyOutcomes are the decisions the data plane makes itself, whatever
// the Decider: a second TLS or QUIC ClientHello naming another server
// (hrr.go), and the tls_without_sni policy.
var proxyOutcomes = []Outcome{{reasonRetryMismatch, false}, {reasonIPAccess, true}, {reasonIPAccess, false}}

// decisionCounter counts the decisions of one protocol: the only place
// icpgate_decisions_total is incremented. The counters are looked up
// without a lock through a copy-on-write map; a pair first seen (a Decider
// that gives an outcome it did not declare) adds its series then.
type decisionCounter struct {
	vec      *prometheus.CounterVec
	protocol string
	mu       sync.Mutex // serialises additions to counters
	counters atomic.Pointer[map[Outcome]prometheus.Counter]
}

func newDecisionCounter(vec *prometheus.CounterVec, protocol string, outcomes []Outcome) *decisionCounter {
	c := &decisionCounter{vec: vec, protocol: protocol}
	m := make(map[Outcome]prometheus.Counter, len(outcomes)+len(proxyOutcomes))
	for _, o := range append(outcomes[:len(outcomes):len(outcomes)], proxyOutcomes...) {
		m[o] = vec.WithLabelValues(protocol, verdictLabel(o.Pass), o.Reason)
	}
	c.counters.Store(&m)
	return c
}

func verdictLabel(pass bool) string {
	if pass {
		return "pass"
	}
	return "block"
}

// count counts d.
func (c *decisionCounter) count(d *Decision) {
	o := Outcome{d.Reason, d.Pass}
	if ctr, ok := (*c.counters.Load())[o]; ok {
		ctr.Inc()
		return
	}
	c.mu.Lock()
	m := *c.counters.Load()
	ctr, ok := m[o]
	if !ok {
		ctr = c.vec.WithLabelValues(c.protocol, verdictLabel(o.Pass), o.Reason)
		n := make(map[Outcome]prometheus.Counter, len(m)+1)
		for k, v := range m {
			n[k] = v
		}
		n[o] = ctr
		c.counters.Store(&n)
	}
	c.mu.Unlock()
	ctr.Inc()
}
