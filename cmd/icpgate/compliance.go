package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/icpgate/icpgate/compliance"
	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// ComplianceConfig configures the filed-site checks (备案专项核查) of
// icpgate compliance check.
type ComplianceConfig struct {
	// Resolver is the host:port of the DNS server the access check asks.
	// Default "": the access check is skipped.
	Resolver string `yaml:"resolver"`
	// ProviderNetworks are the CIDRs of the provider's own address
	// blocks; a filed domain resolving outside them is reported. Default
	// []: every address is outside.
	ProviderNetworks []string `yaml:"provider_networks"`

	// Parsed by validate.
	networks []netip.Prefix
}

// validate checks the resolver's host:port and parses the networks,
// naming the bad field.
func (c *ComplianceConfig) validate() error {
	if c.Resolver != "" {
		if err := checkHostPort(c.Resolver, false); err != nil {
			return fmt.Errorf("compliance.resolver: %w", err)
		}
	}
	c.networks = c.networks[:0]
	for i, s := range c.ProviderNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("compliance.provider_networks[%d]: must be a CIDR such as 203.0.113.0/24, got %q", i, s)
		}
		c.networks = append(c.networks, p.Masked())
	}
	return nil
}

// complianceConcurrency is how many domains icpgate compliance check
// checks at once.
const complianceConcurrency = 8

// complianceLine is one domain's line of icpgate compliance check --json
// (a fixed interface: domain, footer, footer_found, link, access and
// addresses are relied on by scripts).
type complianceLine struct {
	Domain          string                  `json:"domain"`
	Footer          compliance.FooterStatus `json:"footer"`
	FooterFound     string                  `json:"footer_found"`
	Link            bool                    `json:"link"`
	FilingNumber    string                  `json:"filing_number"`
	FooterURL       string                  `json:"footer_url,omitempty"`
	FooterEvidence  string                  `json:"footer_evidence,omitempty"`
	FooterTruncated bool                    `json:"footer_truncated,omitempty"`
	FooterNote      string                  `json:"footer_note,omitempty"`
	Access          compliance.AccessStatus `json:"access"`
	Addresses       []netip.Addr            `json:"addresses"`
	Outside         []netip.Addr            `json:"outside,omitempty"`
	AccessNote      string                  `json:"access_note,omitempty"`
	CheckedAt       time.Time               `json:"checked_at"`
}

// ok reports whether both checks passed; an access check skipped for
// want of a resolver does not count against a domain.
func (l *complianceLine) ok() bool {
	return l.Footer == compliance.FooterOK &&
		(l.Access == compliance.AccessOK || l.Access == compliance.AccessSkipped)
}

// cmdCompliance runs "compliance check": the footer and access checks of
// the named domains, now, without a running gateway. It exits 0 when all
// pass, 1 when any does not and 2 on error.
func cmdCompliance(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: icpgate compliance check [-config FILE] [--json] DOMAIN...")
		return exitError
	}
	fs := flag.NewFlagSet("compliance check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default: $ICPGATE_CONFIG, else /etc/icpgate/icpgate.yaml if present, else the embedded demo config)")
	asJSON := fs.Bool("json", false, "print one JSON object per domain (JSON Lines)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: icpgate compliance check [-config FILE] [--json] DOMAIN...")
		fs.PrintDefaults()
	}
	domains, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return exitError
	}
	if len(domains) == 0 {
		fs.Usage()
		return exitError
	}
	for i, d := range domains {
		domains[i] = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if _, err := registry.RegistrableDomain(domains[i]); err != nil {
			fmt.Fprintf(stderr, "icpgate compliance check: %q: %v\n", d, err)
			return exitError
		}
	}
	cfg, err := LoadConfig(findConfig(*path, "compliance check", stderr))
	if err != nil {
		fmt.Fprintf(stderr, "icpgate compliance check: %v\n", err)
		return exitError
	}
	snap, err := loadRegistryOnce(ctx, cfg, stderr, "icpgate compliance check", "no domain checked")
	if err != nil {
		return exitError
	}
	lines := checkDomains(ctx, cfg, snap, domains)

	code := exitOK
	for i := range lines {
		if !lines[i].ok() {
			code = exitBlocked
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		for i := range lines {
			if err := enc.Encode(&lines[i]); err != nil {
				fmt.Fprintf(stderr, "icpgate compliance check: %v\n", err)
				return exitError
			}
		}
		return code
	}
	printComplianceTable(stdout, lines)
	return code
}

// checkDomains runs both checks for each domain, a few at a time, and
// returns the lines in the order of domains.
func checkDomains(ctx context.Context, cfg *Config, snap *registry.Snapshot, domains []string) []complianceLine {
	httpUp, tlsUp := footerUpstreams(cfg.Listeners)
	lines := make([]complianceLine, len(domains))
	sem := make(chan struct{}, complianceConcurrency)
	var wg sync.WaitGroup
	for i, d := range domains {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var rec *registry.Record
			if base, err := registry.RegistrableDomain(d); err == nil && snap != nil {
				rec = snap.Lookup(base)
			}
			f := compliance.CheckFooter(ctx, d, rec, compliance.FooterOptions{HTTPUpstream: httpUp, TLSUpstream: tlsUp})
			a := compliance.CheckAccess(ctx, d, compliance.AccessOptions{
				Resolver: cfg.Compliance.Resolver, ProviderNetworks: cfg.Compliance.networks,
			})
			l := complianceLine{
				Domain: d, Footer: f.Status, FooterFound: f.Found, Link: f.Link, FilingNumber: f.Want,
				FooterURL: f.URL, FooterEvidence: f.Evidence, FooterTruncated: f.Truncated, FooterNote: f.Note,
				Access: a.Status, Addresses: a.Addresses, Outside: a.Outside, AccessNote: a.Note, CheckedAt: f.CheckedAt,
			}
			if rec == nil {
				l.FooterNote = strings.TrimPrefix(l.FooterNote+"; no record in the registry", "; ")
			}
			lines[i] = l
		}()
	}
	wg.Wait()
	return lines
}

// footerUpstreams returns the upstreams a visitor's HTTP and HTTPS reach
// through the gateway: those of the first http and the first tls
// listener, else of an auto listener. A transparent listener (upstream
// "original") gives none: the check dials only configured addresses.
func footerUpstreams(ls []ListenerConfig) (httpUp, tlsUp string) {
	var autoUp string
	for _, l := range ls {
		if l.Upstream == proxy.UpstreamOriginal {
			continue
		}
		switch {
		case l.Protocol == "http" && httpUp == "":
			httpUp = l.Upstream
		case l.Protocol == "tls" && tlsUp == "":
			tlsUp = l.Upstream
		case l.Protocol == "auto" && autoUp == "":
			autoUp = l.Upstream
		}
	}
	if httpUp == "" {
		httpUp = autoUp
	}
	if tlsUp == "" {
		tlsUp = autoUp
	}
	return httpUp, tlsUp
}

// loadRegistryOnce loads the configured registry (the embedded sample,
// the filing database or the registry file) once, as a one-off command
// sees it. A load error is printed, naming what was not done.
func loadRegistryOnce(ctx context.Context, cfg *Config, stderr io.Writer, cmd, outcome string) (*registry.Snapshot, error) {
	policy, err := registryPolicy(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return nil, err
	}
	reg := registry.New(registry.Options{CacheSize: -1, Policy: policy})
	source := "registry file " + cfg.Registry.File
	switch {
	case cfg.Embedded():
		err = loadEmbeddedRegistry(reg)
	case cfg.Registry.Postgres.DSN != "":
		source = "the filing database"
		err = loadPostgresOnce(ctx, cfg.Registry.Postgres, reg)
	default:
		var snap *registry.Snapshot
		if snap, err = registry.LoadSnapshot(cfg.Registry.File); err == nil {
			reg.Swap(snap)
		}
	}
	if err != nil {
		printLoadError(stderr, cmd+": loading "+source, err, outcome)
		return nil, err
	}
	return reg.Snapshot(), nil
}

// printComplianceTable prints one row per domain, then the notes and
// evidence of the rows that did not pass.
func printComplianceTable(w io.Writer, lines []complianceLine) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tFOOTER\tFOUND\tLINK\tACCESS\tADDRESSES")
	for _, l := range lines {
		found := l.FooterFound
		if found == "" {
			found = "-"
		}
		addrs := make([]string, len(l.Addresses))
		for i, a := range l.Addresses {
			addrs[i] = a.String()
		}
		as := strings.Join(addrs, ",")
		if as == "" {
			as = "-"
		}
		link := "no"
		if l.Link {
			link = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.Domain, l.Footer, found, link, l.Access, as)
	}
	tw.Flush()
	for _, l := range lines {
		if l.ok() && l.FooterNote == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", l.Domain)
		if l.FilingNumber != "" {
			fmt.Fprintf(w, "  filing number: %s\n", l.FilingNumber)
		}
		if l.FooterURL != "" {
			fmt.Fprintf(w, "  page:          %s\n", l.FooterURL)
		}
		if l.FooterEvidence != "" {
			fmt.Fprintf(w, "  evidence:      %s\n", l.FooterEvidence)
		}
		if l.FooterNote != "" {
			fmt.Fprintf(w, "  footer note:   %s\n", l.FooterNote)
		}
		if len(l.Outside) > 0 {
			out := make([]string, len(l.Outside))
			for i, a := range l.Outside {
				out[i] = a.String()
			}
			fmt.Fprintf(w, "  outside:       %s (not in compliance.provider_networks)\n", strings.Join(out, ", "))
		}
		if l.AccessNote != "" {
			fmt.Fprintf(w, "  access note:   %s\n", l.AccessNote)
		}
	}
}
