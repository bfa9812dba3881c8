package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/admin/unfiled"
	"github.com/icpgate/icpgate/docs"
	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// controlPlane is the state behind the admin API: overrides and the audit
// log (a Backend), access tokens (a TokenStore) and the unfiled-site
// report. In file mode they are a bbolt file and a token file; with
// registry.postgres.dsn the filing database holds overrides, audit and
// tokens for every gateway on it.
type controlPlane struct {
	log     *slog.Logger
	reg     *registry.Registry
	backend admin.Backend    // nil when the filing database could not be opened
	tokens  admin.TokenStore // nil: no one can sign in
	report  *unfiled.Report
	// pg is the filing database's store (PostgreSQL mode), to which the
	// report is pushed and from which the API reads every gateway's sum.
	pg   *adminstore.Postgres
	node string // this gateway's name in the pushed report (cfg.Node)
	loc  *time.Location
	// fileMode: this process pushes stored overrides into its registry
	// (apply); with PostgreSQL the registry source reads them itself.
	fileMode bool
	closers  []func() error // run in reverse order by close
	tmpDir   string         // the private state directory when admin.state is ""

	applyMu sync.Mutex // serialises apply: a read of the overrides and its install
}

// openControlPlane opens the control plane's stores for cfg. reg must hold
// its first snapshot already: in file mode the stored overrides are applied
// to it before the gateway serves.
func openControlPlane(ctx context.Context, cfg *Config, reg *registry.Registry, log *slog.Logger) (_ *controlPlane, err error) {
	cp := &controlPlane{log: log.With("component", "control_plane"), reg: reg}
	defer func() {
		if err != nil {
			cp.close()
		}
	}()
	if dsn := cfg.Registry.Postgres.DSN; dsn != "" {
		pg, err := adminstore.OpenPostgres(ctx, dsn)
		if err != nil {
			// Fail open for the data plane: the gateway serves traffic
			// from the registry (or its local store) without a control
			// plane rather than not at all; the API answers 401/503 until
			// a restart finds the database.
			cp.log.Error("filing database unavailable for overrides, audit and tokens; the admin API refuses them until restart", "error", err)
		} else {
			cp.backend, cp.tokens, cp.pg = pg, pg, pg
			cp.closers = append(cp.closers, closeFunc(pg))
		}
	} else {
		cp.fileMode = true
		state := cfg.Admin.State
		if state == "" {
			if cp.tmpDir, err = os.MkdirTemp("", "icpgate-state-"); err != nil {
				return nil, fmt.Errorf("admin.state: temporary directory: %w", err)
			}
			state = filepath.Join(cp.tmpDir, "admin.db")
			cp.log.Warn("admin.state is not set: overrides and the audit log are kept in a temporary file and lost at exit; whitelist changes are not persisted", "path", state)
		}
		b, err := adminstore.OpenBolt(state)
		if err != nil {
			return nil, fmt.Errorf("admin.state: %w", err)
		}
		cp.backend = b
		cp.closers = append(cp.closers, closeFunc(b))
		if cfg.Admin.TokensFile == "" {
			cp.log.Warn("admin.tokens_file is not set: no one can sign in to the admin API or console (set it and run icpgate token create)")
		} else {
			tf, err := adminstore.OpenTokenFile(cfg.Admin.TokensFile)
			if err != nil {
				return nil, fmt.Errorf("admin.tokens_file: %w", err)
			}
			cp.tokens = tf
			cp.closers = append(cp.closers, closeFunc(tf))
		}
		if err := cp.apply(ctx); err != nil {
			return nil, fmt.Errorf("applying stored overrides: %w", err)
		}
	}
	// CSV times in the zone block pages use, with their offset; validated
	// with the config, so an error here leaves UTC.
	loc, _ := time.LoadLocation(cfg.Policy.TimeZone)
	cp.loc, cp.node = loc, cfg.Node
	cp.report = unfiled.New(unfiled.Options{
		Capacity:        cfg.Report.Capacity,
		MaxDestinations: cfg.Report.MaxDestinations,
		File:            cfg.Report.File,
		Log:             log, // unfiled.New adds component=unfiled
		Location:        loc,
	})
	if err := cp.report.Load(); err != nil {
		// The report is a statistic: losing it must not stop the gateway.
		cp.log.Error("unfiled report not restored, starting empty", "error", err)
	}
	return cp, nil
}

// closeFunc adapts the Close method of a store, whichever its signature.
func closeFunc(c any) func() error {
	switch c := c.(type) {
	case interface{ Close() error }:
		return c.Close
	case interface{ Close() }:
		return func() error { c.Close(); return nil }
	}
	return func() error { return nil }
}

// apply installs the stored overrides in the registry (file mode). It is
// the admin API's Apply hook and runs once at start; the file source
// carries overrides over to every reloaded snapshot. An override the
// registry refuses (stored by an older version, say) is logged and
// skipped rather than dropping the whole whitelist.
func (cp *controlPlane) apply(ctx context.Context) error {
	if !cp.fileMode || cp.backend == nil {
		return nil
	}
	cp.applyMu.Lock()
	defer cp.applyMu.Unlock()
	ovs, err := cp.backend.Overrides(ctx)
	if err != nil {
		return err
	}
	valid := ovs[:0:0]
	for _, o := range ovs {
		var b registry.Builder
		if err := b.AddOverride(o); err != nil {
			cp.log.Error("stored override skipped", "id", o.ID, "error", err)
			continue
		}
		valid = append(valid, o)
	}
	return cp.reg.Update(func(old *registry.Snapshot) (*registry.Snapshot, error) {
		if len(valid) == 0 && len(old.Overrides()) == 0 {
			return nil, nil // nothing stored, nothing serving: no swap
		}
		return old.WithOverrides(valid)
	})
}

// adminConfig fills the control-plane fields of the admin server's config.
func (cp *controlPlane) adminConfig(cfg *Config, acfg admin.Config) admin.Config {
	acfg.Backend = cp.backend
	acfg.Tokens = cp.tokens
	if cp.fileMode {
		acfg.Apply = cp.apply
	}
	acfg.Report = cp.report
	if cp.pg != nil {
		acfg.Report = mergedReport{pg: cp.pg, local: cp.report, loc: cp.loc, log: cp.log}
	}
	acfg.Hosts = append(append([]string(nil), cfg.Admin.Hosts...), cfg.Admin.TLSNames...)
	acfg.DefaultAllowTTL = cfg.Admin.DefaultAllowTTL
	acfg.MaxAllowTTL = cfg.Admin.MaxAllowTTL
	acfg.MaxDenyTTL = cfg.Admin.MaxDenyTTL
	acfg.MutationsPerMinute = cfg.Admin.MutationsPerMinute
	acfg.FailedLoginsPerMinute = cfg.Admin.FailedLoginsPerMinute
	acfg.TimeZone = cfg.Policy.TimeZone
	acfg.Node = cfg.Node
	acfg.Docs = docs.FS
	return acfg
}

// runReport saves the unfiled report periodically until ctx is done, and
// once more then; in PostgreSQL mode it also pushes it to the filing
// database.
func (cp *controlPlane) runReport(ctx context.Context) {
	if cp.pg == nil {
		cp.report.Run(ctx)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { cp.report.RunPush(ctx, cp.pg, cp.node) })
	cp.report.Run(ctx)
	wg.Wait()
}

// close closes the stores and removes the temporary state directory.
func (cp *controlPlane) close() error {
	var errs []error
	for i := len(cp.closers) - 1; i >= 0; i-- {
		errs = append(errs, cp.closers[i]())
	}
	cp.closers = nil
	if cp.tmpDir != "" {
		errs = append(errs, os.RemoveAll(cp.tmpDir))
		cp.tmpDir = ""
	}
	return errors.Join(errs...)
}

// blockObserver feeds the data plane's blocks to the unfiled report: proxy
// and admin never import each other, cmd adapts one to the other.
type blockObserver struct{ r *unfiled.Report }

var _ proxy.BlockObserver = blockObserver{}

// ObserveBlock implements proxy.BlockObserver.
func (o blockObserver) ObserveBlock(reason, domain string, dst proxy.Destination) {
	if dst.Upstream != "" {
		o.r.ObserveUpstream(reason, domain, dst.Upstream)
		return
	}
	o.r.Observe(reason, domain, dst.Original)
}
