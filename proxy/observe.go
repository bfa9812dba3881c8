package proxy

import (
	"net/netip"
	"sync/atomic"
)

// BlockObserver is told about every block that names a registrable domain:
// a TLS connection, an HTTP request or a QUIC flow refused for any reason
// but ip_access and invalid_host (those have no domain). The filing team's
// unfiled-site report (package admin/unfiled) implements it through an
// adapter in cmd; proxy never imports it.
//
// ObserveBlock runs on the data plane's hot path, once per block: it must
// be safe for concurrent use, must not block on I/O or wait for anything
// but a short critical section, and should not allocate for a domain it
// already knows. reason is one of the closed set of reason codes; domain
// is the registrable domain (A-label, lower case) and may alias a buffer
// that is reused after the call, so an implementation that keeps it must
// copy it. dst is where the traffic would have gone had it passed (see
// Destination).
type BlockObserver interface {
	ObserveBlock(reason, domain string, dst Destination)
}

// Destination is where blocked traffic would have gone had it passed: the
// customer's server, which is what the filing team needs to know. (The
// address the client connected to is the gateway's own listener outside
// transparent mode, the same for every customer.) At most one field is
// set; neither when the listener has no upstream and the decision named
// none.
type Destination struct {
	// Upstream is the host:port the gateway would have dialled outside
	// transparent mode: the Decision's Upstream, else the listener's. It
	// is configuration or registry data, never a reused buffer, so an
	// observer may keep it without copying.
	Upstream string
	// Original is the connection's original destination in transparent
	// mode (listener upstream "original"), unmapped.
	Original netip.AddrPort
}

// blockDestination is the Destination of blocked traffic decided d on a
// listener whose configured upstream is upstream; original is the
// connection's original destination, used only in transparent mode.
func blockDestination(d *Decision, upstream string, original netip.AddrPort) Destination {
	switch {
	case upstream == UpstreamOriginal:
		return Destination{Original: original} // a Decision's Upstream is ignored, as for a pass
	case d.Upstream != "":
		return Destination{Upstream: d.Upstream}
	}
	return Destination{Upstream: upstream}
}

// observerSlot holds the Server's BlockObserver. It is read on every block
// and may be replaced at any time, so it is an atomic pointer; an empty
// slot costs one atomic load and no allocation.
type observerSlot struct {
	p atomic.Pointer[observerBox]
}

type observerBox struct{ o BlockObserver }

// observe passes a block with a registrable domain to the observer, if
// any, with the destination of blockDestination. A nil slot does nothing.
func (s *observerSlot) observe(d *Decision, upstream string, original netip.AddrPort) {
	if s == nil || d.Domain == "" {
		return
	}
	if b := s.p.Load(); b != nil {
		b.o.ObserveBlock(d.Reason, d.Domain, blockDestination(d, upstream, original))
	}
}

// SetBlockObserver makes o observe every block with a registrable domain
// from now on, on every listener; nil stops observing. It may be called
// before Start and at any time while serving.
func (s *Server) SetBlockObserver(o BlockObserver) {
	if o == nil {
		s.obs.p.Store(nil)
		return
	}
	s.obs.p.Store(&observerBox{o})
}
