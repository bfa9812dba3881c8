package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/icpgate/icpgate/sni"
)

// Hello error kinds, the label values of Metrics.HelloErrors.
const (
	helloNotTLS    = "not_tls"
	helloTooLarge  = "too_large"
	helloTimeout   = "timeout"
	helloMalformed = "malformed"
	helloClosed    = "closed"
)

var helloErrorKinds = []string{helloNotTLS, helloTooLarge, helloTimeout, helloMalformed, helloClosed}

// TLS alert constants (RFC 8446 §6).
const (
	recordTypeAlert    = 21
	alertLevelFatal    = 2
	alertAccessDenied  = 49
	tlsLingerTimeout   = 2 * time.Second // how long a blocked client may take to close after the alert
	tlsLingerMaxBytes  = 64 << 10        // unread client bytes discarded before closing
	defaultHelloRecord = 0x0301          // record version when a hello carried none
)

// serveTLS serves one connection of a tls listener: read the ClientHello,
// decide on its server name, then either splice it to the upstream or
// refuse it. The upstream is dialled only after a pass; a blocked
// connection never reaches it. It closes the client connection.
//
// ci is the connection's client, destination and (transparent mode)
// original upstream, which wins over every other upstream.
func (s *Server) serveTLS(rt *listenerRuntime, tc *trackedConn, ci *connInfo) {
	c := tc.tcp
	hello, sc, err := sni.Read(c, helloOptions(rt))
	if err != nil {
		kind := helloErrorKind(err)
		rt.helloErrs[kind].Inc()
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("client hello not read", "kind", kind, "client", tc.ip.String(), "error", err)
		}
		sc.Release() // nil-safe
		c.Close()
		return
	}
	// hello's strings alias sc's pooled buffer: everything that uses them
	// happens before sc.Release below. Decide must not retain its argument
	// (the registry clones what it caches).
	d := s.decideHello(rt, &hello, tc.ip, ci.client, func() netip.AddrPort { return ci.dst })
	if !d.Pass {
		rv := hello.RecordVersion
		if p := s.blockPage(rt, hello.ServerName, &d); p != nil {
			p.serve(s.hardCtx, c, sc, rv, &d)
			sc.Release()
			return
		}
		sc.Release()
		blockTLS(c, rt.tlsBlock, rv)
		return
	}

	addr := d.Upstream
	if addr == "" || ci.upstream != "" {
		addr = rt.upstreamOf(ci)
	}
	if addr == "" {
		// Fail closed: a pass with nowhere to go is refused like a dial
		// failure, never sent somewhere by guesswork.
		rt.upNone.Inc()
		if !rt.warnedNoUpstream.Swap(true) { // once per listener config, not per connection
			rt.log.Warn("passing connection has no upstream: the listener has none and the decision named none; closing such connections",
				"domain", d.Domain, "reason", d.Reason)
		}
		sc.Release()
		c.Close()
		return
	}
	// No TCP keep-alive towards the upstream (the listener's dialer):
	// it would cost four setsockopt calls per connection, and a relay to a
	// dead upstream is ended by the idle watchdog anyway.
	up, err := rt.edge.dialer.dial(s.hardCtx, addr, ci)
	if err != nil {
		if isDialTimeout(err) {
			rt.upTimeout.Inc()
		} else {
			rt.upDial.Inc()
		}
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("upstream dial failed", "upstream", addr, "error", err)
		}
		sc.Release()
		c.Close() // a FIN: the client sees the connection end, not a hang
		return
	}
	defer up.Close()
	defer c.Close()

	// Replay the bytes the hello reader consumed, check the server's
	// answer for a HelloRetryRequest (hrr.go; the hello's name is needed
	// until then), hand the reader's buffer back to the pool (a long relay
	// should not hold it), then splice the rest.
	var w rawIO
	w.bind(up)
	_, err = w.Write(sc.Buffered())
	if err != nil {
		sc.Release()
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("writing client hello to upstream", "upstream", addr, "error", err)
		}
		return
	}
	s.conns.startRelay(tc, up, rt.idle)
	ok := s.checkHelloRetry(rt, tc, up, &hello, ci)
	sc.Release()
	if !ok {
		return
	}
	_, _, err = relay(&s.splicers, c, up, rt.bytesUp, rt.bytesDown)
	if err != nil && rt.log.Enabled(context.Background(), slog.LevelDebug) {
		rt.log.Debug("relay ended", "upstream", addr, "error", err)
	}
}

// blockPage returns the TLS block page that answers a connection blocked
// by d on listener rt, or nil when the listener is not in page mode, the
// page is not running, or the name cannot have one (counted).
func (s *Server) blockPage(rt *listenerRuntime, serverName string, d *Decision) *tlsPage {
	if rt.tlsBlock != "page" {
		return nil
	}
	p := s.page.Load()
	if p != nil && !pageEligible(serverName, d) {
		p.results[pageNotEligible].Inc()
		return nil
	}
	return p
}

// decideHello decides a ClientHello read on listener rt and counts the
// decision; a block is also logged (sampled) and shown to the block
// observer, with the upstream the connection would have gone to (in
// transparent mode the original destination dst returns, called only when
// an observer wants it). ip and client are the connection's client.
func (s *Server) decideHello(rt *listenerRuntime, hello *sni.Hello, ip netip.Addr, client netip.AddrPort, dst func() netip.AddrPort) Decision {
	if hello.ECH {
		// Decided on the outer (public) name: the only one we can read.
		s.echTLS.Inc()
	}
	d := s.dec.Decide(hello.ServerName)
	rt.withoutSNI(hello.ServerName, &d)
	s.countDecision("tls", &d)
	if !d.Pass {
		if rt.log.Enabled(context.Background(), slog.LevelDebug) {
			rt.log.Debug("tls blocked", "sni", hello.ServerName, "reason", d.Reason, "client", ip.String())
		}
		s.blocks.Log(rt.cfg.Name, "tls", hello.ServerName, d.Reason, client)
		if d.Domain != "" && s.obs.p.Load() != nil {
			var orig netip.AddrPort
			if rt.original {
				orig = dst() // the original destination
			}
			s.obs.observe(&d, rt.cfg.Upstream, orig)
		}
	}
	return d
}

// withoutSNI applies the listener's Policy.TLSWithoutSNI to d, the
// decision of a ClientHello naming name, when the hello names no server:
// no SNI, or an IP literal (the Decider's ip_access). It counts every such
// hello with its final verdict.
func (rt *listenerRuntime) withoutSNI(name string, d *Decision) {
	if name != "" && d.Reason != reasonIPAccess {
		return
	}
	switch rt.noSNI {
	case "pass":
		d.Pass = true
	case "block":
		d.Pass = false
	}
	if d.Pass {
		rt.noSNICount[0].Inc()
	} else {
		rt.noSNICount[1].Inc()
	}
}

// reasonIPAccess is the Decider's reason for no name or an IP literal.
const reasonIPAccess = "ip_access"

// logTLSWithoutSNI says at start, once, that hellos naming no server pass
// on the TLS and QUIC listeners of cfg: a choice an operator should see,
// since such a client reaches whatever site the origin serves for the
// Host inside TLS.
func (s *Server) logTLSWithoutSNI(cfg Config) {
	if cfg.Policy.TLSWithoutSNI != "pass" {
		return
	}
	var names []string
	for _, lc := range cfg.Listeners {
		if lc.Protocol != "http" {
			names = append(names, lc.Name)
		}
	}
	if len(names) > 0 {
		s.log.Info("TLS and QUIC hellos without a server name pass (policy.tls_without_sni: pass); the origin then picks the site by the Host it reads inside TLS, see docs/security.md",
			"listeners", names)
	}
}

// helloOptions are the sni.Read options of a listener.
func helloOptions(rt *listenerRuntime) sni.Options {
	return sni.Options{Timeout: rt.hello}
}

// helloErrorKind maps an sni.Read error to its metric label.
func helloErrorKind(err error) string {
	switch {
	case errors.Is(err, sni.ErrNotTLS):
		return helloNotTLS
	case errors.Is(err, sni.ErrTooLarge):
		return helloTooLarge
	case errors.Is(err, sni.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return helloTimeout
	case errors.Is(err, sni.ErrMalformed):
		return helloMalformed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return helloTimeout
	}
	// EOF, reset, closed by the drain deadline: the client went away.
	return helloClosed
}

// isDialTimeout reports whether a dial failed by running out of time.
func isDialTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// blockTLS refuses a TLS connection according to mode and closes it.
//
// "reset" aborts with an RST (SO_LINGER 0), which is what some clouds do,
// but a user cannot tell it from a network fault. "alert" (the default, and
// "page" when no page can be served: see tlspage.go) answers with a fatal
// access_denied alert in the client's record version, so browsers and tools
// say "access denied", then shuts the write side and waits briefly for the
// client to close: closing with unread client bytes in the receive queue
// would send an RST that can overtake the alert.
func blockTLS(c *net.TCPConn, mode string, recordVersion uint16) {
	if mode == "reset" {
		c.SetLinger(0)
		c.Close()
		return
	}
	if writeAccessDenied(c, recordVersion) == nil {
		lingerAfterAlert(c)
		return
	}
	c.Close()
}

// writeAccessDenied writes a fatal access_denied alert record in the given
// record version (0 means TLS 1.0's, what a hello without one gets).
func writeAccessDenied(c *net.TCPConn, recordVersion uint16) error {
	alert := accessDeniedAlert(recordVersion)
	_, err := c.Write(alert[:])
	return err
}

// accessDeniedAlert is the fatal access_denied alert record in the given
// record version (0 means TLS 1.0's, what a hello without one gets).
func accessDeniedAlert(recordVersion uint16) [7]byte {
	if recordVersion == 0 {
		recordVersion = defaultHelloRecord
	}
	return [7]byte{recordTypeAlert, byte(recordVersion >> 8), byte(recordVersion), 0, 2, alertLevelFatal, alertAccessDenied}
}

// lingerAfterAlert half-closes c after an alert, discards what the client
// still sends for a short while, and closes c.
func lingerAfterAlert(c *net.TCPConn) {
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(tlsLingerTimeout))
	io.CopyN(io.Discard, c, tlsLingerMaxBytes)
	c.Close()
}
