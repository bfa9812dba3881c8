package proxy

// QUIC listeners (protocol "quic"): decide each QUIC connection on the SNI
// of its ClientHello, read from the client's Initial packets without
// taking part in the handshake.
//
// One goroutine reads the listening UDP socket. Datagrams are grouped into
// flows keyed by client address and Destination Connection ID. A new flow
// starts with a client Initial (a datagram of at least 1200 bytes, as RFC
// 9000 14.1 requires of clients); its datagrams are buffered (bounded)
// while sni.Initials decrypts the Initials and reassembles the CRYPTO
// frames, in any order and across datagrams. When the hello is complete
// the flow is decided once:
//
//   - pass: a connected UDP socket to the upstream is opened for the flow,
//     the buffered datagrams are sent, and from then on the client's
//     datagrams go out through it while a goroutine sends the upstream's
//     answers back to the client from the listening socket. The server's
//     Source Connection IDs seen in its long header packets are added as
//     aliases of the flow, so the client's later Initial and Handshake
//     packets (addressed to them) find it; short header packets are
//     matched by client address alone. A flow ends after Timeouts.QUICIdle
//     without a datagram either way.
//   - block: nothing is ever sent to the upstream, and no socket towards it
//     is opened. With Policy.QUICBlock "close" (the default) the client
//     gets a server Initial packet carrying CONNECTION_CLOSE with
//     CRYPTO_ERROR access_denied (0x131, the QUIC form of the TLS alert
//     the tls listener sends) and the reason code as its reason phrase. A
//     QUIC client ends the connection attempt on it at once instead of
//     retrying until its handshake timeout, and browsers then mark QUIC
//     broken for the origin and use TCP, where the tls listener explains
//     the block. 0x131 rather than NO_ERROR (0x0): NO_ERROR during a
//     handshake reads as "the server went away" and some clients retry.
//     Policy.QUICBlock "drop" stays silent (the client times out, typically
//     after its handshake timeout, before falling back).
//
// A client Initial for an unknown DCID from an address that already has a
// flow starts a new flow with its own decision, so a client cannot open a
// blocked connection over a socket it used for a filed one.
//
// ECH: like TLS, a QUIC hello with an encrypted_client_hello extension is
// decided on its outer (public) name, the only name a gateway can read;
// such hellos are counted in Metrics.ECHHellos. Browsers send GREASE ECH
// without a real inner hello, so the count is an upper bound.
//
// CRYPTO conflicts: a client that sends CRYPTO bytes differing from bytes
// of the same offsets it sent before is refused (sni.ErrCryptoConflict).
// The origin keeps the first copy it receives, so only a client whose
// copies all agree is certain to show the origin the name the gateway
// decided on. For the same reason the gateway reads packets as the origin
// does: a packet whose packet number was seen before is discarded by the
// origin unread (RFC 9000 12.3), so one that carries CRYPTO bytes not
// received before refuses the flow too.
//
// The Initial phase after a pass: the origin goes on reading the client's
// Initial packets after the decision, so a passing flow keeps its
// reassembly state and every client datagram is read before it is
// forwarded, until the origin has sent a Handshake packet (it has read a
// ClientHello and answered with its ServerHello, after which Initial
// CRYPTO data cannot change the hello). CRYPTO bytes that differ from
// those decided on, new bytes in a packet the origin discards, an
// undecryptable Initial or CRYPTO data past the hello other than a second
// ClientHello end the flow (crypto_conflict, malformed or too_large; it
// stays blocked for quicBlockedTTL). A second ClientHello (after a
// HelloRetryRequest, which the origin sends in an Initial packet) is
// decided like the first, and one naming another server is blocked as
// hrr_sni_mismatch, as on the tls listeners. A Retry from the origin
// re-keys the reassembly to the connection ID the client's next Initials
// use; the bytes decided on stay, and the client must send them again
// unchanged. Only the origin's first Retry reaches the client (later ones
// are counted as extra_retry), so the client follows the one the gateway
// does. Until the phase ends the state is charged to
// Limits.MaxQUICPendingBytes like an undecided flow's (over it the flow is
// ended, oldest first), and it must end within Timeouts.Hello of the
// decision (else hello_timeout ends the flow): failing open instead would
// let a client wait the check out.
//
// Limits: at most Limits.MaxQUICFlows flows per listener and
// Limits.MaxConnsPerIP per client IP (pending, passing and recently
// blocked; a datagram that would start one more is dropped). An undecided
// flow buffers at most quicMaxPending datagrams of at most
// quicMaxPendingDatagram bytes, quicMaxPendingBytes in all, and reads at
// most quicMaxHelloBytes of CRYPTO data; all undecided flows of a listener
// together hold at most Limits.MaxQUICPendingBytes (datagrams and
// reassembly buffers), over which the oldest are ended first. The hello
// must be complete within Timeouts.Hello, and sni's cap on packets
// applies. Every dropped datagram is counted in Metrics.QUICDrops by
// reason.
//
// Drain: a QUIC flow's only way back to its client is the listening
// socket, which a drain or Reload closes with the listener, so open QUIC
// flows end then (clients reconnect; browsers fall back to TCP meanwhile).

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/icpgate/icpgate/sni"
	"github.com/prometheus/client_golang/prometheus"
)

// QUIC defaults and fixed bounds.
const (
	quicBlockClose = "close"
	quicBlockDrop  = "drop"

	defaultQUICIdle     = 60 * time.Second
	defaultMaxQUICFlows = 10000

	quicMinInitial         = 1200             // RFC 9000 14.1: a client's Initial datagram is at least this big
	quicMaxDatagram        = 1<<16 - 1        // largest UDP payload read
	quicMaxPending         = 32               // datagrams buffered per undecided flow
	quicBlockedTTL         = 10 * time.Second // how long a blocked flow is remembered (its retransmits are dropped cheaply)
	quicMaxCloses          = 3                // CONNECTION_CLOSE packets sent per blocked flow
	quicMaxAliases         = 8                // server connection IDs remembered per flow
	quicJanitorPeriod      = time.Second
	quicSCIDLen            = 8
	quicDownstreamBufBytes = 2048 // per passing flow's read buffer (QUIC stacks send at most about 1500)

	// quicMaxPendingDatagram is the largest datagram an undecided flow
	// buffers. Before the server answers, a client knows nothing of the
	// path MTU: it sends datagrams of 1200 bytes or a little more (RFC
	// 9000 14) and probes for larger ones only on an established
	// connection, and no UDP payload over a 1500-byte Ethernet MTU
	// exceeds 1500 bytes.
	quicMaxPendingDatagram = 1500
	// quicMaxPendingBytes caps the datagrams one undecided flow buffers.
	// A real hello, post-quantum key share included, takes 2-3 Initial
	// datagrams; the rest of the room is for 0-RTT packets sent with it,
	// which a client sends again after the handshake if they are dropped.
	quicMaxPendingBytes = 32 << 10
	// quicMaxHelloBytes caps the CRYPTO stream one flow reassembles (and
	// so its reassembly buffer). Real hellos are a few KiB; one this large
	// would already need more Initial datagrams than quicMaxPendingBytes
	// holds. A client refused for it falls back to TCP, whose hello
	// reader allows 64 KiB.
	quicMaxHelloBytes = 16 << 10
	// quicPooledInitials is the largest reassembly state (sni.Initials
	// Footprint) put back in the pool: a real hello's, with room to spare.
	quicPooledInitials = 8 << 10
	// defaultMaxQUICPendingBytes is Limits.MaxQUICPendingBytes's default:
	// room for a few thousand real undecided flows at once (each holds a
	// few KiB for one round trip), while a flood of flows stuffed to their
	// caps costs a listener no more than this.
	defaultMaxQUICPendingBytes = 16 << 20
)

// QUIC drop reasons, the reason label values of Metrics.QUICDrops.
const (
	quicDropNoFlow       = "no_flow"         // not an Initial and no flow matches
	quicDropVersion      = "version"         // a QUIC version other than v1 and v2
	quicDropSmall        = "short_initial"   // an Initial datagram under 1200 bytes
	quicDropMalformed    = "malformed"       // undecryptable or malformed Initial (the flow is refused)
	quicDropTooLarge     = "too_large"       // hello over sni's caps, or a truncated datagram
	quicDropFlowLimit    = "flow_limit"      // Limits.MaxQUICFlows reached
	quicDropIPLimit      = "ip_limit"        // Limits.MaxConnsPerIP flows of one client IP reached
	quicDropPendingLimit = "pending_limit"   // too many datagrams before the hello was complete
	quicDropEvicted      = "pending_budget"  // an undecided flow ended, oldest first, over Limits.MaxQUICPendingBytes
	quicDropConflict     = "crypto_conflict" // CRYPTO bytes differing from those sent before (the flow is refused)
	quicDropHelloTimeout = "hello_timeout"   // hello not complete within Timeouts.Hello
	quicDropBlocked      = "blocked"         // datagrams of a blocked flow
	quicDropUpstream     = "upstream"        // no upstream, or sending to it failed
	quicDropRetry        = "extra_retry"     // an origin's Retry after the first one, which the client follows
)

var quicDropReasons = []string{quicDropNoFlow, quicDropVersion, quicDropSmall, quicDropMalformed, quicDropTooLarge,
	quicDropFlowLimit, quicDropIPLimit, quicDropPendingLimit, quicDropEvicted, quicDropConflict, quicDropHelloTimeout,
	quicDropBlocked, quicDropUpstream, quicDropRetry}

// Flow states.
const (
	flowPending = iota // reading the hello
	flowDialing        // passed; the upstream socket is being opened
	flowPass           // forwarding
	flowBlocked        // refused; remembered for quicBlockedTTL
	flowClosed         // removed from the table
)

// cid is a connection ID as a comparable map key part.
type cid struct {
	n uint8
	b [20]byte
}

func makeCID(b []byte) cid {
	var c cid
	c.n = uint8(copy(c.b[:], b))
	return c
}

// flowKey identifies a flow by client address and a DCID the client uses.
type flowKey struct {
	client netip.AddrPort
	dcid   cid
}

// quicFlow is one client QUIC connection as the gateway sees it.
type quicFlow struct {
	client  netip.AddrPort
	key     flowKey   // the client's first DCID
	created time.Time // for the hello deadline and the blocked TTL
	last    atomic.Int64

	mu    sync.Mutex // guards the fields below
	state int
	// in reassembles the client's Initials: while pending, and after a
	// pass until the origin has left its Initial packets behind.
	in            *sni.Initials
	decided       time.Time // when the hello passed (the Initial phase's deadline starts)
	blockedAt     time.Time // for the blocked TTL
	secondDecided bool      // a second ClientHello was decided
	retried       bool      // the origin's first Retry was forwarded
	pending       [][]byte
	pendingBytes  int
	charged       int // bytes counted in quicListener.buffered: pendingBytes and in's buffers
	// older and newer link the flows that hold buffers (charged > 0 or
	// pending), oldest first; guarded by quicListener.bmu, not mu.
	older, newer *quicFlow
	listed       bool         // guarded by quicListener.bmu
	up           *net.UDPConn // dialing: nil; pass: set
	aliases      []cid
	version      uint32
	clientSCID   cid
	closes       int
	reason       string
}

// quicListener serves one bound quic listener.
type quicListener struct {
	s   *Server
	l   *listener
	pc  *net.UDPConn
	log *slog.Logger

	flowsCreated prometheus.Counter
	active       prometheus.Gauge
	drops        map[string]prometheus.Counter
	ech          prometheus.Counter
	decisions    *decisionCounter

	mu     sync.Mutex // guards flows, byAddr and perIP
	flows  map[flowKey]*quicFlow
	byAddr map[netip.AddrPort]*quicFlow // the latest passing flow of each client address
	perIP  map[netip.Addr]int           // flows by client IP

	// buffered is what undecided flows hold: their datagrams and
	// reassembly buffers. Changed with the flow's mu held.
	buffered atomic.Int64
	bmu      sync.Mutex // guards oldest, newest and the flows' older, newer and listed
	oldest   *quicFlow  // the flows holding buffers, by creation
	newest   *quicFlow

	wg sync.WaitGroup // flow goroutines
}

// initialsPool recycles hello reassembly state between flows.
var initialsPool = sync.Pool{New: func() any { return new(sni.Initials) }}

// bindQUIC opens the UDP socket of a quic listener, with SO_REUSEPORT like
// the TCP listeners.
func bindQUIC(lc ListenerConfig) (*net.UDPConn, error) {
	lcfg := net.ListenConfig{Control: reusePortControl}
	pc, err := lcfg.ListenPacket(context.Background(), "udp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: binding udp %s: %w", lc.Name, lc.Address, err)
	}
	return pc.(*net.UDPConn), nil
}

// serveQUIC runs the read loop of quic listener l until its socket is
// closed, then ends every flow and waits for their goroutines.
func (s *Server) serveQUIC(l *listener) {
	name := l.name
	q := &quicListener{
		s:            s,
		l:            l,
		pc:           l.pc,
		log:          s.log.With("listener", name),
		flowsCreated: s.m.QUICFlows.WithLabelValues(name),
		active:       s.m.QUICActiveFlows.WithLabelValues(name),
		drops:        make(map[string]prometheus.Counter, len(quicDropReasons)),
		ech:          s.m.ECHHellos.WithLabelValues("quic"),
		decisions:    newDecisionCounter(s.m.Decisions, "quic", s.cfg.Outcomes),
		flows:        map[flowKey]*quicFlow{},
		byAddr:       map[netip.AddrPort]*quicFlow{},
		perIP:        map[netip.Addr]int{},
	}
	for _, r := range quicDropReasons {
		q.drops[r] = s.m.QUICDrops.WithLabelValues(name, r)
	}
	stop := make(chan struct{})
	janitorDone := make(chan struct{})
	go func() {
		defer close(janitorDone)
		q.janitor(stop)
	}()
	q.readLoop()
	close(stop)
	<-janitorDone
	q.closeAll()
	q.wg.Wait()
}

// readLoop reads client datagrams until the socket is closed.
func (q *quicListener) readLoop() {
	buf := make([]byte, quicMaxDatagram)
	var backoff time.Duration
	for {
		n, _, flags, client, err := q.pc.ReadMsgUDPAddrPort(buf, nil)
		if err != nil {
			if q.l.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
				q.log.Warn("reading quic listener failed, backing off", "error", err)
			} else {
				backoff = min(2*backoff, time.Second)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if flags&msgTrunc != 0 {
			q.drops[quicDropTooLarge].Inc()
			continue
		}
		q.handle(buf[:n], netip.AddrPortFrom(client.Addr().Unmap(), client.Port()))
	}
}

// handle routes one client datagram.
func (q *quicListener) handle(b []byte, client netip.AddrPort) {
	rt := q.l.rt.Load()
	h, ok := sni.ParseQUICHeader(b)
	if !ok {
		q.drops[quicDropNoFlow].Inc()
		return
	}
	var f, alt *quicFlow
	q.mu.Lock()
	if h.Long {
		if f = q.flows[flowKey{client, makeCID(h.DCID)}]; f == nil {
			alt = q.byAddr[client]
		}
	} else {
		f = q.byAddr[client]
	}
	q.mu.Unlock()
	// A long header packet to a connection ID we did not see: a 0-RTT or
	// Handshake packet, or an Initial to a server-issued ID (quic-go
	// clients send those), belongs to the client's passing flow; but an
	// Initial only if it opens with that flow's Initial keys, else it is
	// another connection from the same socket, with its own decision.
	if alt != nil && (!h.Initial || sni.InitialOpens(b, alt.key.dcid.b[:alt.key.dcid.n])) {
		f = alt
	}
	if f != nil {
		q.onFlow(rt, f, b, h)
		q.evictOver(maxQUICPending(rt))
		return
	}
	switch {
	case h.Long && h.Version != sni.QUICv1 && h.Version != sni.QUICv2:
		q.drops[quicDropVersion].Inc()
		return
	case !h.Initial:
		q.drops[quicDropNoFlow].Inc()
		return
	case len(b) < quicMinInitial:
		q.drops[quicDropSmall].Inc()
		return
	case len(b) > quicMaxPendingDatagram:
		q.drops[quicDropTooLarge].Inc()
		return
	}
	f = &quicFlow{client: client, key: flowKey{client, makeCID(h.DCID)}, created: time.Now(),
		state: flowPending, version: h.Version, clientSCID: makeCID(h.SCID)}
	f.last.Store(f.created.UnixNano())
	q.mu.Lock()
	if len(q.flows) >= maxQUICFlows(rt) {
		q.mu.Unlock()
		q.drops[quicDropFlowLimit].Inc()
		return
	}
	if q.perIP[client.Addr()] >= maxQUICPerIP(rt) {
		q.mu.Unlock()
		q.drops[quicDropIPLimit].Inc()
		return
	}
	q.flows[f.key] = f
	q.perIP[client.Addr()]++
	q.mu.Unlock()
	q.flowsCreated.Inc()
	q.active.Inc()
	f.in = initialsPool.Get().(*sni.Initials)
	f.in.Options.MaxCryptoBytes = quicMaxHelloBytes
	q.list(f)
	q.onFlow(rt, f, b, h)
	q.evictOver(maxQUICPending(rt))
}

// onFlow handles a datagram of an existing flow.
func (q *quicListener) onFlow(rt *listenerRuntime, f *quicFlow, b []byte, h sni.QUICHeader) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch f.state {
	case flowPass:
		if f.in != nil && !q.check(rt, f, b) {
			return
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := f.up.Write(b); err != nil {
			q.drops[quicDropUpstream].Inc() // e.g. ECONNREFUSED from an ICMP error: the flow goes on
			return
		}
		rt.bytesUp.Add(float64(len(b)))
	case flowDialing:
		// Checked before buffering: buffer refuses the flow for an
		// Initial it cannot hold, and then nothing it holds is sent.
		if f.in == nil || q.check(rt, f, b) {
			q.buffer(f, b, h.Initial)
		}
	case flowBlocked:
		q.drops[quicDropBlocked].Inc()
		if h.Initial {
			q.sendClose(rt, f)
		}
	case flowClosed:
		q.drops[quicDropNoFlow].Inc()
	case flowPending:
		if !q.buffer(f, b, h.Initial) {
			return
		}
		// Every datagram is read, not only those that start with an
		// Initial: the origin reads an Initial coalesced after a 0-RTT
		// packet too, and the gateway must have seen every CRYPTO byte
		// the origin gets.
		hello, err := f.in.Add(b)
		q.charge(f)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return
		}
		if !h.Initial && (errors.Is(err, sni.ErrNotInitial) || errors.Is(err, sni.ErrQUICVersion)) {
			return // 0-RTT or the like, buffered until the decision
		}
		if err != nil {
			// Fail closed: a hello that cannot be read is never passed.
			q.drops[helloDropReason(err)].Add(float64(len(f.pending)))
			if q.log.Enabled(context.Background(), slog.LevelDebug) {
				q.log.Debug("quic hello not read", "client", f.client.Addr().String(), "error", err)
			}
			q.block(f, "")
			return
		}
		if hello.ECH {
			q.ech.Inc()
		}
		// hello aliases f.in's buffer: decide before releasing it. Decide
		// does not retain the name.
		d := q.s.dec.Decide(hello.ServerName)
		rt.withoutSNI(hello.ServerName, &d)
		q.countDecision(&d)
		if !d.Pass {
			if q.log.Enabled(context.Background(), slog.LevelDebug) {
				q.log.Debug("quic blocked", "sni", hello.ServerName, "reason", d.Reason, "client", f.client.Addr().String())
			}
			q.drops[quicDropBlocked].Add(float64(len(f.pending)))
			q.refuse(rt, f, &d)
			return
		}
		addr := d.Upstream
		if addr == "" {
			addr = rt.cfg.Upstream
		}
		// f.in stays: the origin reads the client's Initials until it
		// sends a Handshake packet, and so does check.
		f.decided = time.Now()
		if addr == "" {
			// Fail closed, as the tls listener does.
			rt.upNone.Inc()
			if !rt.warnedNoUpstream.Swap(true) {
				rt.log.Warn("passing quic flow has no upstream: the listener has none and the decision named none; dropping such flows",
					"domain", d.Domain, "reason", d.Reason)
			}
			q.drops[quicDropUpstream].Add(float64(len(f.pending)))
			q.block(f, "") // silently: this is not a filing block
			return
		}
		f.state = flowDialing
		q.wg.Add(1)
		go q.runFlow(rt, f, addr)
	}
}

// helloDropReason is the drop reason of an sni.Initials error.
func helloDropReason(err error) string {
	switch {
	case errors.Is(err, sni.ErrCryptoConflict):
		return quicDropConflict
	case errors.Is(err, sni.ErrTooLarge):
		return quicDropTooLarge
	}
	return quicDropMalformed
}

// refuse blocks f on decision d (not a pass) and answers the client as
// Policy.QUICBlock says. f.mu held.
func (q *quicListener) refuse(rt *listenerRuntime, f *quicFlow, d *Decision) {
	q.s.obs.observe(d, rt.cfg.Upstream, netip.AddrPort{}) // never transparent
	q.end(f, d.Reason)
	if rt.quicBlock != quicBlockDrop {
		q.sendClose(rt, f)
	}
}

// check reads datagram b of a passed flow (dialing or passing) whose
// origin may still read Initial packets, before it is forwarded, and
// reports whether it may be. It may not, and the flow is ended, when b
// holds CRYPTO data the origin could read differently from what the flow
// was decided on (sni.Initials.Add), or a second ClientHello that is not
// decided a pass. f.mu held.
func (q *quicListener) check(rt *listenerRuntime, f *quicFlow, b []byte) bool {
	first, err := f.in.Add(b)
	q.charge(f)
	if err != nil {
		// Fail closed: what the origin reads next is not what was decided.
		q.drops[helloDropReason(err)].Add(float64(len(f.pending) + 1))
		if q.log.Enabled(context.Background(), slog.LevelDebug) {
			q.log.Debug("quic flow ended after its decision", "client", f.client.Addr().String(), "error", err)
		}
		q.end(f, "")
		return false
	}
	second, ok := f.in.SecondHello()
	if !ok || f.secondDecided {
		return true
	}
	// The origin asked for a second hello (HelloRetryRequest) and serves
	// the connection on it. The name must be the first one's (TLS 1.3
	// requires it, but the origin need not check), and it is decided
	// again: the registry may have changed meanwhile. The upstream chosen
	// for the first hello stays.
	f.secondDecided = true
	d := Decision{Reason: reasonRetryMismatch}
	if sameServerName(first.ServerName, first.HasSNI, &second) {
		d = q.s.dec.Decide(second.ServerName)
		rt.withoutSNI(second.ServerName, &d)
	}
	q.countDecision(&d)
	if d.Pass {
		return true
	}
	if q.log.Enabled(context.Background(), slog.LevelDebug) {
		q.log.Debug("quic blocked: the hello after a retry", "sni", second.ServerName, "first_sni", first.ServerName,
			"reason", d.Reason, "client", f.client.Addr().String())
	}
	q.drops[quicDropBlocked].Add(float64(len(f.pending) + 1))
	q.refuse(rt, f, &d)
	return false
}

// end refuses f, undecided or passed: it is blocked (for quicBlockedTTL,
// so the client's later datagrams are dropped cheaply), forgets what it
// buffered and, once passed, closes its upstream socket, which ends
// runFlow. f.mu held.
func (q *quicListener) end(f *quicFlow, reason string) {
	q.block(f, reason)
	if f.up != nil {
		f.up.Close()
	}
}

// buffer keeps a copy of b for sending once the flow passes, and reports
// whether it did. A datagram over quicMaxPendingDatagram is dropped, and
// so is one past the flow's caps that does not start with an Initial
// (0-RTT data, sent again after the handshake); an Initial past the caps
// refuses the flow. Dropped datagrams are neither read nor forwarded, so
// the origin still gets every byte the decision is made on. f.mu held.
func (q *quicListener) buffer(f *quicFlow, b []byte, initial bool) bool {
	switch {
	case len(b) > quicMaxPendingDatagram:
		q.drops[quicDropTooLarge].Inc()
		return false
	case len(f.pending) < quicMaxPending && f.pendingBytes+len(b) <= quicMaxPendingBytes:
	case !initial:
		q.drops[quicDropPendingLimit].Inc()
		return false
	default:
		q.drops[quicDropPendingLimit].Add(float64(len(f.pending) + 1))
		q.block(f, "")
		return false
	}
	f.pending = append(f.pending, append([]byte(nil), b...))
	f.pendingBytes += len(b)
	q.charge(f)
	return true
}

// block marks f refused and forgets what it buffered. f.mu held.
func (q *quicListener) block(f *quicFlow, reason string) {
	f.state = flowBlocked
	f.reason = reason
	f.blockedAt = time.Now()
	q.unbuffer(f)
}

// unbuffer forgets f's buffered datagrams and reassembly state. f.mu held.
func (q *quicListener) unbuffer(f *quicFlow) {
	f.pending, f.pendingBytes = nil, 0
	q.releaseInitials(f)
	q.charge(f)
}

// charge brings quicListener.buffered up to date with what f holds now,
// and takes f off the list of flows holding buffers once it holds none.
// f.mu held.
func (q *quicListener) charge(f *quicFlow) {
	n := f.pendingBytes
	if f.in != nil {
		n += f.in.Footprint()
	}
	q.buffered.Add(int64(n - f.charged))
	f.charged = n
	if n == 0 && f.in == nil {
		q.bmu.Lock()
		if f.listed {
			if f.older != nil {
				f.older.newer = f.newer
			} else {
				q.oldest = f.newer
			}
			if f.newer != nil {
				f.newer.older = f.older
			} else {
				q.newest = f.older
			}
			f.older, f.newer, f.listed = nil, nil, false
		}
		q.bmu.Unlock()
	}
}

// list puts the new flow f at the young end of the flows holding buffers.
func (q *quicListener) list(f *quicFlow) {
	q.bmu.Lock()
	f.older, f.listed = q.newest, true
	if q.newest != nil {
		q.newest.newer = f
	} else {
		q.oldest = f
	}
	q.newest = f
	q.bmu.Unlock()
}

// evictOver ends the oldest undecided flows while the listener's flows
// hold more than budget bytes. Oldest first: a real client's flow is
// decided within a round trip, so the flows that have waited longest are
// the likeliest to be a flood's. Called with no flow's mu held.
func (q *quicListener) evictOver(budget int64) {
	for q.buffered.Load() > budget {
		q.bmu.Lock()
		f := q.oldest
		q.bmu.Unlock()
		if f == nil {
			return
		}
		f.mu.Lock()
		if f.state == flowPending || f.state == flowDialing || f.state == flowPass && f.in != nil {
			// A passed flow still in its Initial phase is ended too:
			// dropping its state would forward its Initials unread.
			q.drops[quicDropEvicted].Add(float64(len(f.pending)))
			q.end(f, "")
		} else {
			q.unbuffer(f) // a flow holds buffers only while undecided or dialing: unlists it
		}
		f.mu.Unlock()
	}
}

// releaseInitials returns f's reassembly state to the pool, unless its
// buffers grew past what a real hello needs: the pool would keep a
// flood's buffers alive after its flows ended. f.mu held.
func (q *quicListener) releaseInitials(f *quicFlow) {
	if f.in != nil {
		if f.in.Footprint() <= quicPooledInitials {
			f.in.Reset()
			initialsPool.Put(f.in)
		}
		f.in = nil
	}
}

// sendClose answers a blocked flow's Initial with CONNECTION_CLOSE, at most
// quicMaxCloses times per flow. f.mu held.
func (q *quicListener) sendClose(rt *listenerRuntime, f *quicFlow) {
	if rt.quicBlock == quicBlockDrop || f.closes >= quicMaxCloses || f.reason == "" {
		return
	}
	f.closes++
	var scid [quicSCIDLen]byte
	rand.Read(scid[:])
	var buf [128]byte
	pkt, err := sni.AppendInitialClose(buf[:0], f.version, f.key.dcid.b[:f.key.dcid.n], f.clientSCID.b[:f.clientSCID.n],
		scid[:], sni.QUICAccessDenied, "icp filing: "+f.reason)
	if err != nil {
		return
	}
	q.pc.WriteToUDPAddrPort(pkt, f.client)
}

// countDecision counts a QUIC decision.
func (q *quicListener) countDecision(d *Decision) { q.decisions.count(d) }

// runFlow opens the upstream socket of a passing flow, sends what was
// buffered and relays the upstream's datagrams to the client until the
// flow is idle for its timeout or the listener closes.
func (q *quicListener) runFlow(rt *listenerRuntime, f *quicFlow, addr string) {
	defer q.wg.Done()
	defer func() {
		f.mu.Lock()
		blocked := f.state == flowBlocked
		f.mu.Unlock()
		if !blocked { // a refused flow stays blocked until the janitor removes it
			q.remove(f)
		}
	}()
	ua, err := net.ResolveUDPAddr("udp", addr)
	var up *net.UDPConn
	if err == nil {
		up, err = net.DialUDP("udp", nil, ua)
	}
	if err != nil {
		rt.upDial.Inc()
		if q.log.Enabled(context.Background(), slog.LevelDebug) {
			q.log.Debug("quic upstream socket failed", "upstream", addr, "error", err)
		}
		f.mu.Lock()
		q.drops[quicDropUpstream].Add(float64(len(f.pending)))
		q.unbuffer(f)
		f.mu.Unlock()
		return
	}
	defer up.Close()
	f.mu.Lock()
	if f.state != flowDialing { // closed with the listener, or refused for buffering too much
		f.mu.Unlock()
		return
	}
	for _, b := range f.pending {
		if _, err := up.Write(b); err == nil {
			rt.bytesUp.Add(float64(len(b)))
		}
	}
	f.pending, f.pendingBytes = nil, 0
	q.charge(f)
	f.up = up
	f.state = flowPass
	f.mu.Unlock()
	q.mu.Lock()
	f.mu.Lock()
	if f.state == flowPass {
		q.byAddr[f.client] = f
	}
	f.mu.Unlock()
	q.mu.Unlock()
	f.last.Store(time.Now().UnixNano())

	idle := quicIdle(rt)
	buf := make([]byte, quicDownstreamBufBytes)
	for {
		up.SetReadDeadline(time.Unix(0, f.last.Load()).Add(idle))
		n, _, flags, _, err := up.ReadMsgUDPAddrPort(buf, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Since(time.Unix(0, f.last.Load())) < idle {
					continue // the client sent something meanwhile
				}
				q.s.countIdle(q.l.name)
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ECONNREFUSED from an ICMP error and the like
		}
		if flags&msgTrunc != 0 {
			// Rare (datagrams over 2 KiB): this one is lost; this flow
			// reads with a full-size buffer from now on.
			q.drops[quicDropTooLarge].Inc()
			if len(buf) < quicMaxDatagram {
				buf = make([]byte, quicMaxDatagram)
			}
			continue
		}
		b := buf[:n]
		f.last.Store(time.Now().UnixNano())
		if h, ok := sni.ParseQUICHeader(b); ok && h.Long {
			if len(h.SCID) > 0 {
				q.addAlias(f, h.SCID)
			}
			forward, alive := q.fromOrigin(f, b, h)
			if !alive {
				return
			}
			if !forward {
				continue
			}
		}
		if _, err := q.pc.WriteToUDPAddrPort(b, f.client); err == nil {
			rt.bytesDown.Add(float64(n))
		}
	}
}

// fromOrigin follows the origin's long header datagram b of flow f before
// it is forwarded to the client: it reports whether to forward it, and
// whether the flow goes on. A Handshake packet ends the Initial phase (the
// reassembly state is freed); a Retry re-keys it to the connection ID the
// client's next Initials use. A stateless origin answers each Initial
// datagram of the hello with a Retry of its own, while a client follows
// only the first Retry it gets (RFC 9000 17.2.5.2): later ones are not
// forwarded, so the client follows the one the gateway follows.
func (q *quicListener) fromOrigin(f *quicFlow, b []byte, h sni.QUICHeader) (forward, alive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.in == nil:
	case h.Retry && f.retried:
		q.drops[quicDropRetry].Inc()
		return false, f.state == flowPass
	case h.Retry:
		f.retried = true
		if err := f.in.ServerRetry(h.SCID); err != nil {
			q.drops[quicDropMalformed].Inc()
			q.end(f, "")
			return false, false
		}
	case sni.HasHandshakePacket(b):
		q.releaseInitials(f)
		q.charge(f)
	}
	return f.state == flowPass, f.state == flowPass
}

// addAlias makes the server connection ID scid find f, so that the client's
// long header packets addressed to it reach the flow.
func (q *quicListener) addAlias(f *quicFlow, scid []byte) {
	c := makeCID(scid)
	f.mu.Lock()
	for _, a := range f.aliases {
		if a == c {
			f.mu.Unlock()
			return
		}
	}
	if len(f.aliases) >= quicMaxAliases || f.state == flowClosed {
		f.mu.Unlock()
		return
	}
	f.aliases = append(f.aliases, c)
	f.mu.Unlock()
	q.mu.Lock()
	k := flowKey{f.client, c}
	if _, taken := q.flows[k]; !taken {
		q.flows[k] = f
	}
	q.mu.Unlock()
}

// remove deletes f and its aliases from the table and closes its socket.
func (q *quicListener) remove(f *quicFlow) {
	f.mu.Lock()
	if f.state == flowClosed {
		f.mu.Unlock()
		return
	}
	f.state = flowClosed
	aliases := f.aliases
	q.unbuffer(f)
	if f.up != nil {
		f.up.Close()
	}
	f.mu.Unlock()
	q.mu.Lock()
	if q.flows[f.key] == f {
		delete(q.flows, f.key)
	}
	for _, a := range aliases {
		k := flowKey{f.client, a}
		if q.flows[k] == f {
			delete(q.flows, k)
		}
	}
	if q.byAddr[f.client] == f {
		delete(q.byAddr, f.client)
	}
	if n := q.perIP[f.client.Addr()]; n > 1 {
		q.perIP[f.client.Addr()] = n - 1
	} else {
		delete(q.perIP, f.client.Addr())
	}
	q.mu.Unlock()
	q.active.Dec()
}

// janitor expires undecided flows after Timeouts.Hello, ends passed flows
// whose Initial phase lasts longer than Timeouts.Hello after the decision,
// and removes blocked flows after quicBlockedTTL, until stop is closed.
func (q *quicListener) janitor(stop <-chan struct{}) {
	t := time.NewTicker(quicJanitorPeriod)
	defer t.Stop()
	var expired []*quicFlow
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		hello := q.l.rt.Load().hello
		now := time.Now()
		expired = expired[:0]
		q.mu.Lock()
		for k, f := range q.flows {
			if k != f.key {
				continue // an alias
			}
			f.mu.Lock()
			switch {
			case f.state == flowPending && now.Sub(f.created) > hello:
				q.drops[quicDropHelloTimeout].Add(float64(len(f.pending)))
				expired = append(expired, f)
			case (f.state == flowPass || f.state == flowDialing) && f.in != nil && now.Sub(f.decided) > hello:
				// The origin never left its Initial phase: end the flow
				// rather than stop reading the client's Initials.
				q.drops[quicDropHelloTimeout].Add(float64(len(f.pending)))
				q.end(f, "")
			case f.state == flowBlocked && now.Sub(f.blockedAt) > quicBlockedTTL:
				expired = append(expired, f)
			}
			f.mu.Unlock()
		}
		q.mu.Unlock()
		for _, f := range expired {
			q.remove(f)
		}
		clear(expired)
	}
}

// closeAll ends every flow (the listener is closed).
func (q *quicListener) closeAll() {
	q.mu.Lock()
	all := make([]*quicFlow, 0, len(q.flows))
	for k, f := range q.flows {
		if k == f.key {
			all = append(all, f)
		}
	}
	q.mu.Unlock()
	for _, f := range all {
		q.remove(f)
	}
}

func quicIdle(rt *listenerRuntime) time.Duration {
	if rt.quicIdle > 0 {
		return rt.quicIdle
	}
	return defaultQUICIdle
}

func maxQUICPerIP(rt *listenerRuntime) int {
	if rt.maxQUICPerIP > 0 {
		return rt.maxQUICPerIP
	}
	return defaultMaxConnsPerIP
}

func maxQUICPending(rt *listenerRuntime) int64 {
	if rt.maxQUICPending > 0 {
		return int64(rt.maxQUICPending)
	}
	return defaultMaxQUICPendingBytes
}

func maxQUICFlows(rt *listenerRuntime) int {
	if rt.maxQUICFlows > 0 {
		return rt.maxQUICFlows
	}
	return defaultMaxQUICFlows
}
