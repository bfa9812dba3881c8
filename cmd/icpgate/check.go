package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// cmdCheck prints the decision for each host and exits 0 when all pass, 1
// when any is blocked and 2 on error. Flags may come before or after the
// hosts.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default: $ICPGATE_CONFIG, else /etc/icpgate/icpgate.yaml if present, else the embedded demo config)")
	asJSON := fs.Bool("json", false, "print one JSON object per host (JSON Lines)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: icpgate check [-config FILE] [--json] HOST...")
		fs.PrintDefaults()
	}
	hosts, err := parseInterleaved(fs, args)
	if err != nil {
		return exitError
	}
	if len(hosts) == 0 {
		fs.Usage()
		return exitError
	}
	cfg, err := LoadConfig(findConfig(*path, "check", stderr))
	if err != nil {
		fmt.Fprintf(stderr, "icpgate check: %v\n", err)
		return exitError
	}
	policy, err := registryPolicy(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate check: %v\n", err)
		return exitError
	}
	reg := registry.New(registry.Options{CacheSize: -1, Policy: policy})
	// A database row that fails validation gives its domain no record in
	// a running gateway as in this one-off load (registry.PostgresSource),
	// so both decide it alike; the decision's Rejected says why.
	source := "registry file " + cfg.Registry.File
	if cfg.Embedded() {
		err = loadEmbeddedRegistry(reg)
	} else if cfg.Registry.Postgres.DSN != "" {
		source = "the filing database"
		err = loadPostgresOnce(ctx, cfg.Registry.Postgres, reg)
	} else {
		var snap *registry.Snapshot
		if snap, err = registry.LoadSnapshot(cfg.Registry.File); err == nil {
			reg.Swap(snap)
		}
	}
	if err != nil {
		printLoadError(stderr, "icpgate check: loading "+source, err, "no host checked")
		return exitError
	}

	code := exitOK
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for i, h := range hosts {
		d := reg.Decide(h)
		if d.Verdict != registry.Pass {
			code = exitBlocked
		}
		if *asJSON {
			if err := enc.Encode(admin.Explain(&d)); err != nil {
				fmt.Fprintf(stderr, "icpgate check: %v\n", err)
				return exitError
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		io.WriteString(stdout, d.Explain())
		if rj := d.Rejected; rj != nil {
			what := "the row"
			if rj.Field != "" {
				what = fmt.Sprintf("%s %q of the row", rj.Field, rj.Value)
			}
			fmt.Fprintf(stdout, "fix:        ask the filing team to correct %s for %s in the filing database; the gateways use the row once it is valid\n", what, rj.Domain)
		}
		if d.Verdict != registry.Pass {
			// The block page's advice, so support reads what the owner sees.
			if _, hint, ok := proxy.ReasonAdvice(string(d.Reason)); ok {
				fmt.Fprintf(stdout, "what to do: %s\n", hint)
			}
		}
	}
	return code
}

// parseInterleaved parses flags anywhere among the positional arguments
// ("check a.cn --json b.cn"); everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
