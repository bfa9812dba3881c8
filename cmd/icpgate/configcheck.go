package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// checkTimeout bounds the filing database's part of `serve --check`.
const checkTimeout = 15 * time.Second

// checkServe is `icpgate serve -config FILE --check`, in the spirit of
// `nginx -t`: everything serve would load at start is loaded and validated
// (config, suffix list, registry, block page, CA roots, data-plane config,
// listener addresses), and nothing is served or written. Every problem is
// listed, not only the first, so one run tells the whole story. It opens
// none of the files a running gateway holds locked (the local store, the
// control-plane state), so it can check a config next to a live gateway.
func checkServe(ctx context.Context, cfg *Config, stdout, stderr io.Writer) int {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var summary []string
	note := func(format string, args ...any) { summary = append(summary, fmt.Sprintf(format, args...)) }

	policy, err := registryPolicy(cfg)
	if err != nil {
		fail("%v", err)
	}
	reg := registry.New(registry.Options{CacheSize: -1, Policy: policy})
	switch {
	case cfg.Embedded():
		err = loadEmbeddedRegistry(reg)
		note("registry: embedded sample, %d records", reg.Snapshot().Len())
	case cfg.Registry.Postgres.DSN != "":
		dctx, cancel := context.WithTimeout(ctx, checkTimeout)
		err = loadPostgresOnce(dctx, cfg.Registry.Postgres, reg)
		cancel()
		if err != nil {
			err = fmt.Errorf("registry.postgres.dsn: loading the filing database: %w", err)
		} else {
			note("registry: filing database, %d records", reg.Snapshot().Len())
		}
	default:
		var snap *registry.Snapshot
		if snap, err = registry.LoadSnapshot(cfg.Registry.File); err == nil {
			note("registry: %s, %d records", cfg.Registry.File, snap.Len())
		} else {
			err = fmt.Errorf("registry.file: %w", err)
		}
	}
	if err != nil {
		fail("%v", err)
	}
	if p := cfg.Policy.TLSPage.CARootsFile; p != "" {
		if b, err := os.ReadFile(p); err != nil {
			fail("policy.tls_page.ca_roots_file: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			fail("policy.tls_page.ca_roots_file: %s holds no PEM certificate", p)
		}
	}
	// The data plane's own validation, block page template included.
	if _, err := proxy.NewServer(cfg.ProxyConfig(), decider{reg}, nil, slog.New(slog.DiscardHandler)); err != nil {
		fail("%v", err)
	}
	for i, l := range cfg.Listeners {
		if l.Transparent != "" {
			continue // tproxy listens on addresses that are not the machine's own
		}
		network := "tcp"
		if l.Protocol == "quic" {
			network = "udp"
		}
		if err := addressIsLocal(network, l.Address); err != nil {
			fail("listeners[%d].address: %v", i, err)
		}
	}
	if err := addressIsLocal("tcp", cfg.Admin.Address); err != nil {
		fail("admin.address: %v", err)
	}
	note("%d listeners, admin at %s", len(cfg.Listeners), cfg.Admin.Address)

	name := cfg.path
	if cfg.Embedded() {
		name = "the embedded config"
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "icpgate serve --check: %s: %d problems:\n", name, len(problems))
		for _, p := range problems {
			fmt.Fprintf(stderr, "  %s\n", p)
		}
		return exitError
	}
	fmt.Fprintf(stdout, "icpgate serve --check: %s is ok\n", name)
	for _, s := range summary {
		fmt.Fprintf(stdout, "  %s\n", s)
	}
	return exitOK
}

// addressIsLocal checks that the host of address can be listened on here,
// by binding it with an ephemeral port: the configured port may well be
// held by the gateway that is running now.
func addressIsLocal(network, address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	probe := net.JoinHostPort(host, "0")
	if network == "udp" {
		c, err := net.ListenPacket("udp", probe)
		if err != nil {
			return fmt.Errorf("%s cannot be listened on here: %w", host, err)
		}
		return c.Close()
	}
	ln, err := net.Listen("tcp", probe)
	if err != nil {
		return fmt.Errorf("%s cannot be listened on here: %w", host, err)
	}
	return ln.Close()
}
