// Command icpgate is the ICP-filing access gateway: an edge proxy that reads
// the name each connection asks for (TLS SNI, HTTP Host), looks its
// registrable domain up in the provider's registry of ICP filings and passes
// the traffic to the hosted server or blocks it with an explanation.
//
// Usage:
//
//	icpgate serve -config FILE                 run the gateway (SIGHUP reloads, SIGTERM drains)
//	icpgate check -config FILE [--json] HOST…  explain the decision for each host
//	icpgate demo                               gateway + demo origins on loopback
//	icpgate healthcheck [-config FILE]         exit 0 when the admin /healthz answers 200 (for containers)
//	icpgate db migrate|status|confirm-deletes  the filing database's schema and guard
//	icpgate import [--dry-run] FILE            load a CSV/JSONL registry into the filing database
//	icpgate export [-o FILE]                   write the filing database's records
//	icpgate token create|ls|revoke             access tokens of the admin API and console
//	icpgate allow|deny add|ls|rm|extend        overrides, through the running gateway's admin API
//	icpgate explain HOST…                      the running gateway's decision, overrides included
//	icpgate audit ls                           the audit log
//	icpgate report unfiled [--csv]             blocked domains, for the filing team
//	icpgate compliance check -config FILE [--json] DOMAIN…  footer and access checks of filed domains, now
//	icpgate blockpage                          print the built-in block page template
//	icpgate version
//
// main is thin: it hands the arguments to run, which tests drive directly.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	// The zone database, for policy.time_zone where the system has none
	// (distroless and scratch containers): about 450 KB.
	_ "time/tzdata"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK      = 0
	exitBlocked = 1 // check: at least one host is blocked; healthcheck: unhealthy
	exitError   = 2 // usage, config or runtime error
)

// run executes the subcommand in args[0] and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitError
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "check":
		return cmdCheck(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(ctx, rest, stdout, stderr)
	case "db":
		return cmdDB(ctx, rest, stdout, stderr)
	case "import":
		return cmdImport(ctx, rest, stdout, stderr)
	case "export":
		return cmdExport(ctx, rest, stdout, stderr)
	case "token":
		return cmdToken(ctx, rest, stdout, stderr)
	case "allow":
		return cmdAllow(ctx, rest, stdout, stderr)
	case "deny":
		return cmdDeny(ctx, rest, stdout, stderr)
	case "explain":
		return cmdExplain(ctx, rest, stdout, stderr)
	case "audit":
		return cmdAudit(ctx, rest, stdout, stderr)
	case "report":
		return cmdReport(ctx, rest, stdout, stderr)
	case "compliance":
		return cmdCompliance(ctx, rest, stdout, stderr)
	case "blockpage":
		return cmdBlockPage(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "icpgate %s\n", versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "icpgate: unknown command %q\n\n", cmd)
	usage(stderr)
	return exitError
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: icpgate COMMAND [flags]

Commands:
  serve -config FILE                 run the gateway; SIGHUP reloads, SIGTERM drains
  check -config FILE [--json] HOST…  explain the decision for each host
                                     (exit 0: all pass, 1: some blocked, 2: error)
  demo                               run the gateway with demo origins on loopback
  healthcheck [-config FILE]         exit 0 when the admin listener's /healthz answers 200
                                     (-url URL: probe that URL instead)
  db migrate|status|confirm-deletes  manage icpgate's schema in the filing database
  import [--dry-run] [--replace] FILE  load a CSV/JSONL registry into the filing database
  export [-format jsonl|csv] [-o FILE] write the filing database's records
  compliance check -config FILE [--json] DOMAIN…
                                     check now that each filed domain's home page shows its
                                     filing number linked to beian.miit.gov.cn, and that it
                                     resolves into compliance.provider_networks
                                     (exit 0: all ok, 1: some not, 2: error)
  blockpage                          print the built-in block page template, to start
                                     a policy.block_page from (docs/block-page.md)
  version                            print the version

Access tokens (written to admin.tokens_file or the filing database directly):
  token create --role viewer|support|admin --name NAME   print a new token, once
  token ls                           list tokens
  token revoke NAME|ID               revoke a token at once

Admin commands (through the running gateway's admin API; token in $ICPGATE_TOKEN;
--admin URL overrides the config's admin.address; --json for scripts):
  allow add HOST --ticket T --reason R [--ttl D | --expires T] [--scope exact|domain] [--confirm]
  allow ls [--all|--expired] [--q TEXT]
  allow rm ID                        remove an allow
  allow extend ID --ttl D            set a new expiry, from now
  deny add HOST --reason R --ttl D   block a host whatever its filing (admin role)
  deny ls|rm|extend ...              as for allow
  explain HOST...                    why each host passes or is blocked (exit 1: some blocked)
  audit ls [--who W] [--action A] [--since T] [--limit N]
  report unfiled [--n N] [--reason R] [--csv] [-o FILE]

Without -config, commands use the embedded sample config and registry.
Exit codes: 0 ok, 1 check/explain found a blocked host, 2 error.
`)
}

// versionString is the ldflags version, else the module version or VCS
// revision recorded by the Go toolchain.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
