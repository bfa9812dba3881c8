package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/sni"
)

// Config is everything the data plane runs with. cmd builds it from the
// YAML config; NewServer and Reload validate it and name the first bad
// field. Zero values mean the documented defaults.
type Config struct {
	// Node names this gateway on block pages and in logs. Default "".
	Node string
	// Listeners are the data-plane listeners. At least one is required;
	// names and (non-zero-port) addresses must be unique.
	Listeners []ListenerConfig
	// Policy is how blocked traffic is answered.
	Policy Policy
	// Timeouts bound each phase of a connection.
	Timeouts Timeouts
	// Limits cap resources; MaxConns and MaxConnsPerIP are enforced by the
	// Server at accept.
	Limits Limits
	// Outcomes are the decisions the Decider can give. The Server creates
	// their icpgate_decisions_total series for each protocol it serves at
	// start, so they read 0 rather than being absent. Default none: series
	// appear with their first decision.
	Outcomes []Outcome
	// Performance selects how connections are served: by the passthrough
	// engines or a goroutine each, and whether the engines nap.
	Performance Performance
}

// Defaults of Timeouts fields the Server applies itself (the HTTP handler
// applies its own for Hello, Dial and its keep-alive Idle).
const (
	defaultTLSIdle = 5 * time.Minute
	defaultDrain   = 30 * time.Second
)

// Sentinel errors of the Server.
var (
	// ErrInvalidConfig wraps every validation error of NewServer and Reload.
	ErrInvalidConfig = errors.New("invalid proxy config")
	// ErrServerClosed is returned by Start, Serve and Reload after Serve
	// has returned.
	ErrServerClosed = errors.New("proxy server closed")
	// ErrServing is returned by a second call to Serve.
	ErrServing = errors.New("proxy server already serving")
)

// Server runs the data-plane listeners: it accepts connections, enforces
// the connection limits, hands each connection to the handler of its
// listener's protocol and drains on shutdown. Create it with NewServer.
type Server struct {
	log   *slog.Logger
	m     *Metrics
	dec   swapDecider
	lim   *connLimiter
	conns connSet

	// handlers counts running connection handlers; Add happens only in
	// accept loops, which have all returned before shutdown Waits.
	handlers sync.WaitGroup

	// Handler goroutines are reused (startHandler): a goroutine that has
	// served a connection waits on jobs for the next, up to
	// maxIdleWorkers of them, so a new connection neither starts a
	// goroutine nor grows a fresh stack. stopWorkers ends the idle ones
	// after the drain; workers counts them all.
	jobs        chan connJob
	idleWorkers atomic.Int32
	stopWorkers chan struct{}
	// park holds idle HTTP keep-alive connections without a goroutine
	// (park.go).
	park    parker
	workers sync.WaitGroup
	accepts sync.WaitGroup

	// drainCtx is cancelled when draining starts (handlers finish the
	// request in progress); hardCtx at the drain deadline (aborts dials).
	drainCtx, hardCtx       context.Context
	drainCancel, hardCancel context.CancelFunc

	idleTick atomic.Int64 // watchdog period in nanoseconds

	rejects map[string]prometheus.Counter // LimitRejects by limit name

	// page serves Policy.TLSBlock "page" (nil otherwise); set by Start and
	// Reload once the tls listeners are bound.
	page atomic.Pointer[tlsPage]

	tlsDecisions *decisionCounter // TLS decisions (tls and auto listeners)

	blocks *blockLog    // sampled, rate-limited block lines (blocklog.go)
	obs    observerSlot // SetBlockObserver's observer (observe.go)

	echTLS prometheus.Counter // ECHHellos{protocol="tls"}, resolved once

	// upPool holds idle upstream connections of http listeners, shared by
	// their client connections and kept across Reloads (upstreampool.go).
	upPool *upstreamPool

	// splicers keeps the idle pipes of the goroutine path's relays
	// (splice_linux.go), closed after the drain.
	splicers splicerCache

	// engineOn: the passthrough engines may serve listeners
	// (Performance.Engine, as NewServer found it).
	engineOn bool

	mu      sync.Mutex // guards the fields below
	cfg     Config
	lns     map[string]*listener
	engines []*engine  // passthrough engines (engine_linux.go), made by the first listener that needs them
	pages   []*tlsPage // every page server built, stopped after the drain
	started bool
	serving bool
	stopped bool
}

// listener is one bound (or to-be-bound) listening socket and the runtime
// config its new connections get.
type listener struct {
	name, protocol, address string
	transparent             string           // ListenerConfig.Transparent: tproxy listeners are IP_TRANSPARENT
	ln                      *net.TCPListener // nil until bound (tcp protocols); closed once the engines accept on efd
	// efd is the socket the engines accept on: a duplicate of ln's
	// descriptor, outside the runtime's poller, which ln's own would
	// wake for every connection (engineAccept); -1 when none.
	efd     int
	pc      *net.UDPConn // nil until bound (quic)
	rt      atomic.Pointer[listenerRuntime]
	closing atomic.Bool
	engines []*engine // the engines accepting on efd; nil when acceptLoop does (on ln)
}

func newListener(lc ListenerConfig) *listener {
	return &listener{name: lc.Name, protocol: lc.Protocol, address: lc.Address, transparent: lc.Transparent, efd: -1}
}

// listenerRuntime is the immutable per-listener state a connection is
// served with: taken once at accept, so a Reload never changes a
// connection's config mid-way.
type listenerRuntime struct {
	cfg      ListenerConfig
	tlsBlock string
	hello    time.Duration
	dial     time.Duration
	idle     time.Duration
	http     *httpHandler // http and auto listeners only
	edge     *edgeRuntime // PROXY protocol, sniffing, transparent mode (transparent.go)
	original bool         // Upstream is "original"

	quicBlock    string        // quic listeners: Policy.QUICBlock
	quicIdle     time.Duration // quic listeners: Timeouts.QUICIdle
	maxQUICFlows int           // quic listeners: Limits.MaxQUICFlows
	maxQUICPerIP int           // quic listeners: Limits.MaxConnsPerIP, applied to flows

	maxQUICPending int // quic listeners: Limits.MaxQUICPendingBytes

	connections, bytesUp, bytesDown prometheus.Counter
	active                          prometheus.Gauge
	upDial, upTimeout, upNone       prometheus.Counter
	helloErrs                       map[string]prometheus.Counter
	log                             *slog.Logger
	warnedNoUpstream                atomic.Bool

	// noSNI is Policy.TLSWithoutSNI; noSNICount its counters (pass,
	// block) for this listener's protocol (tls and auto: tls).
	noSNI      string
	noSNICount [2]prometheus.Counter
}

// swapDecider is the Decider every handler holds: it forwards to the
// current one, so SetDecider and Reload take effect on the next decision
// without rebuilding handlers.
type swapDecider struct {
	p atomic.Pointer[deciderBox]
}

type deciderBox struct{ d Decider }

// Decide calls the current Decider.
func (s *swapDecider) Decide(host string) Decision { return s.p.Load().d.Decide(host) }

func (s *swapDecider) store(d Decider) { s.p.Store(&deciderBox{d}) }

var _ Decider = (*swapDecider)(nil)

// NewServer validates cfg and returns a Server that has not bound anything
// yet. d decides every connection (TLS) and request (HTTP). A nil m means
// metrics go to a private registry; a nil log discards logs.
func NewServer(cfg Config, d Decider, m *Metrics, log *slog.Logger) (*Server, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("%w: decider is nil", ErrInvalidConfig)
	}
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry())
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:    log.With("component", "proxy"),
		m:      m,
		lim:    newConnLimiter(),
		upPool: newUpstreamPool(),

		jobs:        make(chan connJob),
		stopWorkers: make(chan struct{}),
	}
	s.dec.store(d)
	s.blocks = newBlockLog(s.log, blockLogRate, blockLogBurst)
	s.echTLS = m.ECHHellos.WithLabelValues("tls")
	s.rejects = map[string]prometheus.Counter{
		limitGlobal: m.LimitRejects.WithLabelValues(limitGlobal),
		limitPerIP:  m.LimitRejects.WithLabelValues(limitPerIP),
	}
	s.park.s = s
	s.drainCtx, s.drainCancel = context.WithCancel(context.Background())
	s.hardCtx, s.hardCancel = context.WithCancel(context.Background())
	var tlsOutcomes []Outcome
	for _, lc := range cfg.Listeners {
		if lc.Protocol == "tls" || lc.Protocol == "auto" {
			tlsOutcomes = cfg.Outcomes // its series exist from the start
		}
	}
	s.tlsDecisions = newDecisionCounter(m.Decisions, "tls", tlsOutcomes)
	s.cfg = cfg
	s.engineOn = cfg.Performance.engineWanted()
	if err := engineSupported(); s.engineOn && err != nil {
		s.engineOn = false
		s.log.Warn("passthrough engines unavailable: every listener is served by a goroutine per connection", "error", err)
	}
	s.lns = make(map[string]*listener, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		l := newListener(lc)
		l.rt.Store(s.newRuntime(cfg, lc))
		s.lns[lc.Name] = l
	}
	s.applyGlobal(cfg)
	return s, nil
}

// applyGlobal applies the parts of cfg that are not per listener.
func (s *Server) applyGlobal(cfg Config) {
	s.lim.setLimits(cfg.Limits)
	tick := tlsIdle(cfg.Timeouts) / 8
	tick = max(10*time.Millisecond, min(tick, time.Second))
	s.idleTick.Store(int64(tick))
}

// buildPage returns the page server for cfg with listeners lns: the
// current one when the page config is unchanged, a new one when it
// changed, nil when cfg does not use page mode. s.mu must be held.
func (s *Server) buildPage(cfg Config, lns map[string]*listener) (*tlsPage, error) {
	if cfg.Policy.TLSBlock != "page" {
		return nil, nil
	}
	var chall *net.TCPAddr
	for _, lc := range cfg.Listeners {
		if l := lns[lc.Name]; lc.Protocol == "tls" && l != nil && l.ln != nil {
			chall = l.ln.Addr().(*net.TCPAddr)
			break
		}
	}
	if cur := s.page.Load(); cur != nil && s.cfg.Policy.TLSBlock == "page" &&
		s.cfg.Policy.TLSPage == cfg.Policy.TLSPage && s.cfg.Node == cfg.Node &&
		s.cfg.Policy.HTTPBlockStatus == cfg.Policy.HTTPBlockStatus &&
		s.cfg.Policy.RedirectURL == cfg.Policy.RedirectURL && samePageSettings(s.cfg.Policy, cfg.Policy) &&
		s.cfg.Timeouts.Hello == cfg.Timeouts.Hello && sameTCPAddr(cur.challenge, chall) {
		return cur, nil
	}
	p, err := newTLSPage(cfg, &s.dec, s.m.TLSPage, s.log, chall)
	if err != nil {
		return nil, err
	}
	s.pages = append(s.pages, p)
	return p, nil
}

func sameTCPAddr(a, b *net.TCPAddr) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}

func tlsIdle(t Timeouts) time.Duration {
	if t.Idle > 0 {
		return t.Idle
	}
	return defaultTLSIdle
}

// newRuntime builds the runtime of listener lc under cfg.
func (s *Server) newRuntime(cfg Config, lc ListenerConfig) *listenerRuntime {
	rt := &listenerRuntime{
		cfg:      lc,
		tlsBlock: cfg.Policy.TLSBlock,
		hello:    cfg.Timeouts.Hello,
		dial:     cfg.Timeouts.Dial,
		idle:     tlsIdle(cfg.Timeouts),
		log:      s.log.With("listener", lc.Name),
	}
	if rt.tlsBlock == "" {
		rt.tlsBlock = "alert"
	}
	rt.quicBlock, rt.quicIdle, rt.maxQUICFlows = cfg.Policy.QUICBlock, cfg.Timeouts.QUICIdle, cfg.Limits.MaxQUICFlows
	rt.maxQUICPerIP = cfg.Limits.MaxConnsPerIP
	rt.maxQUICPending = cfg.Limits.MaxQUICPendingBytes
	if rt.quicBlock == "" {
		rt.quicBlock = quicBlockClose
	}
	if rt.hello <= 0 {
		rt.hello = defaultHelloTimeout
	}
	if rt.dial <= 0 {
		rt.dial = defaultDialTimeout
	}
	m := s.m
	rt.connections = m.Connections.WithLabelValues(lc.Name)
	rt.active = m.ActiveConnections.WithLabelValues(lc.Name)
	rt.bytesUp = m.Bytes.WithLabelValues(lc.Name, "upstream")
	rt.bytesDown = m.Bytes.WithLabelValues(lc.Name, "downstream")
	rt.upDial = m.UpstreamErrors.WithLabelValues(lc.Name, "dial")
	rt.upTimeout = m.UpstreamErrors.WithLabelValues(lc.Name, "timeout")
	rt.upNone = m.UpstreamErrors.WithLabelValues(lc.Name, "no_upstream")
	rt.helloErrs = make(map[string]prometheus.Counter, len(helloErrorKinds))
	for _, k := range helloErrorKinds {
		rt.helloErrs[k] = m.HelloErrors.WithLabelValues(k)
	}
	if lc.Protocol != "http" {
		proto := "tls"
		if lc.Protocol == "quic" {
			proto = "quic"
		}
		rt.noSNI = cfg.Policy.TLSWithoutSNI
		rt.noSNICount = [2]prometheus.Counter{
			m.TLSWithoutSNI.WithLabelValues(lc.Name, proto, "pass"),
			m.TLSWithoutSNI.WithLabelValues(lc.Name, proto, "block"),
		}
	}
	rt.original = lc.Upstream == UpstreamOriginal
	rt.edge = newEdgeRuntime(lc, rt.dial, m, rt.log)
	if lc.Protocol == "tls" || lc.Protocol == "auto" {
		// Relays of this listener may be closed idle: the series exists
		// at 0 from the start (HTTP handlers create theirs likewise).
		m.IdleTimeouts.WithLabelValues(lc.Name)
	}
	if lc.Protocol == "http" || lc.Protocol == "auto" {
		rt.http = newHTTPHandler(cfg, lc, &s.dec, m, s.log)
		rt.http.blocks = s.blocks
		rt.http.splicers = &s.splicers
		rt.http.obs = &s.obs
		// HTTP keeps Go's default keep-alive on its pooled upstream
		// connections; the rest of the dialer is the listener's.
		rt.http.dialer = rt.edge.dialer
		rt.http.dialer.keepAlive = 0
		// A connection from the client's own address or announcing the
		// client in a PROXY header belongs to that client: never shared.
		if !rt.http.dialer.spoof && rt.http.dialer.send == 0 {
			rt.http.pool = s.upPool
		}
	}
	return rt
}

// Start binds every listener, with SO_REUSEPORT so that a new process can
// bind the same addresses during a zero-downtime upgrade. On failure
// nothing stays bound and the error names the listener and address.
// Calling Start again is a no-op.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrServerClosed
	}
	if s.started {
		return nil
	}
	var bound []*listener
	for _, lc := range s.cfg.Listeners {
		l := s.lns[lc.Name]
		if err := l.bind(lc); err != nil {
			for _, b := range bound {
				b.unbind()
			}
			return err
		}
		bound = append(bound, l)
	}
	p, err := s.buildPage(s.cfg, s.lns)
	if err != nil {
		for _, b := range bound {
			b.unbind()
		}
		return err
	}
	s.page.Store(p)
	s.started = true
	s.logTLSWithoutSNI(s.cfg)
	return nil
}

// Keep-alive of client connections: Go's defaults (15 s idle, 15 s
// interval, 9 probes), set once on the listening socket.
const (
	keepAliveIdleSeconds     = 15
	keepAliveIntervalSeconds = 15
	keepAliveCount           = 9
)

// bind opens l's socket for lc: UDP for quic, else TCP.
func (l *listener) bind(lc ListenerConfig) error {
	if lc.Protocol == "quic" {
		pc, err := bindQUIC(lc)
		l.pc = pc
		return err
	}
	ln, err := bind(lc)
	if err == nil {
		l.ln = ln
	}
	return err
}

// unbind closes the socket bind opened (a failed Start or Reload).
func (l *listener) unbind() {
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	l.closeEngineFD()
	if l.pc != nil {
		l.pc.Close()
		l.pc = nil
	}
}

// bind opens the listening socket of lc.
//
// Keep-alive is configured on the listening socket, which Linux copies to
// every accepted socket, and Go's per-connection keep-alive setup is off
// (KeepAlive -1): that saves four setsockopt calls per accepted connection.
// On systems other than Linux the listening socket keeps the system's
// defaults (listenControl, sock_other.go).
//
// A tproxy listener's socket is also IP_TRANSPARENT, so that connections
// TPROXY rules deliver to it (addressed to other hosts) are accepted.
//
// A tls or http listener's socket is also TCP_DEFER_ACCEPT (deferAccept).
func bind(lc ListenerConfig) (*net.TCPListener, error) {
	lcfg := net.ListenConfig{Control: listenControl, KeepAlive: -1}
	if lc.Transparent == transparentTPROXY {
		lcfg.Control = transparentListenControl
	}
	ln, err := lcfg.Listen(context.Background(), "tcp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: binding %s: %w", lc.Name, lc.Address, err)
	}
	tl := ln.(*net.TCPListener)
	if clientSpeaksFirst(lc.Protocol) {
		if err := deferAccept(tl); err != nil {
			tl.Close()
			return nil, fmt.Errorf("listener %q: %s: %w", lc.Name, lc.Address, err)
		}
	}
	return tl, nil
}

// deferAcceptSeconds is the TCP_DEFER_ACCEPT value: how long the kernel
// holds a connection that has sent nothing before handing it over anyway
// (Linux counts it in SYN-ACK retransmissions: the first, after about 1 s). The
// hello timeout then runs as for any client.
const deferAcceptSeconds = 1

// clientSpeaksFirst reports whether every connection of a listener of
// this protocol starts with bytes from the client: a ClientHello or an
// HTTP request (or a PROXY header ahead of them). An auto listener also
// relays server-speaks-first protocols, so it is not one.
func clientSpeaksFirst(protocol string) bool {
	return protocol == "tls" || protocol == "http"
}

// Addr returns the bound address of the named listener, or nil when there
// is no such listener or it is not bound.
// ServedBy names how listener name's connections are served: "engine"
// (the passthrough engines: tls listeners outside transparent mode, and
// http ones outside it that take no PROXY headers, whose engine answers
// blocked requests and hands the rest to handlers: enghttp.go),
// "handlers" (a goroutine per connection, reused; HTTP clients parked
// when idle) or "quic"; "" for no such listener.
func (s *Server) ServedBy(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lns[name]
	switch {
	case l == nil:
		return ""
	case l.pc != nil:
		return "quic"
	case l.ln != nil && s.engineOn && l.rt.Load().engineServes():
		return "engine"
	}
	return "handlers"
}

func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lns[name]
	if l != nil && l.pc != nil {
		return l.pc.LocalAddr()
	}
	if l == nil || l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// SetDecider makes d decide every new connection and request from now on,
// including the next request of an open HTTP keep-alive connection. A nil d
// is ignored.
func (s *Server) SetDecider(d Decider) {
	if d != nil {
		s.dec.store(d)
	}
}

// Reload applies cfg (and d, unless nil) to new connections: policy,
// upstreams, timeouts and limits. Listeners whose name, protocol and
// address are unchanged keep their socket; new or changed ones are bound
// first, and only when every bind succeeded are removed or replaced ones
// closed, so a failed Reload changes nothing. Open connections are never
// touched: they finish under the config they were accepted with.
func (s *Server) Reload(cfg Config, d Decider) error {
	if err := validate(cfg); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrServerClosed
	}
	next := make(map[string]*listener, len(cfg.Listeners))
	var fresh []*listener
	for _, lc := range cfg.Listeners {
		if old := s.lns[lc.Name]; old != nil && old.protocol == lc.Protocol && old.address == lc.Address && old.transparent == lc.Transparent {
			next[lc.Name] = old
			continue
		}
		l := newListener(lc)
		if s.started {
			if err := l.bind(lc); err != nil {
				for _, f := range fresh {
					f.unbind()
				}
				return err
			}
		}
		fresh = append(fresh, l)
		next[lc.Name] = l
	}
	var page *tlsPage
	if s.started {
		var err error
		if page, err = s.buildPage(cfg, next); err != nil {
			for _, f := range fresh {
				f.unbind()
			}
			return err
		}
	}
	// Every bind succeeded: commit.
	s.page.Store(page)
	if d != nil {
		s.dec.store(d)
	}
	for _, lc := range cfg.Listeners {
		next[lc.Name].rt.Store(s.newRuntime(cfg, lc))
	}
	for name, old := range s.lns {
		if next[name] != old {
			old.close()
		}
	}
	s.cfg = cfg
	s.lns = next
	s.applyGlobal(cfg)
	if s.serving {
		for _, l := range fresh {
			s.startAccept(l)
		}
	}
	s.log.Info("proxy config reloaded", "listeners", len(next), "rebound", len(fresh))
	return nil
}

// close stops accepting on l; its open connections are not touched.
func (l *listener) close() {
	l.closing.Store(true)
	l.leaveEngines() // before the socket closes
	if l.ln != nil {
		l.ln.Close()
	}
	l.closeEngineFD()
	if l.pc != nil {
		l.pc.Close() // ends the quic read loop, which ends its flows
	}
}

// Serve accepts connections on every listener (binding them first if Start
// was not called) until ctx is done, then drains: it stops accepting,
// cancels the context HTTP handlers watch (each finishes its request in
// progress), lets passthrough connections run until Timeouts.Drain (default
// 30 s) has passed, closes whatever is still open, and returns once every
// connection handler has returned. It returns nil after a drain.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	for _, l := range s.lns {
		s.startAccept(l)
	}
	s.mu.Unlock()

	watchdogDone := make(chan struct{})
	stopWatchdog := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		s.idleWatchdog(stopWatchdog)
	}()

	<-ctx.Done()
	s.shutdown()
	close(stopWatchdog)
	<-watchdogDone
	return nil
}

// startAccept starts the accept loop of l, or has the passthrough engines
// accept on it when its config lets them. s.mu must be held.
func (s *Server) startAccept(l *listener) {
	if l.ln != nil && s.engineOn && l.rt.Load().engineServes() {
		if err := s.engineAccept(l); err == nil {
			return
		} else {
			s.log.Warn("passthrough engine unavailable, serving the listener with a goroutine per connection", "listener", l.name, "error", err)
		}
	}
	s.accepts.Add(1)
	go func() {
		defer s.accepts.Done()
		if l.pc != nil {
			s.serveQUIC(l)
			return
		}
		s.acceptLoop(l)
	}()
}

// shutdown is Serve's drain.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.stopped = true
	drain := s.cfg.Timeouts.Drain
	for _, l := range s.lns {
		l.close()
	}
	s.mu.Unlock()
	if drain <= 0 {
		drain = defaultDrain
	}
	s.accepts.Wait()
	s.drainCancel()
	s.park.drain() // parked idle clients close like waiting ones
	open := s.openConns()
	s.log.Info("proxy draining", "connections", open, "deadline_seconds", drain.Seconds())

	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		n := s.conns.closeAll() + s.closeEngineConns()
		s.hardCancel()
		s.log.Warn("drain deadline reached, closed open connections", "connections", n)
		<-done
	}
	s.hardCancel()
	s.park.close()
	close(s.stopWorkers)
	s.workers.Wait()
	s.upPool.close()
	s.splicers.close()
	s.mu.Lock()
	s.stopEngines()
	pages := s.pages
	s.pages = nil
	s.mu.Unlock()
	for _, p := range pages {
		p.stop()
	}
	s.log.Info("proxy drained")
}

// acceptLoop accepts connections on l until it is closed.
func (s *Server) acceptLoop(l *listener) {
	var backoff time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if l.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off rather than
			// spin, like net/http.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
				s.log.Warn("accept failed, backing off", "listener", l.name, "error", err)
			} else {
				backoff = min(2*backoff, time.Second)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		rt := l.rt.Load()
		rt.connections.Inc()
		s.admitConn(l, rt, c)
	}
}

// openConns reports the open client connections.
func (s *Server) openConns() int { return s.conns.len() + s.engineConns() }

// admitConn applies the connection limits to c, accepted on l, and starts
// its handler.
func (s *Server) admitConn(l *listener, rt *listenerRuntime, c *net.TCPConn) {
	var client netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = a.AddrPort()
	}
	ip := client.Addr().Unmap()
	trusted, ok := s.admitPeer(rt, ip)
	if !ok {
		c.Close()
		return
	}
	tc := &trackedConn{c: c, tcp: c, ip: ip, listener: l.name}
	if trusted {
		tc.ip = netip.Addr{} // no per-IP slot yet
	}
	s.track(rt, tc)
	s.startHandler(connJob{rt: rt, tc: tc, client: client, trusted: trusted})
}

// track counts tc, admitted on rt (its limit slots taken), as an open
// connection with a handler to come; release undoes it.
func (s *Server) track(rt *listenerRuntime, tc *trackedConn) {
	rt.active.Inc()
	s.conns.add(tc)
	s.handlers.Add(1)
}

// release ends a tracked connection: out of the set, its limit slots
// given back, no longer active, its handler done.
func (s *Server) release(rt *listenerRuntime, tc *trackedConn) {
	s.conns.remove(tc)
	s.lim.releaseConn(tc.ip)
	rt.active.Dec()
	s.handlers.Done()
}

// admitPeer takes the connection slots of a new connection from ip, or
// counts the limit that refuses it (ok false). A trusted PROXY sender (a
// load balancer) carries many clients: its connections take a global slot
// now and a per-IP slot for the client its header names (admit, or the
// engine's proxyPrefix), never one for itself.
func (s *Server) admitPeer(rt *listenerRuntime, ip netip.Addr) (trusted, ok bool) {
	trusted = rt.edge.trusted(ip)
	var limit string
	if trusted {
		limit = s.lim.acquireGlobal()
	} else {
		limit = s.lim.acquire(ip)
	}
	if limit != "" {
		s.rejects[limit].Inc()
		return trusted, false
	}
	return trusted, true
}

// maxIdleWorkers caps the handler goroutines kept waiting for a
// connection: enough for a burst of new connections on a busy node, about
// 8 KiB of stack each.
const maxIdleWorkers = 256

// connJob is a connection for a handler goroutine: serveConn's arguments.
type connJob struct {
	rt        *listenerRuntime
	tc        *trackedConn
	client    netip.AddrPort
	trusted   bool
	resume    *parkedConn // a parked HTTP connection to serve again
	page      *pageJob    // a blocked connection the engine gives the TLS block page
	first     []byte      // an http connection's first bytes, read by the engine (enghttp.go)
	firstFull bool        // they filled the engine's buffer: more may be waiting
}

// pageJob is what the passthrough engine hands the TLS block page with a
// blocked connection (engine.pageHandOff): the hello bytes it read, to be
// replayed, and the decision (its names copied).
type pageJob struct {
	p     *tlsPage
	hello []byte
	rv    uint16
	d     Decision
}

// startHandler serves j on an idle handler goroutine, or a new one.
func (s *Server) startHandler(j connJob) {
	select {
	case s.jobs <- j:
		return
	default:
	}
	s.workers.Add(1)
	go s.worker(j)
}

// worker serves connections: j, then the ones startHandler hands it while
// it waits idle, until too many wait or the server has stopped.
func (s *Server) worker(j connJob) {
	defer s.workers.Done()
	for {
		s.serveConn(&j)
		j = connJob{}
		if s.idleWorkers.Add(1) > maxIdleWorkers {
			s.idleWorkers.Add(-1)
			return
		}
		select {
		case j = <-s.jobs:
			s.idleWorkers.Add(-1)
		case <-s.stopWorkers:
			s.idleWorkers.Add(-1)
			return
		}
	}
}

// serveConn runs the handler of one admitted connection and releases its
// slot, unless the handler parked it (an idle HTTP keep-alive client: the
// slot stays taken until the parker resumes it and a handler ends it). A
// panic in a handler is logged and ends only that connection: one bad
// connection must not take the node down. j.trusted says the peer must
// start with a PROXY header (see admit).
func (s *Server) serveConn(j *connJob) {
	rt, tc := j.rt, j.tc
	parked := false
	defer func() {
		if p := recover(); p != nil {
			parked = false
			tc.c.Close()
			rt.log.Error("connection handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
		if parked {
			return
		}
		s.release(rt, tc)
	}()
	if pc := j.resume; pc != nil {
		parked = rt.http.resume(s.drainCtx, pc, &s.park)
		return
	}
	if pj := j.page; pj != nil {
		sc := sni.NewConn(tc.tcp, pj.hello)
		pj.p.serve(s.hardCtx, tc.tcp, sc, pj.rv, &pj.d)
		sc.Release()
		return
	}
	ci := newConnInfo(tc.c, j.client)
	if !s.admit(rt, tc, &ci, j.trusted) {
		tc.c.Close()
		return
	}
	switch rt.cfg.Protocol {
	case "http":
		parked = rt.http.run(s.drainCtx, tc.c, &ci, "", true, &s.park, j)
	case "auto":
		parked = s.serveAuto(rt, tc, &ci, j)
	default:
		s.serveTLS(rt, tc, &ci)
	}
}

// idleWatchdog closes relays that have been idle for their idle timeout,
// checking the due ones every tick until stop is closed.
func (s *Server) idleWatchdog(stop <-chan struct{}) {
	var due []idleCheck
	t := time.NewTimer(time.Duration(s.idleTick.Load()))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.upPool.evictExpired()
		now := time.Now()
		due = s.conns.due(now.UnixNano(), due[:0])
		if len(due) > 0 {
			if n := s.conns.checkIdle(now, due, s.countIdle); n > 0 && s.log.Enabled(context.Background(), slog.LevelDebug) {
				s.log.Debug("closed idle relays", "relays", n)
			}
			clear(due) // drop references to closed connections
		}
		t.Reset(time.Duration(s.idleTick.Load()))
	}
}

// countIdle counts a relay closed by the idle watchdog.
func (s *Server) countIdle(listener string) {
	s.m.IdleTimeouts.WithLabelValues(listener).Inc()
}

// countDecision counts one decision of a TLS connection (protocol is
// "tls"; the HTTP and QUIC sides have their own counters).
func (s *Server) countDecision(protocol string, d *Decision) {
	s.tlsDecisions.count(d)
}

// validate checks cfg and names the first bad field, using the YAML names.
func validate(cfg Config) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if len(cfg.Listeners) == 0 {
		return bad("listeners", "at least one listener is required")
	}
	if err := cfg.Performance.validate(bad); err != nil {
		return err
	}
	names := make(map[string]bool, len(cfg.Listeners))
	type bindKey struct {
		name string
		udp  bool // quic listeners bind UDP: they share ports with tcp ones
		ip   netip.Addr
		port uint64
	}
	var binds []bindKey
	for i, l := range cfg.Listeners {
		f := "listeners[" + strconv.Itoa(i) + "]."
		if l.Name == "" {
			return bad(f+"name", "required")
		}
		if !validListenerName(l.Name) {
			return bad(f+"name", "%q: use letters, digits, '_', '-' and '.' only (at most 64)", l.Name)
		}
		if names[l.Name] {
			return bad(f+"name", "%q is used by another listener", l.Name)
		}
		names[l.Name] = true
		switch l.Protocol {
		case "tls", "http", "quic", "auto":
		default:
			return bad(f+"protocol", "%q: want http, tls, quic or auto", l.Protocol)
		}
		host, port, err := net.SplitHostPort(l.Address)
		if err != nil {
			return bad(f+"address", "%q: %v", l.Address, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return bad(f+"address", "%q: invalid port", l.Address)
		}
		var ip netip.Addr // zero: all addresses
		if host != "" && host != "localhost" {
			if ip, err = netip.ParseAddr(host); err != nil {
				return bad(f+"address", "%q: host must be an IP address", l.Address)
			}
			if ip.IsUnspecified() {
				ip = netip.Addr{}
			}
		}
		if p != 0 {
			// SO_REUSEPORT would let two of our own listeners share a port
			// silently; refuse any overlap, wildcards included.
			for _, o := range binds {
				if o.port == p && o.udp == (l.Protocol == "quic") && (o.ip == ip || !o.ip.IsValid() || !ip.IsValid()) {
					return bad(f+"address", "%q overlaps the address of listener %q", l.Address, o.name)
				}
			}
			binds = append(binds, bindKey{l.Name, l.Protocol == "quic", ip, p})
		}
		if err := validateEdge(l, f, bad); err != nil {
			return err
		}
		if l.Upstream != "" && l.Upstream != UpstreamOriginal {
			if _, port, err := net.SplitHostPort(l.Upstream); err != nil {
				return bad(f+"upstream", "%q: %v", l.Upstream, err)
			} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
				return bad(f+"upstream", "%q: invalid port", l.Upstream)
			}
		}
		switch l.ForwardedProto {
		case "", "http", "https":
		default:
			return bad(f+"forwarded_proto", "%q: want http or https", l.ForwardedProto)
		}
	}
	switch cfg.Policy.TLSBlock {
	case "", "alert", "reset", "page":
	default:
		return bad("policy.tls_block", "%q: want alert, reset or page", cfg.Policy.TLSBlock)
	}
	switch cfg.Policy.QUICBlock {
	case "", quicBlockClose, quicBlockDrop:
	default:
		return bad("policy.quic_block", "%q: want close or drop", cfg.Policy.QUICBlock)
	}
	switch cfg.Policy.TLSWithoutSNI {
	case "", "pass", "block":
	default:
		return bad("policy.tls_without_sni", "%q: want pass or block", cfg.Policy.TLSWithoutSNI)
	}
	if cfg.Policy.TLSBlock == "page" {
		if err := validateTLSPage(cfg.Policy.TLSPage, bad); err != nil {
			return err
		}
	}
	// A block is an error to the client: a 2xx or 3xx status would let
	// caches keep the block page, or clients take it for the site. The
	// same range cmd validates (one rule, wherever the config comes from).
	if st := cfg.Policy.HTTPBlockStatus; st != 0 && (st < 400 || st > 599) {
		return bad("policy.http_block_status", "%d: want 400-599", st)
	}
	if r := cfg.Policy.RedirectURL; r != "" {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("policy.redirect_url", "%q: want an absolute http or https URL", r)
		}
	}
	if _, err := NewBlockPage(cfg.Policy); err != nil {
		return err // names the field
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeouts.hello", cfg.Timeouts.Hello}, {"timeouts.dial", cfg.Timeouts.Dial},
		{"timeouts.idle", cfg.Timeouts.Idle}, {"timeouts.drain", cfg.Timeouts.Drain}, {"timeouts.quic_idle", cfg.Timeouts.QUICIdle}} {
		if d.v < 0 {
			return bad(d.name, "%v: must not be negative", d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"limits.max_header_bytes", cfg.Limits.MaxHeaderBytes}, {"limits.max_headers", cfg.Limits.MaxHeaders},
		{"limits.max_conns", cfg.Limits.MaxConns}, {"limits.max_conns_per_ip", cfg.Limits.MaxConnsPerIP},
		{"limits.max_quic_flows", cfg.Limits.MaxQUICFlows},
		{"limits.max_quic_pending_bytes", cfg.Limits.MaxQUICPendingBytes}} {
		if n.v < 0 {
			return bad(n.name, "%d: must not be negative", n.v)
		}
	}
	return nil
}

// validListenerName reports whether name is safe as a metric label value
// and in logs.
func validListenerName(name string) bool {
	if len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
