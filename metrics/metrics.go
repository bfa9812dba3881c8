// Package metrics holds what every icpgate package shares about Prometheus:
// the namespace, bucket layouts, the /metrics handler and the build-info
// metric. It is a leaf: it imports nothing of ours.
//
// Each package declares its own collectors and registers them into the
// prometheus.Registerer it is given (no promauto globals):
//
//	reg := prometheus.NewRegistry()
//	metrics.RegisterProcess(reg)
//	m := proxy.NewMetrics(reg)
//	http.Handle("/metrics", metrics.Handler(reg))
package metrics

import (
	"net/http"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every icpgate metric.
const Namespace = "icpgate"

// LatencyBuckets suit decision and request-head latencies in seconds: from
// 50 µs to 10 s.
var LatencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// SyncBuckets suit registry sync durations in seconds: 1 ms to 5 min.
var SyncBuckets = []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// RegisterProcess registers the Go runtime and process collectors.
func RegisterProcess(reg prometheus.Registerer) {
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// RegisterBuildInfo registers icpgate_build_info{version,goversion} = 1.
func RegisterBuildInfo(reg prometheus.Registerer, version string) {
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "build_info",
		Help:      "Build information of the running gateway; the value is always 1.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, goVersion).Set(1)
	reg.MustRegister(g)
}

// Handler serves the metrics gathered from g in the Prometheus exposition
// formats, reporting collection errors in the response rather than failing.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
