package proxy

// Transparent mode: a listener with Upstream "original" receives
// connections addressed to the hosted servers themselves (intercepted by
// nftables/iptables TPROXY or REDIRECT rules) and passes each one to its
// original destination. docs/transparent.md has the rule recipes.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/metrics"
)

// Transparent modes (ListenerConfig.Transparent).
const (
	transparentTPROXY   = "tproxy"
	transparentRedirect = "redirect"
)

// Reasons a transparent listener refuses a connection, the label values of
// EdgeMetrics.TransparentRefused.
const (
	refusedNoOriginalDst = "no_original_dst" // SO_ORIGINAL_DST failed: not a NATed connection
	refusedLoop          = "loop"            // the destination is the gateway itself
	refusedNotAllowed    = "not_allowed"     // outside ListenerConfig.AllowedDestinations
)

// EdgeMetrics are the collectors of the edge-deployment features: PROXY
// protocol, protocol sniffing and transparent mode. Labels are bounded:
// listener names from config, the rest from closed sets.
type EdgeMetrics struct {
	// ProxyHeaders counts PROXY protocol headers by listener and result:
	// accepted, local (a LOCAL command, e.g. a balancer's health check:
	// the balancer's own address is used), missing (a trusted peer sent
	// none), invalid, timeout, untrusted (sent by a peer outside
	// accept_from; refused).
	ProxyHeaders *prometheus.CounterVec
	// Sniffed counts connections of auto listeners by what the first bytes
	// were: tls, http, other, silent (nothing within sniff_timeout),
	// proxy_header (an untrusted PROXY header; refused), incomplete (a
	// TLS/HTTP-looking start that stalled or ended; refused).
	Sniffed *prometheus.CounterVec
	// OtherProtocols counts auto listeners' connections that were neither
	// TLS nor HTTP, by listener and verdict (pass, block).
	OtherProtocols *prometheus.CounterVec
	// TransparentRefused counts connections a transparent listener refused
	// before any decision, by listener and reason (no_original_dst, loop,
	// not_allowed).
	TransparentRefused *prometheus.CounterVec
}

func newEdgeMetrics(reg prometheus.Registerer) *EdgeMetrics {
	ns := metrics.Namespace
	m := &EdgeMetrics{
		ProxyHeaders: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "proxy_protocol_headers_total",
			Help: "PROXY protocol headers by listener and result (accepted, local, missing, invalid, timeout, untrusted)."}, []string{"listener", "result"}),
		Sniffed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sniffed_connections_total",
			Help: "Connections of auto listeners by sniffed protocol (tls, http, other, silent, proxy_header, incomplete)."}, []string{"listener", "protocol"}),
		OtherProtocols: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "other_protocol_connections_total",
			Help: "Connections of auto listeners that were neither TLS nor HTTP, by listener and verdict."}, []string{"listener", "verdict"}),
		TransparentRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "transparent_refused_total",
			Help: "Connections transparent listeners refused before any decision, by listener and reason (no_original_dst, loop, not_allowed)."}, []string{"listener", "reason"}),
	}
	reg.MustRegister(m.ProxyHeaders, m.Sniffed, m.OtherProtocols, m.TransparentRefused)
	return m
}

// connInfo is what the Server learned about a connection before its
// protocol handler runs. Handlers copy it; it holds no pooled memory.
type connInfo struct {
	// client is the client: the source a trusted PROXY header carried,
	// else the TCP peer. Unmapped (IPv4 as IPv4).
	client netip.AddrPort
	// dst is the address the client connected to: the original
	// destination (transparent mode), else the destination a PROXY header
	// carried, else the accepted socket's local address. Unmapped.
	dst netip.AddrPort
	// upstream is dst as host:port when the listener's upstream is
	// "original": it then replaces every other upstream. "" otherwise.
	upstream string
}

// newConnInfo is the connInfo of an accepted connection before any PROXY
// header or original destination is known.
func newConnInfo(c net.Conn, client netip.AddrPort) connInfo {
	return connInfo{client: unmapAddrPort(client), dst: unmapAddrPort(addrPort(c.LocalAddr()))}
}

func unmapAddrPort(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}

// upstreamDialer dials the upstream connections of one listener: the dial
// timeout, the client's source address (SpoofSource) and the outgoing
// PROXY header (ProxyProtocol.Send).
type upstreamDialer struct {
	timeout   time.Duration
	keepAlive time.Duration // net.Dialer.KeepAlive; -1 disables
	spoof     bool
	send      byte // PROXY header version to send; 0: none
}

// dial connects to addr on behalf of the connection ci. With spoof, the
// socket is IP_TRANSPARENT and bound to the client's IP (any port), which
// only works when the client's and addr's families match and the return
// traffic is routed back to this host (docs/transparent.md); any failure is
// a dial error, never a silent fallback to the gateway's own address. With
// send, the PROXY header is written before the connection is returned.
func (d *upstreamDialer) dial(ctx context.Context, addr string, ci *connInfo) (*net.TCPConn, error) {
	nd := net.Dialer{Timeout: d.timeout, KeepAlive: d.keepAlive}
	if d.spoof {
		nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ci.client.Addr(), 0))
		nd.Control = transparentControl
	}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	up := c.(*net.TCPConn)
	if d.send != 0 {
		if err := writeProxyHeader(up, d.send, ci); err != nil {
			up.Close()
			return nil, fmt.Errorf("sending PROXY header to %s: %w", addr, err)
		}
	}
	return up, nil
}

// transparentListenControl is listenControl plus IP_TRANSPARENT, for
// listeners of tproxy mode.
func transparentListenControl(network, address string, c syscall.RawConn) error {
	if err := listenControl(network, address, c); err != nil {
		return err
	}
	return transparentControl(network, address, c)
}

// edgeRuntime is the per-listener-runtime state of the edge features.
type edgeRuntime struct {
	transparent  string         // "", tproxy or redirect
	acceptFrom   []netip.Prefix // trusted PROXY senders
	allowed      []netip.Prefix // AllowedDestinations
	local        map[netip.Addr]struct{}
	listenAddr   netip.AddrPort // configured listen address, when it is an IP literal
	dialer       upstreamDialer
	sniffTimeout time.Duration
	otherBlock   bool

	ppAccepted, ppLocal, ppMissing, ppInvalid, ppTimeout, ppUntrusted prometheus.Counter
	sniffed                                                           map[string]prometheus.Counter
	otherPass, otherBlocked                                           prometheus.Counter
	refused                                                           map[string]prometheus.Counter
}

// Defaults of the edge features.
const defaultSniffTimeout = 300 * time.Millisecond

// Sniff results, the label values of EdgeMetrics.Sniffed.
var sniffKinds = []string{sniffTLS, sniffHTTP, sniffOther, sniffSilent, sniffProxyHeader, sniffIncomplete}

// newEdgeRuntime builds the edge state of listener lc; dial is the
// resolved dial timeout.
func newEdgeRuntime(lc ListenerConfig, dial time.Duration, m *Metrics, log *slog.Logger) *edgeRuntime {
	e := &edgeRuntime{
		transparent:  lc.Transparent,
		acceptFrom:   lc.ProxyProtocol.AcceptFrom,
		allowed:      lc.AllowedDestinations,
		dialer:       upstreamDialer{timeout: dial, keepAlive: -1, spoof: lc.SpoofSource},
		sniffTimeout: lc.SniffTimeout,
		otherBlock:   lc.OtherProtocols == "block",
	}
	if e.sniffTimeout <= 0 {
		e.sniffTimeout = defaultSniffTimeout
	}
	switch lc.ProxyProtocol.Send {
	case "v1":
		e.dialer.send = 1
	case "v2":
		e.dialer.send = 2
	}
	if ap, err := netip.ParseAddrPort(lc.Address); err == nil {
		e.listenAddr = unmapAddrPort(ap)
	}
	if e.transparent != "" {
		e.local = localAddrs(log)
	}
	// Series exist only for the features a listener uses.
	em, n := m.Edge, lc.Name
	e.ppAccepted, e.ppLocal, e.ppMissing, e.ppInvalid, e.ppTimeout, e.ppUntrusted = nopCounter, nopCounter, nopCounter, nopCounter, nopCounter, nopCounter
	if len(e.acceptFrom) > 0 {
		e.ppAccepted = em.ProxyHeaders.WithLabelValues(n, "accepted")
		e.ppLocal = em.ProxyHeaders.WithLabelValues(n, "local")
		e.ppMissing = em.ProxyHeaders.WithLabelValues(n, "missing")
		e.ppInvalid = em.ProxyHeaders.WithLabelValues(n, "invalid")
		e.ppTimeout = em.ProxyHeaders.WithLabelValues(n, "timeout")
		e.ppUntrusted = em.ProxyHeaders.WithLabelValues(n, "untrusted")
	}
	if lc.Protocol == "auto" {
		e.sniffed = make(map[string]prometheus.Counter, len(sniffKinds))
		for _, k := range sniffKinds {
			e.sniffed[k] = em.Sniffed.WithLabelValues(n, k)
		}
		e.otherPass = em.OtherProtocols.WithLabelValues(n, "pass")
		e.otherBlocked = em.OtherProtocols.WithLabelValues(n, "block")
	}
	if e.transparent != "" {
		e.refused = map[string]prometheus.Counter{
			refusedNoOriginalDst: em.TransparentRefused.WithLabelValues(n, refusedNoOriginalDst),
			refusedLoop:          em.TransparentRefused.WithLabelValues(n, refusedLoop),
			refusedNotAllowed:    em.TransparentRefused.WithLabelValues(n, refusedNotAllowed),
		}
	}
	return e
}

// nopCounter stands in for the counters of a feature a listener does not
// use, so that it exports no series for it.
var nopCounter prometheus.Counter = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused", Help: "Never registered."})

// localAddrs returns the addresses of this host's interfaces (in its
// network namespace), the destinations a transparent listener never dials:
// a connection to the gateway itself would loop. Taken when the listener
// runtime is built (start and every reload).
func localAddrs(log *slog.Logger) map[netip.Addr]struct{} {
	set := make(map[netip.Addr]struct{})
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		// Loopback, unspecified and the listener's own address are still
		// refused; see isLoop.
		log.Warn("listing local addresses for the transparent loop guard", "error", err)
		return set
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			set[p.Addr().Unmap()] = struct{}{}
		}
	}
	return set
}

// originalDst returns the original destination of c, intercepted in mode
// (tproxy or redirect), unmapped.
func originalDst(c *net.TCPConn, mode string) (netip.AddrPort, error) {
	local := unmapAddrPort(addrPort(c.LocalAddr()))
	if mode == transparentTPROXY {
		// TPROXY delivers the connection without rewriting it: the
		// accepted socket's local address is the one the client dialled.
		return local, nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		// A v4-mapped connection on a dual-stack socket was NATed by the
		// IPv4 conntrack: ask at SOL_IP (the kernel routes it there).
		dst, serr = getOriginalDst(int(fd), !local.Addr().Is4())
	})
	if err == nil {
		err = serr
	}
	return dst, err
}

// errTransparent marks a connection a transparent listener refuses.
var errTransparent = errors.New("transparent destination refused")

// resolveOriginal finds c's original destination and checks that it may be
// dialled. It returns the refusal reason ("" when allowed).
func (e *edgeRuntime) resolveOriginal(c *net.TCPConn) (netip.AddrPort, string, error) {
	dst, err := originalDst(c, e.transparent)
	if err != nil || !dst.IsValid() || dst.Port() == 0 {
		return dst, refusedNoOriginalDst, fmt.Errorf("%w: no original destination: %v", errTransparent, err)
	}
	if e.transparent == transparentRedirect && dst == unmapAddrPort(addrPort(c.LocalAddr())) {
		// Not rewritten by a REDIRECT rule: the client dialled the
		// listener itself, and passing it "on" would dial us again.
		return dst, refusedLoop, fmt.Errorf("%w: %s was not redirected (a direct connection to the listener)", errTransparent, dst)
	}
	if e.isLoop(dst) {
		return dst, refusedLoop, fmt.Errorf("%w: %s is the gateway itself", errTransparent, dst)
	}
	if len(e.allowed) > 0 && !inPrefixes(e.allowed, dst.Addr()) {
		return dst, refusedNotAllowed, fmt.Errorf("%w: %s is not in allowed_destinations", errTransparent, dst)
	}
	return dst, "", nil
}

// isLoop reports whether dialling dst would reach the gateway itself:
// loopback, unspecified or multicast addresses, the listener's own address,
// or any address of one of this host's interfaces (on any port: the hosted
// servers are never the gateway).
func (e *edgeRuntime) isLoop(dst netip.AddrPort) bool {
	a := dst.Addr()
	if a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() {
		return true
	}
	if dst == e.listenAddr {
		return true
	}
	_, local := e.local[a]
	return local
}

// inPrefixes reports whether a is in one of ps.
func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// validateEdge checks the edge-deployment fields of listener l (field
// prefix f, e.g. "listeners[0].").
func validateEdge(l ListenerConfig, f string, bad func(field, format string, args ...any) error) error {
	original := l.Upstream == UpstreamOriginal
	switch l.Transparent {
	case "":
		if original {
			return bad(f+"transparent", "required with upstream \"original\": tproxy or redirect")
		}
	case transparentTPROXY, transparentRedirect:
		if !transparentSupported {
			return bad(f+"transparent", "%q needs Linux (IP_TRANSPARENT, SO_ORIGINAL_DST); this build is for %s", l.Transparent, runtime.GOOS)
		}
		if !original {
			return bad(f+"transparent", "%q needs upstream \"original\"", l.Transparent)
		}
	default:
		return bad(f+"transparent", "%q: want tproxy or redirect", l.Transparent)
	}
	if original && l.Protocol == "quic" {
		return bad(f+"upstream", "\"original\" is for tcp listeners (http, tls, auto), not quic")
	}
	if l.SpoofSource && l.Transparent == "" {
		return bad(f+"spoof_source", "needs transparent: tproxy or redirect (and the policy routing of docs/transparent.md)")
	}
	if len(l.AllowedDestinations) > 0 && !original {
		return bad(f+"allowed_destinations", "only applies with upstream \"original\"")
	}
	for i, p := range l.AllowedDestinations {
		if !p.IsValid() {
			return bad(fmt.Sprintf("%sallowed_destinations[%d]", f, i), "invalid prefix")
		}
	}
	switch l.OtherProtocols {
	case "", "pass", "block":
		if l.OtherProtocols != "" && l.Protocol != "auto" {
			return bad(f+"other_protocols", "only applies to protocol auto")
		}
	default:
		return bad(f+"other_protocols", "%q: want pass or block", l.OtherProtocols)
	}
	if l.SniffTimeout < 0 {
		return bad(f+"sniff_timeout", "%v: must not be negative", l.SniffTimeout)
	}
	if l.SniffTimeout != 0 && l.Protocol != "auto" {
		return bad(f+"sniff_timeout", "only applies to protocol auto")
	}
	pp := l.ProxyProtocol
	if l.Protocol == "quic" && (len(pp.AcceptFrom) > 0 || pp.Send != "") {
		return bad(f+"proxy_protocol", "not supported on quic listeners")
	}
	for i, p := range pp.AcceptFrom {
		if !p.IsValid() {
			return bad(fmt.Sprintf("%sproxy_protocol.accept_from[%d]", f, i), "invalid prefix")
		}
	}
	switch pp.Send {
	case "", "v1", "v2":
	default:
		return bad(f+"proxy_protocol.send", "%q: want v1 or v2", pp.Send)
	}
	return nil
}
