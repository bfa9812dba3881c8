package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/icpgate/icpgate/metrics"
	"github.com/icpgate/icpgate/registry"
)

// PostgresConfig is registry.postgres: the filing database as the registry
// source, in place of registry.file.
type PostgresConfig struct {
	// DSN is a libpq URL of the filing database, e.g.
	// postgres://icpgate@db.internal/filings?sslmode=verify-full. Default
	// "": no database (registry.file is the source). Setting it replaces
	// registry.file.
	DSN string `yaml:"dsn"`
	// PollInterval is how often the gateway checks for changes when no
	// NOTIFY arrives. Default 10s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxDeleteFraction refuses a sync that would remove more than this
	// fraction of the records until an operator runs
	// `icpgate db confirm-deletes`; the registry keeps serving meanwhile.
	// Default 0.1; 1 disables the guard.
	MaxDeleteFraction float64 `yaml:"max_delete_fraction"`
}

// setDefaults fills registry.postgres's defaults when a DSN is set. Called
// from (*Config).setDefaults.
func (p *PostgresConfig) setDefaults() {
	if p.DSN == "" {
		return
	}
	orDefault(&p.PollInterval, registry.DefaultPollInterval)
	orDefault(&p.MaxDeleteFraction, registry.DefaultMaxDeleteFraction)
}

// validate checks registry.postgres. Called from (*Config).validate.
func (p *PostgresConfig) validate() error {
	if p.DSN == "" {
		return nil // the other keys wait for a dsn (the sample config lists them all)
	}
	if _, err := registry.NewPostgresSource(registry.New(registry.Options{CacheSize: -1}), registry.PostgresOptions{DSN: p.DSN}); err != nil {
		return fmt.Errorf("registry.postgres.dsn: %w", err)
	}
	if p.PollInterval < 100*time.Millisecond {
		return fmt.Errorf("registry.postgres.poll_interval: must be at least 100ms, got %s", p.PollInterval)
	}
	if f := p.MaxDeleteFraction; !(f > 0 && f <= 1) {
		return fmt.Errorf("registry.postgres.max_delete_fraction: must be above 0 and at most 1, got %v", f)
	}
	return nil
}

// pgSource is the gateway's PostgreSQL registry source with its local
// store and metrics.
type pgSource struct {
	src     *registry.PostgresSource
	store   *registry.Store // nil without registry.store
	reg     *registry.Registry
	started time.Time

	syncDuration *prometheus.HistogramVec
	lag          prometheus.Histogram
	collector    *pgCollector
}

// newPGSource opens the local store (if configured), restores its
// snapshot so the node serves at once, and prepares the source; Run
// connects. A database that is down is not an error here: the node serves
// the store's snapshot, or is not ready until the first full load.
func newPGSource(pc PostgresConfig, storePath string, reg *registry.Registry, log *slog.Logger) (*pgSource, error) {
	p := &pgSource{reg: reg, started: time.Now()}
	p.syncDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Subsystem: "registry", Name: "sync_duration_seconds",
		Help:    "Duration of registry syncs from the filing database, by kind (full, incremental).",
		Buckets: metrics.SyncBuckets,
	}, []string{"kind"})
	p.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Subsystem: "registry", Name: "change_lag_seconds",
		Help:    "Time from a change in the filing database to its being visible in decisions.",
		Buckets: metrics.LatencyBuckets,
	})
	if storePath != "" {
		// The store is a cache of the database: a node that cannot use it
		// (a read-only disk, another process holding it) still serves,
		// from the database, and says so.
		if st, err := registry.OpenStore(storePath, log); err != nil {
			log.Error("registry.store unusable: serving without a local store (no cold start with the database down)",
				"path", storePath, "error", err.Error())
		} else {
			p.store = st
		}
	}
	var err error
	p.src, err = registry.NewPostgresSource(reg, registry.PostgresOptions{
		DSN:               pc.DSN,
		PollInterval:      pc.PollInterval,
		MaxDeleteFraction: pc.MaxDeleteFraction,
		Store:             p.store,
		Logger:            log,
		OnSync: func(kind string, d time.Duration, err error) {
			if err == nil {
				p.syncDuration.WithLabelValues(kind).Observe(d.Seconds())
			}
		},
		OnLag: func(d time.Duration) { p.lag.Observe(max(d, 0).Seconds()) },
	})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("registry.postgres: %w", err)
	}
	if _, err := p.src.LoadStore(); err != nil {
		// Discarded already; the node waits for a full load.
		log.Warn("local store not used", "error", err.Error())
	}
	p.collector = &pgCollector{p: p}
	return p, nil
}

// register adds the source's metrics to reg.
func (p *pgSource) register(reg prometheus.Registerer) {
	reg.MustRegister(p.syncDuration, p.lag, p.collector)
}

// run syncs until ctx is done, then closes the store.
func (p *pgSource) run(ctx context.Context) {
	p.src.Run(ctx)
	p.close()
}

func (p *pgSource) close() {
	if p.store != nil {
		p.store.Close()
	}
}

// reloadStats maps the sync counters onto the registry collector's.
func (p *pgSource) reloadStats() registry.ReloadStats {
	st := p.src.Stats()
	rs := registry.ReloadStats{
		Successes:   st.FullLoads + st.Incremental,
		LastSuccess: st.LastSuccess,
		LastError:   st.LastError,
	}
	for k, n := range st.Errors {
		if k != registry.SyncErrInvalidRow {
			rs.Failures += n
		}
	}
	return rs
}

// freshAt is when the serving registry was last known to match the
// database.
func (p *pgSource) freshAt(st registry.SyncStats) time.Time {
	t := st.LastSuccess
	if st.FromStore && st.StoreSavedAt.After(t) {
		t = st.StoreSavedAt
	}
	return t
}

// ready is /readyz for a database-backed registry: ready once a snapshot
// serves (from the store or the database), with how stale it is.
func (p *pgSource) ready() (bool, string) {
	st := p.src.Stats()
	if !p.reg.Loaded() {
		d := "registry not loaded yet: waiting for the first full load from the filing database"
		if st.LastError != nil {
			d += " (" + st.LastError.Error() + ")"
		}
		return false, d
	}
	age := time.Since(p.freshAt(st)).Round(time.Second)
	switch {
	case st.DeletionRefused > 0:
		return true, fmt.Sprintf("sync refused: it would delete %d records; serving the registry as of %s ago; confirm with icpgate db confirm-deletes",
			st.DeletionRefused, age)
	case !st.Connected && st.FromStore:
		return true, fmt.Sprintf("filing database unreachable; serving the local store's registry, synced %s ago", age)
	case !st.Connected:
		return true, fmt.Sprintf("filing database unreachable; serving the registry as of %s ago", age)
	case st.FromStore:
		return true, fmt.Sprintf("serving the local store's registry (synced %s ago) while catching up", age)
	}
	return true, fmt.Sprintf("in sync with the filing database at change %d (checked %s ago)", st.Cursor, age)
}

// pgCollector exports the source's counters at scrape time.
type pgCollector struct{ p *pgSource }

var (
	pgSyncErrors = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "registry", "sync_errors_total"),
		"Registry sync errors by kind (connect, schema, query, gap, invalid_row, mass_delete, store); the last good registry keeps serving.",
		[]string{"kind"}, nil)
	pgConnected = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "registry", "database_connected"),
		"1 while a session with the filing database is up, else 0.", nil, nil)
	pgStaleness = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "registry", "staleness_seconds"),
		"Seconds since the serving registry was last known to match the filing database.", nil, nil)
	pgCursor = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "registry", "change_sequence"),
		"Last change sequence number of the filing database applied.", nil, nil)
	pgRefused = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "registry", "deletion_refused_records"),
		"Records a refused sync would delete (mass-deletion guard), 0 when none is refused: alert on > 0.", nil, nil)
	pgFromStore = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "registry", "from_store"),
		"1 while the registry serving came from the local store and no sync has succeeded since.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *pgCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pgSyncErrors, pgConnected, pgStaleness, pgCursor, pgRefused, pgFromStore} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *pgCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.src.Stats()
	for _, k := range registry.SyncErrorKinds() {
		ch <- prometheus.MustNewConstMetric(pgSyncErrors, prometheus.CounterValue, float64(st.Errors[k]), k)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	fresh := c.p.freshAt(st)
	if fresh.IsZero() {
		fresh = c.p.started
	}
	ch <- prometheus.MustNewConstMetric(pgConnected, prometheus.GaugeValue, b(st.Connected))
	ch <- prometheus.MustNewConstMetric(pgStaleness, prometheus.GaugeValue, time.Since(fresh).Seconds())
	ch <- prometheus.MustNewConstMetric(pgCursor, prometheus.GaugeValue, float64(st.Cursor))
	ch <- prometheus.MustNewConstMetric(pgRefused, prometheus.GaugeValue, float64(st.DeletionRefused))
	ch <- prometheus.MustNewConstMetric(pgFromStore, prometheus.GaugeValue, b(st.FromStore))
}

// loadPostgresOnce installs the filing database's registry into reg with
// one full load, for one-shot commands (icpgate check).
func loadPostgresOnce(ctx context.Context, pc PostgresConfig, reg *registry.Registry) error {
	src, err := registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: pc.DSN})
	if err != nil {
		return err
	}
	return src.Sync(ctx)
}
