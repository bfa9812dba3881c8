package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// The admin commands (allow, deny, explain, audit, report) talk to a
// running gateway's admin API, so they see exactly what it decides and
// every change is checked, applied and audited by the gateway.

// errUsage is returned after a usage message was printed.
var errUsage = errors.New("usage")

// adminCmd runs one admin command: f does the work; an error is printed as
// "icpgate NAME: error" with exit code 2. -h prints the flags and exits 0.
func adminCmd(name string, stderr io.Writer, f func() (int, error)) int {
	code, err := f()
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitError
	case err != nil:
		fmt.Fprintf(stderr, "icpgate %s: %v\n", name, err)
		return exitError
	}
	return code
}

// parseFlags parses flags anywhere among the arguments and returns the
// positional ones; flag.ErrHelp for -h, errUsage after a flag error (the
// flag package printed it).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	if err != nil {
		return nil, errUsage
	}
	return pos, nil
}

// withUsage makes fs print "Usage: icpgate USAGE" before its flags.
func withUsage(fs *flag.FlagSet, stderr io.Writer, usage string) *flag.FlagSet {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: icpgate %s\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// usageError prints msg and the usage of fs and returns errUsage.
func usageError(fs *flag.FlagSet, stderr io.Writer, msg string) error {
	if msg != "" {
		fmt.Fprintf(stderr, "icpgate %s: %s\n", fs.Name(), msg)
	}
	fs.Usage()
	return errUsage
}

// addUsage is the usage line of "allow add" or "deny add".
func addUsage(action string) string {
	if action == "allow" {
		return "allow add HOST --ticket T --reason R [--ttl D | --expires T] [--scope exact|domain] [--confirm] [-config FILE] [--admin URL] [--json]"
	}
	return action + " add HOST --reason R --ttl D | --expires T [--scope exact|domain] [-config FILE] [--admin URL] [--json]"
}

// cmdAllow manages allow overrides: the support whitelist.
func cmdAllow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdOverrides(ctx, "allow", args, stdout, stderr)
}

// cmdDeny manages deny overrides: the ops denylist (admin role).
func cmdDeny(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdOverrides(ctx, "deny", args, stdout, stderr)
}

// cmdOverrides dispatches "allow|deny add|ls|rm|extend".
func cmdOverrides(ctx context.Context, action string, args []string, stdout, stderr io.Writer) int {
	subs := "add|ls|rm|extend"
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Usage: icpgate %s %s ... (icpgate %s SUBCOMMAND -h for its flags)\n", action, subs, action)
		return exitError
	}
	sub, rest := args[0], args[1:]
	name := action + " " + sub
	return adminCmd(name, stderr, func() (int, error) {
		switch sub {
		case "add":
			return overrideAdd(ctx, action, rest, stdout, stderr)
		case "ls", "list":
			return overrideList(ctx, action, rest, stdout, stderr)
		case "rm", "remove":
			return overrideRemove(ctx, action, rest, stdout, stderr)
		case "extend":
			return overrideExtend(ctx, action, rest, stdout, stderr)
		}
		return exitError, fmt.Errorf("unknown subcommand %q: want %s", sub, subs)
	})
}

// createBody is the body of POST /v1/overrides.
type createBody struct {
	Host    string `json:"host"`
	Scope   string `json:"scope,omitempty"`
	Action  string `json:"action"`
	Reason  string `json:"reason"`
	Ticket  string `json:"ticket,omitempty"`
	TTL     string `json:"ttl,omitempty"`
	Expires string `json:"expires,omitempty"`
	Confirm bool   `json:"confirm,omitempty"`
}

func overrideAdd(ctx context.Context, action string, args []string, stdout, stderr io.Writer) (int, error) {
	fs := withUsage(flag.NewFlagSet(action+" add", flag.ContinueOnError), stderr, addUsage(action))
	cf := addClientFlags(fs)
	var b createBody
	fs.StringVar(&b.Reason, "reason", "", "why (required), e.g. the filing's status")
	if action == "allow" {
		fs.StringVar(&b.Ticket, "ticket", "", "support ticket (required for an allow)")
		fs.BoolVar(&b.Confirm, "confirm", false, "allow even a cancelled or filing_pending domain")
	}
	fs.StringVar(&b.TTL, "ttl", "", "lifetime, e.g. 720h or 30d (allow default: admin.default_allow_ttl)")
	fs.StringVar(&b.Expires, "expires", "", "expiry as an RFC 3339 time, instead of --ttl")
	fs.StringVar(&b.Scope, "scope", "", "exact (this host only) or domain (the registrable domain and every name under it); default: domain for a registrable domain, else exact")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return exitError, err
	}
	if len(pos) != 1 {
		return exitError, usageError(fs, stderr, "want exactly one HOST")
	}
	b.Host, b.Action = pos[0], action
	c, err := newAdminClient(cf)
	if err != nil {
		return exitError, err
	}
	var o admin.OverrideJSON
	if _, err := c.sendJSON(ctx, http.MethodPost, "/v1/overrides", b, "", &o); err != nil {
		return exitError, err
	}
	if cf.json {
		return exitOK, printJSON(stdout, o)
	}
	fmt.Fprintf(stdout, "%s %s (%s scope) until %s: override %s\n", verb(action), o.Host, o.Scope, fmtTime(o.Expires), o.ID)
	return exitOK, nil
}

// verb is the past tense of an override's action.
func verb(action string) string {
	if action == "deny" {
		return "denied"
	}
	return "allowed"
}

func overrideList(ctx context.Context, action string, args []string, stdout, stderr io.Writer) (int, error) {
	fs := withUsage(flag.NewFlagSet(action+" ls", flag.ContinueOnError), stderr, action+" ls [--all|--expired] [--q TEXT] [-config FILE] [--admin URL] [--json]")
	cf := addClientFlags(fs)
	all := fs.Bool("all", false, "list expired overrides too")
	expired := fs.Bool("expired", false, "list only expired overrides")
	q := fs.String("q", "", "only hosts containing this text")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return exitError, err
	}
	if len(pos) != 0 {
		return exitError, usageError(fs, stderr, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if *all && *expired {
		return exitError, errors.New("--all and --expired: pick one")
	}
	c, err := newAdminClient(cf)
	if err != nil {
		return exitError, err
	}
	query := url.Values{"action": {action}, "limit": {"1000"}}
	switch {
	case *expired:
		query.Set("active", "false")
	case !*all:
		query.Set("active", "true")
	}
	if *q != "" {
		query.Set("q", *q)
	}
	var list []admin.OverrideJSON
	// Pages of 1000; the bound only stops a server that never says "last
	// page" from looping for ever.
	for page := 0; page < 10000; page++ {
		var p struct {
			Overrides []admin.OverrideJSON `json:"overrides"`
			Next      string               `json:"next"`
		}
		if _, err := c.getJSON(ctx, "/v1/overrides", query, &p); err != nil {
			return exitError, err
		}
		list = append(list, p.Overrides...)
		if p.Next == "" {
			break
		}
		query.Set("after", p.Next)
	}
	if cf.json {
		if list == nil {
			list = []admin.OverrideJSON{}
		}
		return exitOK, printJSON(stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no %s overrides\n", listWhich(action, *all, *expired))
		return exitOK, nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tSCOPE\tEXPIRES\tSTATUS\tTICKET\tBY\tREASON")
	for _, o := range list {
		status := "active"
		if !o.Active {
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Host, o.Scope, fmtTime(o.Expires), status,
			cell(o.Ticket), cell(o.CreatedBy), cell(o.Reason))
	}
	return exitOK, tw.Flush()
}

// listWhich names what an empty listing was asked for.
func listWhich(action string, all, expired bool) string {
	switch {
	case all:
		return action
	case expired:
		return "expired " + action
	}
	return "active " + action
}

// getOverride reads override id and checks it is of action, returning it
// with its ETag for the If-Match of a change.
func getOverride(ctx context.Context, c *adminClient, action, id string) (admin.OverrideJSON, string, error) {
	var o admin.OverrideJSON
	r, err := c.getJSON(ctx, "/v1/overrides/"+url.PathEscape(id), nil, &o)
	if err != nil {
		return o, "", err
	}
	if o.Action != action {
		return o, "", fmt.Errorf("override %s is a %s, not a %s: use icpgate %s", id, o.Action, action, o.Action)
	}
	etag := r.header.Get("ETag")
	if etag == "" {
		etag = strconv.Quote(strconv.FormatInt(o.Version, 10))
	}
	return o, etag, nil
}

// changeOverride reads override id (of action) and sends method with body
// to it under If-Match of the version read, so a change made by someone
// else in between is refused (412) rather than overwritten.
func changeOverride(ctx context.Context, cf *clientFlags, action, id, method string, body any) (admin.OverrideJSON, error) {
	var o admin.OverrideJSON
	c, err := newAdminClient(cf)
	if err != nil {
		return o, err
	}
	_, etag, err := getOverride(ctx, c, action, id)
	if err != nil {
		return o, err
	}
	_, err = c.sendJSON(ctx, method, "/v1/overrides/"+url.PathEscape(id), body, etag, &o)
	return o, err
}

func overrideRemove(ctx context.Context, action string, args []string, stdout, stderr io.Writer) (int, error) {
	fs := withUsage(flag.NewFlagSet(action+" rm", flag.ContinueOnError), stderr, action+" rm ID|HOST [-config FILE] [--admin URL] [--json]")
	cf := addClientFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return exitError, err
	}
	if len(pos) != 1 {
		return exitError, usageError(fs, stderr, "want exactly one override ID or HOST (see icpgate "+action+" ls)")
	}
	id := pos[0]
	if !isOverrideID(id) {
		if id, err = activeOverrideID(ctx, cf, action, pos[0]); err != nil {
			return exitError, err
		}
	}
	o, err := changeOverride(ctx, cf, action, id, http.MethodDelete, nil)
	if err != nil {
		return exitError, err
	}
	if cf.json {
		return exitOK, printJSON(stdout, o)
	}
	fmt.Fprintf(stdout, "removed %s override %s for %s (%s scope)\n", action, o.ID, o.Host, o.Scope)
	return exitOK, nil
}

// isOverrideID reports whether s is an override ID (a decimal number)
// rather than a host.
func isOverrideID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// activeOverrideID returns the ID of the one active override of action
// whose host is host (normalised as the gateway does). None, or more than
// one (an exact and a domain entry for the same name), is an error that
// lists them, so the person picks by ID.
func activeOverrideID(ctx context.Context, cf *clientFlags, action, host string) (string, error) {
	n, kind, err := registry.Normalize(host)
	if err != nil || kind != registry.HostName {
		return "", fmt.Errorf("%q is neither an override ID nor a host name (see icpgate %s ls)", host, action)
	}
	c, err := newAdminClient(cf)
	if err != nil {
		return "", err
	}
	var p struct {
		Overrides []admin.OverrideJSON `json:"overrides"`
	}
	query := url.Values{"action": {action}, "active": {"true"}, "q": {n}, "limit": {"1000"}}
	if _, err := c.getJSON(ctx, "/v1/overrides", query, &p); err != nil {
		return "", err
	}
	var match []admin.OverrideJSON
	for _, o := range p.Overrides {
		if o.Host == n {
			match = append(match, o)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("no active %s override for %s (icpgate %s ls --all lists expired ones too)", action, n, action)
	case 1:
		return match[0].ID, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d active %s overrides for %s; remove one by ID:\n", len(match), action, n)
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tHOST\tSCOPE\tEXPIRES\tTICKET\tBY\tREASON")
	for _, o := range match {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Host, o.Scope, fmtTime(o.Expires), cell(o.Ticket), cell(o.CreatedBy), cell(o.Reason))
	}
	tw.Flush()
	return "", errors.New(strings.TrimRight(b.String(), "\n"))
}

func overrideExtend(ctx context.Context, action string, args []string, stdout, stderr io.Writer) (int, error) {
	fs := withUsage(flag.NewFlagSet(action+" extend", flag.ContinueOnError), stderr, action+" extend ID --ttl D | --expires T [-config FILE] [--admin URL] [--json]")
	cf := addClientFlags(fs)
	var body struct {
		TTL     string `json:"ttl,omitempty"`
		Expires string `json:"expires,omitempty"`
	}
	fs.StringVar(&body.TTL, "ttl", "", "new lifetime from now, e.g. 720h or 30d")
	fs.StringVar(&body.Expires, "expires", "", "new expiry as an RFC 3339 time, instead of --ttl")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return exitError, err
	}
	if len(pos) != 1 {
		return exitError, usageError(fs, stderr, "want exactly one override ID (see icpgate "+action+" ls)")
	}
	if (body.TTL == "") == (body.Expires == "") {
		return exitError, usageError(fs, stderr, "give --ttl or --expires")
	}
	o, err := changeOverride(ctx, cf, action, pos[0], http.MethodPatch, body)
	if err != nil {
		return exitError, err
	}
	if cf.json {
		return exitOK, printJSON(stdout, o)
	}
	fmt.Fprintf(stdout, "%s override %s for %s now expires %s\n", action, o.ID, o.Host, fmtTime(o.Expires))
	return exitOK, nil
}

// cmdExplain asks the gateway why each host passes or is blocked: like
// check, but the running gateway's answer, overrides included. Exit 0 when
// all pass, 1 when any is blocked, 2 on error.
func cmdExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return adminCmd("explain", stderr, func() (int, error) {
		fs := withUsage(flag.NewFlagSet("explain", flag.ContinueOnError), stderr,
			"explain [-config FILE] [--admin URL] [--json] HOST... | --filing-number N | --subject S | --request-id ID [--host H]")
		cf := addClientFlags(fs)
		number := fs.String("filing-number", "", "list the registry's websites with this filing number (备案号): 京ICP备10206937号 for every site, -1 for one")
		subject := fs.String("subject", "", "list the registry's websites whose subject (主体, the owner) contains this text")
		requestID := fs.String("request-id", "", "read the request ID a visitor brings from a block page: when, which node, which reason, which host")
		idHost := fs.String("host", "", "with --request-id: the address the visitor says they opened, to verify")
		hosts, err := parseFlags(fs, args)
		if err != nil {
			return exitError, err
		}
		if *requestID != "" {
			if len(hosts) != 0 || *number != "" || *subject != "" {
				return exitError, usageError(fs, stderr, "give --request-id alone (with --host), not with HOST arguments or --filing-number/--subject")
			}
			return explainRequestID(ctx, cf, *requestID, *idHost, stdout)
		}
		if *idHost != "" {
			return exitError, usageError(fs, stderr, "--host goes with --request-id; to explain a host, give it as an argument")
		}
		if *number != "" || *subject != "" {
			if len(hosts) != 0 {
				return exitError, usageError(fs, stderr, "give HOST arguments or --filing-number/--subject, not both")
			}
			return searchRecords(ctx, cf, *number, *subject, stdout, stderr)
		}
		if len(hosts) == 0 {
			return exitError, usageError(fs, stderr, "")
		}
		c, err := newAdminClient(cf)
		if err != nil {
			return exitError, err
		}
		code := exitOK
		for i, h := range hosts {
			var e admin.Explanation
			r, err := c.getJSON(ctx, "/v1/explain", url.Values{"host": {h}}, &e)
			if err != nil {
				return exitError, err
			}
			if e.Verdict != "pass" {
				code = exitBlocked
			}
			if cf.json {
				// The gateway's object as it sent it, one per line.
				var v any
				if err := json.Unmarshal(r.body, &v); err != nil {
					return exitError, err
				}
				if err := printJSONLine(stdout, v); err != nil {
					return exitError, err
				}
				continue
			}
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			for _, line := range e.Trace {
				// The trace quotes an override's ticket and the
				// registry's text as stored.
				fmt.Fprintln(stdout, escapeText(line, 0))
			}
			if e.Verdict != "pass" {
				if _, hint, ok := proxy.ReasonAdvice(e.Reason); ok {
					fmt.Fprintf(stdout, "what to do: %s\n", hint)
				}
			}
		}
		return code, nil
	})
}

// explainRequestID prints what a block page's request ID says
// (GET /v1/requests/{id}), verifying host when given: exit 0 when
// answered, 2 on error (a malformed ID among them).
func explainRequestID(ctx context.Context, cf *clientFlags, id, host string, stdout io.Writer) (int, error) {
	c, err := newAdminClient(cf)
	if err != nil {
		return exitError, err
	}
	var query url.Values
	if host != "" {
		query = url.Values{"host": {host}}
	}
	var a admin.RequestAnswer
	r, err := c.getJSON(ctx, "/v1/requests/"+url.PathEscape(strings.TrimSpace(id)), query, &a)
	if err != nil {
		return exitError, err
	}
	if cf.json {
		_, err := stdout.Write(r.body)
		return exitOK, err
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "request ID\t%s\n", escapeText(a.ID, 0))
	if a.Legacy {
		fmt.Fprintf(tw, "format\t16-hex, issued before block IDs described themselves (or for a request that passed): no details\n")
	}
	if a.Time != nil {
		fmt.Fprintf(tw, "time\t%s\n", a.Time.In(zoneOrDefault()).Format("2006-01-02 15:04:05 -07:00"))
	}
	if n := a.Node; n != nil {
		if n.ThisNode {
			fmt.Fprintf(tw, "node\t%s (this gateway)\n", escapeText(n.Name, 0))
		} else {
			fmt.Fprintf(tw, "node\ttag %s, not this node\n", n.Tag)
		}
	}
	if rs := a.Reason; rs != nil {
		if rs.Code == "" {
			fmt.Fprintf(tw, "reason\ttag %d, unknown to this version\n", rs.Tag)
		} else {
			fmt.Fprintf(tw, "reason\t%s\n", strings.TrimSuffix(rs.Code+": "+rs.Meaning, ": "))
		}
	}
	if h := a.Host; h != nil {
		switch h.Status {
		case admin.HostVerified:
			fmt.Fprintf(tw, "host\t%s (verified)\n", h.Host)
		case admin.HostSameDomain:
			fmt.Fprintf(tw, "host\ta name under %s, not %s\n", h.Domain, escapeText(h.Given, 0))
		case admin.HostMismatch:
			fmt.Fprintf(tw, "host\tnot %s\n", escapeText(h.Given, 0))
		case admin.HostCandidates:
			fmt.Fprintf(tw, "host\t%d candidate(s) from the unfiled report, below\n", len(h.Candidates))
		default:
			fmt.Fprintf(tw, "host\tunknown: ask the visitor which address they opened, then add --host\n")
		}
	}
	if err := tw.Flush(); err != nil {
		return exitError, err
	}
	if a.Host != nil && len(a.Host.Candidates) > 0 {
		fmt.Fprintln(stdout)
		tw = tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tHOST\tREASON\tFIRST SEEN\tLAST SEEN\tHITS")
		for _, c := range a.Host.Candidates {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", c.Domain, cell(c.Host), c.Reason, fmtTime(&c.FirstSeen), fmtTime(&c.LastSeen), c.Hits)
		}
		if err := tw.Flush(); err != nil {
			return exitError, err
		}
	}
	switch {
	case a.Legacy:
		fmt.Fprintln(stdout, "what to do: ask the visitor which address they opened and when, and explain that address")
	case a.Host != nil && a.Host.Status != admin.HostVerified:
		fmt.Fprintln(stdout, "what to do: ask the visitor which address they opened, and add --host ADDRESS to verify it")
	}
	return exitOK, nil
}

// zoneOrDefault is displayZone, or the default when no config set it.
func zoneOrDefault() *time.Location {
	if loc := displayZone.Load(); loc != nil {
		return loc
	}
	return defaultDisplayZone
}

// searchRecords prints the registry's records with a filing number or
// subject (GET /v1/records), each with the gateway's verdict: exit 0 when
// some match, 1 when none does, 2 on error.
func searchRecords(ctx context.Context, cf *clientFlags, number, subject string, stdout, stderr io.Writer) (int, error) {
	c, err := newAdminClient(cf)
	if err != nil {
		return exitError, err
	}
	query := url.Values{}
	if number != "" {
		query.Set("filing_number", number)
	}
	if subject != "" {
		query.Set("subject", subject)
	}
	var a admin.SearchAnswer
	r, err := c.getJSON(ctx, "/v1/records", query, &a)
	if err != nil {
		return exitError, err
	}
	code := exitOK
	if len(a.Records) == 0 {
		code = exitBlocked
	}
	if a.Incomplete {
		fmt.Fprintf(stderr, "icpgate explain: the search ran out of time after %d records; the list may be incomplete\n", a.Scanned)
	}
	if cf.json {
		_, err := stdout.Write(r.body)
		return code, err
	}
	what := "filing number " + a.FilingNumber
	if number == "" {
		what = fmt.Sprintf("subject containing %q", subject)
	}
	if len(a.Records) == 0 {
		fmt.Fprintf(stdout, "no records with %s\n", what)
		return code, nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tFILING NUMBER\tSTATE\tVERDICT\tREASON\tSUBJECT")
	for _, rec := range a.Records {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", rec.Domain, cell(rec.FilingNumber), rec.State, rec.Verdict, rec.Reason, cell(rec.Subject))
	}
	if err := tw.Flush(); err != nil {
		return exitError, err
	}
	if a.More {
		fmt.Fprintf(stdout, "(the first %d records with %s; narrow the search for the rest)\n", len(a.Records), what)
	}
	return code, nil
}

// cmdAudit lists the audit log: "audit ls".
func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "ls" && args[0] != "list") {
		fmt.Fprintln(stderr, "Usage: icpgate audit ls [--who W] [--action A] [--target T] [--since T] [--until T] [--limit N] [flags]")
		return exitError
	}
	args = args[1:]
	return adminCmd("audit ls", stderr, func() (int, error) {
		fs := withUsage(flag.NewFlagSet("audit ls", flag.ContinueOnError), stderr, "audit ls [--who W] [--action A] [--target T] [--since T] [--until T] [--limit N] [-config FILE] [--admin URL] [--json]")
		cf := addClientFlags(fs)
		who := fs.String("who", "", "only entries by this person (token name)")
		action := fs.String("action", "", "only this action, e.g. override.create, override.delete, login")
		target := fs.String("target", "", "only this target (override ID or host)")
		since := fs.String("since", "", "only entries from this time on: RFC 3339, or a duration ago such as 24h or 7d")
		until := fs.String("until", "", "only entries before this time (RFC 3339 or a duration ago)")
		limit := fs.Int("limit", 50, "at most this many entries, newest first")
		pos, err := parseFlags(fs, args)
		if err != nil {
			return exitError, err
		}
		if len(pos) != 0 {
			return exitError, fmt.Errorf("unexpected argument %q", pos[0])
		}
		if *limit < 1 {
			return exitError, fmt.Errorf("--limit: must be at least 1, got %d", *limit)
		}
		query := url.Values{}
		for k, v := range map[string]string{"who": *who, "action": *action, "target": *target} {
			if v != "" {
				query.Set(k, v)
			}
		}
		for _, t := range []struct{ name, v string }{{"since", *since}, {"until", *until}} {
			if t.v == "" {
				continue
			}
			at, err := parseWhen(t.v, time.Now())
			if err != nil {
				return exitError, fmt.Errorf("--%s: %w", t.name, err)
			}
			query.Set(t.name, at.UTC().Format(time.RFC3339Nano))
		}
		c, err := newAdminClient(cf)
		if err != nil {
			return exitError, err
		}
		var entries []admin.AuditEntry
		for len(entries) < *limit {
			query.Set("limit", strconv.Itoa(min(*limit-len(entries), 1000)))
			var p struct {
				Entries []admin.AuditEntry `json:"entries"`
				Next    string             `json:"next"`
			}
			if _, err := c.getJSON(ctx, "/v1/audit", query, &p); err != nil {
				return exitError, err
			}
			entries = append(entries, p.Entries...)
			if p.Next == "" || len(p.Entries) == 0 {
				break
			}
			query.Set("before", p.Next)
		}
		if len(entries) > *limit {
			entries = entries[:*limit]
		}
		if cf.json {
			if entries == nil {
				entries = []admin.AuditEntry{}
			}
			return exitOK, printJSON(stdout, entries)
		}
		if len(entries) == 0 {
			fmt.Fprintln(stdout, "no audit entries")
			return exitOK, nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tAT\tWHO\tROLE\tFROM\tACTION\tTARGET\tTICKET\tREASON\tOUTCOME\tDETAIL")
		for _, e := range entries {
			ticket, reason := auditTicketReason(e)
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, fmtTime(&e.At), cell(e.Who), cell(e.Role),
				cell(e.Remote), e.Action, cell(auditTarget(e)), cell(ticket), cell(reason), e.Outcome, cell(e.Detail))
		}
		return exitOK, tw.Flush()
	})
}

// auditTarget names what an entry acted on: the target and, when it is an
// override ID, its host.
func auditTarget(e admin.AuditEntry) string {
	if e.Normalized != "" && e.Normalized != e.Target {
		if e.Target == "" {
			return e.Normalized
		}
		return e.Target + " " + e.Normalized
	}
	return e.Target
}

// auditTicketReason returns the ticket and reason an entry is about, as
// the console shows them: what the request sent, else the override after
// the change, else before it (a removal).
func auditTicketReason(e admin.AuditEntry) (ticket, reason string) {
	type tr struct {
		Ticket string `json:"ticket"`
		Reason string `json:"reason"`
	}
	var in, before, after tr
	// A body that is not an object (a bulk's, a string kept for a bad
	// request) leaves the fields empty.
	json.Unmarshal(e.Input, &in)
	json.Unmarshal(e.Before, &before)
	json.Unmarshal(e.After, &after)
	return cmp.Or(in.Ticket, after.Ticket, before.Ticket), cmp.Or(in.Reason, after.Reason, before.Reason)
}

// parseWhen parses an RFC 3339 time, or a duration before now ("24h",
// "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := parseDays(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time (2026-11-27T08:00:00+08:00) or a duration ago (24h, 7d), got %q", s)
	}
	return now.Add(-d), nil
}

// parseDays parses a Go duration or a whole number of days ("7d").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 100000 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// cmdReport prints reports: "report unfiled".
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "unfiled" {
		fmt.Fprintln(stderr, "Usage: icpgate report unfiled [--n N] [--reason R] [--csv [--bom]] [-o FILE] [flags]")
		return exitError
	}
	args = args[1:]
	return adminCmd("report unfiled", stderr, func() (int, error) {
		fs := withUsage(flag.NewFlagSet("report unfiled", flag.ContinueOnError), stderr, "report unfiled [--n N] [--reason R] [--csv [--bom]] [-o FILE] [-config FILE] [--admin URL] [--json]")
		cf := addClientFlags(fs)
		n := fs.Int("n", 100, "the top N domains by hits (ignored with --csv, which writes every row)")
		reason := fs.String("reason", "", "only this block reason, e.g. unfiled (default: every reason)")
		asCSV := fs.Bool("csv", false, "write CSV (domain,reason,hits,hits_error,first_seen,last_seen,destinations)")
		bom := fs.Bool("bom", false, "with --csv: start with a UTF-8 byte order mark, so that Excel on Chinese Windows reads the file as UTF-8")
		out := fs.String("o", "", "write to this file instead of stdout")
		pos, err := parseFlags(fs, args)
		if err != nil {
			return exitError, err
		}
		if len(pos) != 0 {
			return exitError, fmt.Errorf("unexpected argument %q", pos[0])
		}
		if *n < 1 {
			return exitError, fmt.Errorf("--n: must be at least 1, got %d", *n)
		}
		if *asCSV && cf.json {
			return exitError, errors.New("--csv and --json: pick one")
		}
		if *bom && !*asCSV {
			return exitError, errors.New("--bom: only with --csv")
		}
		c, err := newAdminClient(cf)
		if err != nil {
			return exitError, err
		}
		query := url.Values{"n": {strconv.Itoa(*n)}}
		if *reason != "" {
			query.Set("reason", *reason)
		}
		var data []byte
		if *asCSV {
			query.Set("format", "csv")
			r, err := c.do(ctx, http.MethodGet, "/v1/report/unfiled", query, nil, "")
			if err != nil {
				return exitError, err
			}
			data = r.body
			if *bom {
				// Added here rather than asked of the gateway, which an
				// older one would refuse.
				data = append([]byte(utf8BOM), data...)
			}
		} else {
			var p struct {
				Rows []admin.ReportRow `json:"rows"`
			}
			if _, err := c.getJSON(ctx, "/v1/report/unfiled", query, &p); err != nil {
				return exitError, err
			}
			var b strings.Builder
			if cf.json {
				if p.Rows == nil {
					p.Rows = []admin.ReportRow{}
				}
				if err := printJSON(&b, p.Rows); err != nil {
					return exitError, err
				}
			} else {
				writeReportTable(&b, p.Rows)
			}
			data = []byte(b.String())
		}
		if *out == "" {
			_, err := stdout.Write(data)
			return exitOK, err
		}
		if err := writeFileAtomic(*out, data); err != nil {
			return exitError, fmt.Errorf("-o: %w", err)
		}
		return exitOK, nil
	})
}

// utf8BOM is the UTF-8 byte order mark: Excel on Chinese Windows reads a
// CSV file without it as GBK.
const utf8BOM = "\ufeff"

// writeReportTable writes report rows as a table.
func writeReportTable(w io.Writer, rows []admin.ReportRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no blocked domains seen")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tREASON\tHITS\tFIRST SEEN\tLAST SEEN\tDESTINATIONS")
	for _, r := range rows {
		hits := strconv.FormatUint(r.Hits, 10)
		if r.HitsError > 0 {
			hits += fmt.Sprintf(" (±%d)", r.HitsError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Domain, r.Reason, hits, fmtTime(&r.FirstSeen), fmtTime(&r.LastSeen),
			cell(strings.Join(r.Destinations, " ")))
	}
	tw.Flush()
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory, so a reader never sees half a report.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// fmtTime shows a time in the local zone to the minute; nil or zero is
// "never".
func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return t.In(zoneOrDefault()).Format("2006-01-02 15:04 -07:00")
}

// displayZone is the zone the admin commands print times in: the config's
// policy.time_zone (set when the command reads a config), else the
// default, Asia/Shanghai. Not the machine's zone: staff on servers set to
// UTC and staff on laptops must read the same clock, and the offset says
// which one it is.
// It is atomic because tests run commands side by side.
var displayZone atomic.Pointer[time.Location]

var defaultDisplayZone = mustZone("Asia/Shanghai")

// mustZone loads an IANA zone that the embedded tzdata always has.
func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// cell makes a value fit one table cell: characters that could break the
// table, reorder what is shown around them or drive the terminal become
// visible escapes (see escapeText), long text is cut, and empty is "-".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return escapeText(s, 60)
}

// escapeText returns s with what admin.DisplayUnsafe refuses (controls,
// bidi and other format characters, line separators) written as \u202e
// or \U000e0041, and bytes that are not UTF-8 as \xff. The API refuses
// these in what people type, but text stored before it did, or written to
// the database directly, must still print as what it is: an RLO would
// make a reason read backwards, a U+2028 start a line that looks like
// another row. When most > 0 the result is cut to most characters, the
// last one "…", never inside an escape.
func escapeText(s string, most int) string {
	var pieces []string
	width := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var p string
		switch {
		case r == utf8.RuneError && size == 1:
			p = fmt.Sprintf(`\x%02x`, s[i])
		case admin.DisplayUnsafe(r) && r <= 0xffff:
			p = fmt.Sprintf(`\u%04x`, r)
		case admin.DisplayUnsafe(r):
			p = fmt.Sprintf(`\U%08x`, r)
		default:
			p = s[i : i+size]
		}
		pieces = append(pieces, p)
		width += utf8.RuneCountInString(p)
		i += size
	}
	if most <= 0 || width <= most {
		return strings.Join(pieces, "")
	}
	var b strings.Builder
	width = 0
	for _, p := range pieces {
		w := utf8.RuneCountInString(p)
		if width+w > most-1 {
			break
		}
		b.WriteString(p)
		width += w
	}
	b.WriteString("…")
	return b.String()
}
