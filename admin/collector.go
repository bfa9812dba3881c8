package admin

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/metrics"
	"github.com/icpgate/icpgate/registry"
)

// RegistryCollector exports the registry's own counters (the registry does
// not import Prometheus) by reading them at scrape time: no goroutine polls
// them in between.
type RegistryCollector struct {
	reg     *registry.Registry
	reloads func() registry.ReloadStats

	records, loaded, lastSuccess, reloadsTotal *prometheus.Desc
	rejected                                   *prometheus.Desc
	cacheRequests, cacheEvictions, cacheInval  *prometheus.Desc
	cacheEntries                               *prometheus.Desc
}

var _ prometheus.Collector = (*RegistryCollector)(nil)

// NewRegistryCollector returns a collector for reg. reloads returns the
// source's reload counters (registry.FileSource.Stats); nil means the
// registry has no reloading source.
func NewRegistryCollector(reg *registry.Registry, reloads func() registry.ReloadStats) *RegistryCollector {
	ns, sub := metrics.Namespace, "registry"
	return &RegistryCollector{
		reg:     reg,
		reloads: reloads,
		records: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "records"),
			"Records in the serving registry snapshot, by filing state.", []string{"state"}, nil),
		rejected: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "rejected_rows"),
			fmt.Sprintf("Rows of the filing database that fail validation, as of the last sync; each leaves its domain without a record (icpgate check DOMAIN says why). At most %d are counted. Always 0 with a registry file, which is refused whole instead.", registry.MaxRejectedRows), nil, nil),
		loaded: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "loaded"),
			"1 once a registry snapshot has been installed, else 0 (every name is then blocked as unfiled).", nil, nil),
		lastSuccess: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "last_success_timestamp_seconds"),
			"Unix time of the last successful registry load; 0 before the first.", nil, nil),
		reloadsTotal: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "reloads_total"),
			"Registry load attempts by result (success, failure); a failure keeps the previous snapshot serving.", []string{"result"}, nil),
		cacheRequests: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "cache_requests_total"),
			"Decision cache lookups by result (hit, miss).", []string{"result"}, nil),
		cacheEvictions: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "cache_evictions_total"),
			"Decisions evicted from the cache to make room.", nil, nil),
		cacheInval: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "cache_invalidations_total"),
			"Cached decisions dropped because their domain changed in a new snapshot.", nil, nil),
		cacheEntries: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "cache_entries"),
			"Decisions now cached.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *RegistryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.records, c.rejected, c.loaded, c.lastSuccess, c.reloadsTotal,
		c.cacheRequests, c.cacheEvictions, c.cacheInval, c.cacheEntries} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *RegistryCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.reg.Snapshot()
	for _, st := range registry.States() {
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(snap.Count(st)), st.String())
	}
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.GaugeValue, float64(snap.RejectedCount()))
	loaded := 0.0
	if c.reg.Loaded() {
		loaded = 1
	}
	ch <- prometheus.MustNewConstMetric(c.loaded, prometheus.GaugeValue, loaded)
	var rs registry.ReloadStats
	if c.reloads != nil {
		rs = c.reloads()
	}
	last := 0.0
	if !rs.LastSuccess.IsZero() {
		last = float64(rs.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(c.reloadsTotal, prometheus.CounterValue, float64(rs.Successes), "success")
	ch <- prometheus.MustNewConstMetric(c.reloadsTotal, prometheus.CounterValue, float64(rs.Failures), "failure")
	cs := c.reg.CacheStats()
	ch <- prometheus.MustNewConstMetric(c.cacheRequests, prometheus.CounterValue, float64(cs.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(c.cacheRequests, prometheus.CounterValue, float64(cs.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(c.cacheEvictions, prometheus.CounterValue, float64(cs.Evictions))
	ch <- prometheus.MustNewConstMetric(c.cacheInval, prometheus.CounterValue, float64(cs.Invalidations))
	ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(cs.Len))
}
