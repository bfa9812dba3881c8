package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/metrics"
	"github.com/icpgate/icpgate/registry"
)

// ReloadStateCollector exports whether the registry source's most recent
// load failed, as icpgate_registry_last_reload_failed (0 or 1). The
// RegistryCollector's counters say that loads failed at some point; this
// gauge says the node is failing now: the source holds something the node
// has refused, so it serves an older registry than the source until a
// load succeeds. A file source retries only when the file changes again,
// so a failure counter stops moving while the node stays stale; the
// IcpgateRegistryStale alert (configs/prometheus/alerts.yml) needs this
// gauge.
type ReloadStateCollector struct {
	reloads func() registry.ReloadStats
	failed  *prometheus.Desc
}

var _ prometheus.Collector = (*ReloadStateCollector)(nil)

// NewReloadStateCollector returns a collector reading reloads at scrape
// time (registry.FileSource.Stats). A nil reloads, a registry without a
// reloading source, always reports 0.
func NewReloadStateCollector(reloads func() registry.ReloadStats) *ReloadStateCollector {
	return &ReloadStateCollector{
		reloads: reloads,
		failed: prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "registry", "last_reload_failed"),
			"1 when the registry source's most recent load failed and none has succeeded since (the node serves an older registry than its source), else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ReloadStateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.failed }

// Collect implements prometheus.Collector.
func (c *ReloadStateCollector) Collect(ch chan<- prometheus.Metric) {
	v := 0.0
	if c.reloads != nil && c.reloads().LastError != nil {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, v)
}
