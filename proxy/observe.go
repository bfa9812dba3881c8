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
// copy it. dst is the address the client connected to: the local address
// of the accepted TCP connection (the original destination in transparent
// mode), or the local address of a quic listener's socket; it is the zero
// AddrPort when unknown.
type BlockObserver interface {
	ObserveBlock(reason, domain string, dst netip.AddrPort)
}

// observerSlot holds the Server's BlockObserver. It is read on every block
// and may be replaced at any time, so it is an atomic pointer; an empty
// slot costs one atomic load and no allocation.
type observerSlot struct {
	p atomic.Pointer[observerBox]
}

type observerBox struct{ o BlockObserver }

// observe passes a block with a registrable domain to the observer, if
// any. A nil slot does nothing.
func (s *observerSlot) observe(d *Decision, dst netip.AddrPort) {
	if s == nil || d.Domain == "" {
		return
	}
	if b := s.p.Load(); b != nil {
		b.o.ObserveBlock(d.Reason, d.Domain, dst)
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
