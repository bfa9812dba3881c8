package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/configs"
	"github.com/icpgate/icpgate/metrics"
	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// decider adapts the registry to the data plane's Decider. It copies
// strings and calls methods on a value: no allocation beyond the
// registry's own (none for a cached host).
type decider struct{ r *registry.Registry }

var _ proxy.Decider = decider{}

// Decide implements proxy.Decider.
func (d decider) Decide(host string) proxy.Decision {
	rd := d.r.Decide(host)
	return proxy.Decision{
		Pass:         rd.Verdict == registry.Pass,
		Reason:       string(rd.Reason),
		Host:         rd.Host,
		Domain:       rd.Domain,
		FilingNumber: rd.FilingNumber(),
		Upstream:     rd.Upstream(),
	}
}

// Gateway is a wired icpgate: the registry with its source, the data plane
// and the admin server, sharing one Prometheus registry.
type Gateway struct {
	log      *slog.Logger
	level    *slog.LevelVar
	reg      *registry.Registry
	src      *registry.FileSource // nil for the embedded registry and PostgreSQL
	pg       *pgSource            // nil unless registry.postgres.dsn is set
	prom     *prometheus.Registry
	proxy    *proxy.Server
	admin    *admin.Server
	adminTLS *adminTLS // nil without admin.tls_names
	// cp holds overrides, audit, tokens and the unfiled report.
	cp *controlPlane
	// certStore keeps tls_block: page certificates in the filing database,
	// shared by every node; nil without registry.postgres.dsn.
	certStore *pgCertStorage
	reloadMu  sync.Mutex // serialises Reload; guards cfg
	cfg       *Config

	// embeddedStats are the reload counters of the embedded registry,
	// which loads once; set before any scrape, then read-only.
	embeddedStats registry.ReloadStats
}

// reloadStats returns the registry source's reload counters.
func (g *Gateway) reloadStats() registry.ReloadStats {
	if g.pg != nil {
		return g.pg.reloadStats()
	}
	if g.src != nil {
		return g.src.Stats()
	}
	return g.embeddedStats
}

// NewGateway builds the gateway for cfg and loads the registry once. The
// initial load failing is an error: starting with an empty registry would
// block every site (fail closed) with no way to tell from the outside.
func NewGateway(cfg *Config, log *slog.Logger, level *slog.LevelVar) (_ *Gateway, err error) {
	if level == nil {
		level = new(slog.LevelVar)
	}
	g := &Gateway{log: log, level: level, cfg: cfg, prom: prometheus.NewRegistry()}
	defer func() {
		if err != nil && g.cp != nil {
			g.cp.close()
		}
	}()
	policy, err := registryPolicy(cfg)
	if err != nil {
		return nil, err
	}
	g.reg = registry.New(registry.Options{
		CacheSize: cfg.Registry.CacheSize,
		Policy:    policy,
		Logger:    log,
	})
	if err := g.loadRegistry(cfg); err != nil {
		return nil, err
	}
	metrics.RegisterProcess(g.prom)
	metrics.RegisterBuildInfo(g.prom, versionString())
	g.prom.MustRegister(admin.NewRegistryCollector(g.reg, g.reloadStats), admin.NewReloadStateCollector(g.reloadStats))
	if g.pg != nil {
		g.pg.register(g.prom)
	}
	if g.cp, err = openControlPlane(context.Background(), cfg, g.reg, log); err != nil {
		return nil, err
	}
	m := proxy.NewMetrics(g.prom)
	if dsn := cfg.Registry.Postgres.DSN; dsn != "" {
		if g.certStore, err = newPGCertStorage(dsn); err != nil {
			return nil, err
		}
	}
	g.proxy, err = proxy.NewServer(withCertStorage(cfg.ProxyConfig(), g.certStore), decider{g.reg}, m, log)
	if err != nil {
		return nil, fmt.Errorf("data plane: %w", err)
	}
	g.proxy.SetBlockObserver(blockObserver{g.cp.report})
	acfg := g.cp.adminConfig(cfg, admin.Config{Address: cfg.Admin.Address})
	if len(cfg.Admin.TLSNames) > 0 {
		if g.adminTLS, err = newAdminTLS(cfg.Admin.TLSNames, cfg.Policy.TLSPage, cfg.Admin.Address, log); err != nil {
			return nil, err
		}
		acfg.TLSConfig = g.adminTLS.tlsConfig()
	}
	g.admin = admin.New(acfg, g.reg, g.prom, g.ready, log)
	return g, nil
}

// loadRegistry creates the registry source for cfg and loads it once.
func (g *Gateway) loadRegistry(cfg *Config) error {
	if cfg.Registry.Postgres.DSN != "" {
		// Not an error when the database is down: the node serves the
		// local store's snapshot, or is not ready until the first load.
		pg, err := newPGSource(cfg.Registry.Postgres, cfg.Registry.Store, g.reg, g.log)
		if err != nil {
			return err
		}
		g.pg = pg
		return nil
	}
	if cfg.Embedded() {
		if err := loadEmbeddedRegistry(g.reg); err != nil {
			return fmt.Errorf("embedded registry: %w", err)
		}
		g.embeddedStats = registry.ReloadStats{Successes: 1, LastSuccess: time.Now()}
		return nil
	}
	g.src = registry.NewFileSource(cfg.Registry.File, g.reg, g.log)
	g.src.MaxDeleteFraction = cfg.Registry.MaxDeleteFraction
	if err := g.src.Load(); err != nil {
		return fmt.Errorf("loading registry %s: %w", cfg.Registry.File, err)
	}
	return nil
}

// ready is the admin server's readiness: the registry has a snapshot.
func (g *Gateway) ready() (bool, string) {
	if g.pg != nil {
		return g.pg.ready()
	}
	if !g.reg.Loaded() {
		return false, "registry not loaded yet"
	}
	return true, ""
}

// Start binds the admin and data-plane listeners. A port conflict on
// either fails the start and leaves nothing bound.
func (g *Gateway) Start() error {
	if err := g.admin.Start(); err != nil {
		return err
	}
	if err := g.proxy.Start(); err != nil {
		g.admin.Shutdown(context.Background())
		return fmt.Errorf("data plane: %w", err)
	}
	if g.adminTLS != nil {
		// After the admin listener is bound: it answers the TLS-ALPN-01
		// validation itself.
		if err := g.adminTLS.manage(context.Background()); err != nil {
			g.log.Error("admin certificates not managed", "error", err)
		}
	}
	return nil
}

// Run serves until ctx is done, then drains the data plane (up to
// timeouts.drain) and stops the admin server. It returns the first serve
// error.
func (g *Gateway) Run(ctx context.Context) error {
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer stopSrc()
	var wg sync.WaitGroup
	if g.src != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.src.Run(srcCtx); err != nil && !errors.Is(err, context.Canceled) {
				g.log.Error("registry source stopped", "error", err)
			}
		}()
	}
	if g.pg != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.pg.run(srcCtx)
		}()
	}
	// The report runs until the data plane has drained (not until ctx
	// ends, which starts the drain), so its last save holds every block.
	repCtx, stopRep := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRep()
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.cp.runReport(repCtx)
	}()
	err := g.proxy.Serve(ctx)
	stopSrc()
	stopRep()
	wg.Wait()
	g.reloadMu.Lock()
	drain := g.cfg.Timeouts.Drain
	g.reloadMu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if aerr := g.admin.Shutdown(sctx); aerr != nil && err == nil {
		err = aerr
	}
	if g.adminTLS != nil {
		g.adminTLS.stop()
	}
	if g.certStore != nil {
		g.certStore.Close()
	}
	if cerr := g.cp.close(); cerr != nil {
		g.log.Error("closing the control plane", "error", cerr)
	}
	return err
}

// ProxyAddr returns the bound address of the named listener, or nil.
func (g *Gateway) ProxyAddr(name string) net.Addr { return g.proxy.Addr(name) }

// AdminAddr returns the admin server's bound address, or nil before Start.
func (g *Gateway) AdminAddr() net.Addr { return g.admin.Addr() }

// Registry returns the gateway's registry.
func (g *Gateway) Registry() *registry.Registry { return g.reg }

// Config returns the config in effect.
func (g *Gateway) Config() *Config {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.cfg
}

// Reload re-reads the config file and the registry, as SIGHUP does. A
// config that fails to load or validate is refused with the reason and the
// running one stays. Settings that need new sockets, a new registry or
// the control plane rebuilt (admin.*, report.*, registry.*,
// policy.ip_access) are kept as they are, with a warning naming each;
// listeners, policy, timeouts, limits and log.level apply. Overrides stay
// applied across the registry reload (the file source carries them).
func (g *Gateway) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.cfg
	if old.Embedded() {
		// Nothing can change: the config and registry are compiled in (and
		// demo adjusted the addresses, which re-reading would undo).
		g.log.Info("embedded config and registry: nothing to reload")
		return nil
	}
	next, err := LoadConfig(old.path)
	if err != nil {
		return fmt.Errorf("reload refused, keeping the running config: %w", err)
	}
	for _, k := range restartOnly(old, next) {
		g.log.Warn("config change needs a restart; keeping the running value", "key", k)
	}
	next.Admin = old.Admin
	next.Report = old.Report
	next.Registry = old.Registry
	next.Policy.IPAccess = old.Policy.IPAccess
	next.Log.Format = old.Log.Format
	if err := g.proxy.Reload(withCertStorage(next.ProxyConfig(), g.certStore), decider{g.reg}); err != nil {
		return fmt.Errorf("reload refused by the data plane, keeping the running config: %w", err)
	}
	if lvl, err := parseLevel(next.Log.Level); err == nil {
		g.level.Set(lvl)
	}
	g.cfg = next
	if g.src != nil {
		if err := g.src.Load(); err != nil {
			// The config applied; the registry keeps its last good snapshot.
			return fmt.Errorf("config reloaded, registry reload failed (last good snapshot kept): %w", err)
		}
	}
	g.log.Info("config reloaded", "listeners", len(next.Listeners))
	return nil
}

// restartOnly lists the keys that differ between a and b but apply only at
// start.
func restartOnly(a, b *Config) []string {
	var keys []string
	if a.Admin.Address != b.Admin.Address {
		keys = append(keys, "admin.address")
	}
	if !slices.Equal(a.Admin.TLSNames, b.Admin.TLSNames) {
		keys = append(keys, "admin.tls_names")
	}
	keys = append(keys, adminRestartOnly(&a.Admin, &b.Admin)...)
	if a.Report != b.Report {
		keys = append(keys, "report")
	}
	if a.Registry != b.Registry {
		keys = append(keys, "registry")
	}
	if a.Policy.IPAccess != b.Policy.IPAccess {
		keys = append(keys, "policy.ip_access")
	}
	if a.Log.Format != b.Log.Format {
		keys = append(keys, "log.format")
	}
	return keys
}

// startedKey carries a func(*Gateway) in a context: cmdServe calls it once
// the listeners are bound, so tests learn the :0 ports.
type startedKey struct{}

// withStarted returns a context making serve call fn after Start.
func withStarted(ctx context.Context, fn func(*Gateway)) context.Context {
	return context.WithValue(ctx, startedKey{}, fn)
}

// newLogger builds the process logger: JSON unless format is text or
// unset on a terminal.
func newLogger(cfg LogConfig, w io.Writer, level *slog.LevelVar) *slog.Logger {
	lvl, _ := parseLevel(cfg.Level)
	level.Set(lvl)
	opts := &slog.HandlerOptions{Level: level}
	text := cfg.Format == "text"
	if cfg.Format == "" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				text = true
			}
		}
	}
	if text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// cmdServe runs the gateway until SIGINT/SIGTERM (or ctx) and reloads on
// SIGHUP.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default: $ICPGATE_CONFIG, else /etc/icpgate/icpgate.yaml if present, else the embedded demo config)")
	check := fs.Bool("check", false, "load and validate everything (config, registry, suffix list, block page, listener addresses), serve nothing; exit 0 or 2")
	upgrade := fs.Bool("upgrade", false, "replace the running icpgate that serves these addresses: start beside it and, once ready, have it drain and exit (Linux)")
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "icpgate serve: unexpected argument %q\n", fs.Arg(0))
		return exitError
	}
	cfg, err := LoadConfig(findConfig(*path, "serve", stderr))
	if err != nil {
		fmt.Fprintf(stderr, "icpgate serve: %v\n", err)
		return exitError
	}
	if *check {
		return checkServe(ctx, cfg, stdout, stderr)
	}
	return serve(ctx, cfg, serveOptions{upgrade: *upgrade}, stderr)
}

// serveOptions are serve's flags beyond the config.
type serveOptions struct {
	// upgrade replaces the running instance on the same addresses instead
	// of refusing to start beside it (instance.go).
	upgrade bool
}

// serve runs cfg until ctx is done or a SIGINT/SIGTERM arrives.
func serve(ctx context.Context, cfg *Config, opts serveOptions, stderr io.Writer) int {
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log, stderr, level)
	// Before anything is loaded or bound, so that a refused second
	// instance touches nothing of the first's.
	inst, err := claimInstance(cfg, opts.upgrade, log)
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitError
	}
	defer inst.close()
	g, err := NewGateway(cfg, log, level)
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitError
	}
	if err := g.Start(); err != nil {
		log.Error("cannot start", "error", err)
		g.cp.close()
		return exitError
	}
	source := cfg.path
	if cfg.Embedded() {
		source = "embedded"
	}
	log = log.With("component", "main")
	for _, l := range cfg.Listeners {
		if a := g.ProxyAddr(l.Name); a != nil {
			log.Info("listening", "listener", l.Name, "protocol", l.Protocol, "address", a.String(), "upstream", l.Upstream,
				"served_by", g.proxy.ServedBy(l.Name))
		}
	}
	// Before the first load from the filing database there are no records
	// to count, and "records":0 would read as an empty registry.
	registryState := any(g.reg.Snapshot().Len())
	if !g.reg.Loaded() {
		registryState = "not loaded yet"
	}
	log.Info("icpgate started", "version", versionString(), "node", cfg.Node,
		"admin", g.AdminAddr().String(), "records", registryState, "config", source)
	if fn, ok := ctx.Value(startedKey{}).(func(*Gateway)); ok {
		fn(g)
	}

	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The drain starts only once the signal handler is gone, so a second
	// SIGINT/SIGTERM during the drain takes the default action and ends
	// the process at once.
	runCtx, startDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer startDrain()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Ready once a reload signal would be handled, not only once bound.
	sdNotify(log, "READY=1\nSTATUS=serving")
	// An upgrade tells the instance it replaces to drain once this one is
	// ready (its registry loaded), not merely bound.
	inst.takeOver(g.ready)
	var upgradeFailed atomic.Bool
	go func() {
		drain := func() {
			stop()
			sdNotify(log, "STOPPING=1\nSTATUS=draining")
			// From here a new instance may claim the addresses.
			inst.release()
			startDrain()
		}
		for {
			select {
			case <-sigCtx.Done():
				drain()
				return
			case <-inst.drainRequested():
				log.Info("draining: replaced by an upgrade")
				drain()
				return
			case err := <-inst.upgradeFailed():
				log.Error("upgrade failed; this instance stops", "error", err)
				upgradeFailed.Store(true)
				drain()
				return
			case <-hup:
				sdNotify(log, sdReloading())
				if err := g.Reload(); err != nil {
					log.Error("SIGHUP reload", "error", err)
				}
				sdNotify(log, "READY=1\nSTATUS=serving")
			}
		}
	}()

	err = g.Run(runCtx)
	if err != nil {
		log.Error("stopped", "error", err)
		return exitError
	}
	log.Info("stopped")
	if upgradeFailed.Load() {
		return exitError
	}
	return exitOK
}

// loadEmbeddedRegistry installs the embedded sample registry from memory:
// it has no file to watch, so it is loaded once and never reloaded.
func loadEmbeddedRegistry(reg *registry.Registry) error {
	snap, err := registry.ReadSnapshot(bytes.NewReader(configs.RegistrySample), configs.RegistrySampleName)
	if err != nil {
		return err
	}
	reg.Swap(snap)
	return nil
}

// registryPolicy builds the registry's decision policy from cfg, reading
// registry.suffixes when set.
func registryPolicy(cfg *Config) (registry.Policy, error) {
	var p registry.Policy
	var err error
	if p.IPAccess, err = registry.ParseVerdict(cfg.Policy.IPAccess); err != nil {
		return p, fmt.Errorf("policy.ip_access: %w", err)
	}
	if cfg.Registry.Suffixes != "" {
		f, err := os.Open(cfg.Registry.Suffixes)
		if err != nil {
			return p, fmt.Errorf("registry.suffixes: %w", err)
		}
		defer f.Close()
		if p.Suffixes, err = registry.LoadSuffixes(f); err != nil {
			return p, fmt.Errorf("registry.suffixes: %s: %w", cfg.Registry.Suffixes, err)
		}
	}
	return p, nil
}
