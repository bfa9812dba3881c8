package proxy

// Decider decides whether traffic for a host may pass. The gateway's
// registry implements it through an adapter in cmd; proxy never imports the
// registry (a dependency test enforces this).
//
// Decide must be safe for concurrent use, must not block on I/O and should
// not allocate for a cached host: it runs once per connection or request.
// It must not keep host past the call: host may alias a pooled buffer (the
// ClientHello the sni package read, or an HTTP request head); implementations
// that cache copy it.
type Decider interface {
	Decide(host string) Decision
}

// Decision is the verdict for one host as the data plane needs it.
type Decision struct {
	// Pass reports whether the traffic may go to the upstream.
	Pass bool
	// Reason is one of the closed set of reason codes ("filed", "unfiled",
	// "ip_access", ...). It is used as a metric label and in block pages.
	Reason string
	// Host is the normalised host (A-label, lower case); empty when the
	// input was not a valid name.
	Host string
	// Domain is the registrable domain; empty for IP literals and invalid
	// names.
	Domain string
	// FilingNumber is the website filing number when a record matched.
	FilingNumber string
	// Upstream overrides the listener's default upstream when non-empty.
	Upstream string
}
