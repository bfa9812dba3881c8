package proxy

import (
	"github.com/icpgate/icpgate/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the data plane's collectors. Label values are bounded: listener
// names come from config, protocol/verdict/reason/kind/direction from closed
// sets; a host, IP or path is never a label.
type Metrics struct {
	// Decisions counts decisions by protocol (http, tls, quic), verdict
	// (pass, block) and reason code.
	Decisions *prometheus.CounterVec
	// Connections counts accepted client connections by listener, including
	// those then refused by a limit (counted in LimitRejects).
	Connections *prometheus.CounterVec
	// ActiveConnections is the number of open client connections by listener.
	ActiveConnections *prometheus.GaugeVec
	// HelloErrors counts ClientHello read failures by kind (not_tls,
	// too_large, timeout, malformed, closed).
	HelloErrors *prometheus.CounterVec
	// HTTPErrors counts rejected HTTP requests by kind (bad_request,
	// header_too_large, timeout, ...).
	HTTPErrors *prometheus.CounterVec
	// Bytes counts bytes relayed by listener and direction (upstream: client
	// to upstream, downstream: upstream to client).
	Bytes *prometheus.CounterVec
	// UpstreamErrors counts upstream failures by listener and kind (dial,
	// timeout, reset, bad_response; excess_bytes when an HTTP upstream sent
	// bytes past the end of its response, so its connection is closed
	// rather than pooled; no_upstream when a passing TLS connection has
	// neither a decided nor a default upstream).
	UpstreamErrors *prometheus.CounterVec
	// RequestDuration observes HTTP request durations (head read to response
	// end) by listener and verdict.
	RequestDuration *prometheus.HistogramVec
	// LimitRejects counts connections refused by a limit (global, per_ip).
	LimitRejects *prometheus.CounterVec
	// IdleTimeouts counts passthrough connections closed because neither
	// side sent anything for Timeouts.Idle, by listener.
	IdleTimeouts *prometheus.CounterVec
	// QUICFlows counts QUIC flows (client connections) started, by
	// listener.
	QUICFlows *prometheus.CounterVec
	// QUICActiveFlows is the number of QUIC flows in the flow table
	// (pending, passing, recently blocked), by listener.
	QUICActiveFlows *prometheus.GaugeVec
	// QUICDrops counts client and upstream datagrams a quic listener did
	// not forward, by listener and reason (no_flow, version, short_initial,
	// malformed, too_large, flow_limit, ip_limit, pending_limit,
	// pending_budget, crypto_conflict, hello_timeout, blocked, upstream,
	// extra_retry). crypto_conflict, malformed and too_large also count
	// flows ended after their pass, while the origin still reads Initials.
	QUICDrops *prometheus.CounterVec
	// ECHHellos counts ClientHellos carrying an encrypted_client_hello
	// extension (real or GREASE), by protocol; the decision is made on the
	// outer name.
	ECHHellos *prometheus.CounterVec
	// TLSWithoutSNI counts ClientHellos that name no server (no SNI, or an
	// IP literal), by listener, protocol (tls, quic) and the verdict
	// Policy.TLSWithoutSNI gave them.
	TLSWithoutSNI *prometheus.CounterVec
	// TLSPage are the HTTPS block page's collectors (tlspage.go).
	TLSPage *TLSPageMetrics
	// Edge are the PROXY protocol, sniffing and transparent-mode
	// collectors (transparent.go).
	Edge *EdgeMetrics
}

// NewMetrics creates the data plane's collectors and registers them into reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	ns := metrics.Namespace
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "decisions_total",
			Help: "Access decisions by protocol, verdict and reason."}, []string{"protocol", "verdict", "reason"}),
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_total",
			Help: "Client connections accepted, by listener."}, []string{"listener"}),
		ActiveConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "active_connections",
			Help: "Client connections currently open, by listener."}, []string{"listener"}),
		HelloErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tls_hello_errors_total",
			Help: "ClientHello read failures by kind."}, []string{"kind"}),
		HTTPErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_request_errors_total",
			Help: "HTTP requests refused before any decision, by kind."}, []string{"kind"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_total",
			Help: "Bytes relayed, by listener and direction (upstream: client to server; downstream: server to client)."}, []string{"listener", "direction"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_errors_total",
			Help: "Upstream failures by listener and kind."}, []string{"listener", "kind"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "http_request_duration_seconds",
			Help: "HTTP request duration from the end of the request head to the end of the response, by listener and verdict.", Buckets: metrics.LatencyBuckets}, []string{"listener", "verdict"}),
		LimitRejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "limit_rejects_total",
			Help: "Client connections refused by a connection limit, by limit."}, []string{"limit"}),
		IdleTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "idle_timeouts_total",
			Help: "Passthrough connections closed after Timeouts.Idle without traffic either way, by listener."}, []string{"listener"}),
		QUICFlows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "quic_flows_total",
			Help: "QUIC flows started, by listener."}, []string{"listener"}),
		QUICActiveFlows: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "quic_active_flows",
			Help: "QUIC flows in the flow table (pending, passing, recently blocked), by listener."}, []string{"listener"}),
		QUICDrops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "quic_dropped_datagrams_total",
			Help: "Datagrams a QUIC listener did not forward, by listener and reason (no_flow, version, short_initial, malformed, too_large, flow_limit, ip_limit, pending_limit, pending_budget, crypto_conflict, hello_timeout, blocked, upstream, extra_retry)."}, []string{"listener", "reason"}),
		ECHHellos: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ech_hellos_total",
			Help: "ClientHellos carrying an encrypted_client_hello extension, by protocol (decided on the outer name)."}, []string{"protocol"}),
		TLSWithoutSNI: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tls_without_sni_total",
			Help: "ClientHellos naming no server (no SNI, or an IP literal), by listener, protocol and the verdict of policy.tls_without_sni."}, []string{"listener", "protocol", "verdict"}),
	}
	reg.MustRegister(m.Decisions, m.Connections, m.ActiveConnections, m.HelloErrors, m.HTTPErrors,
		m.Bytes, m.UpstreamErrors, m.RequestDuration, m.LimitRejects, m.IdleTimeouts,
		m.QUICFlows, m.QUICActiveFlows, m.QUICDrops, m.ECHHellos, m.TLSWithoutSNI)
	m.TLSPage = newTLSPageMetrics(reg)
	m.Edge = newEdgeMetrics(reg)
	return m
}
