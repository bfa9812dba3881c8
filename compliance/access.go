package compliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// AccessStatus is the outcome of an access check. The string forms are a
// fixed interface (CLI output, JSON).
type AccessStatus string

// Access check outcomes.
const (
	AccessOK         AccessStatus = "ok"         // every address inside the provider's networks
	AccessOutside    AccessStatus = "outside"    // some address outside them
	AccessUnresolved AccessStatus = "unresolved" // neither the domain nor www. of it has an address
	AccessSkipped    AccessStatus = "skipped"    // no resolver configured
)

// DefaultAccessTimeout is AccessOptions.Timeout's default.
const DefaultAccessTimeout = 5 * time.Second

// AccessOptions are the resolver and networks of CheckAccess.
type AccessOptions struct {
	// Resolver is the host:port of the DNS server asked. Empty: the check
	// is skipped.
	Resolver string
	// ProviderNetworks are the provider's address blocks. None: every
	// address is outside.
	ProviderNetworks []netip.Prefix
	// Timeout caps the check (both names). Default DefaultAccessTimeout.
	Timeout time.Duration
	// Now returns the check time. Default time.Now.
	Now func() time.Time
}

// AccessResult is what CheckAccess found for one domain.
type AccessResult struct {
	Domain string       `json:"domain"`
	Status AccessStatus `json:"access"`
	// Addresses are the A and AAAA addresses of the domain and www. of
	// it, sorted, without repeats.
	Addresses []netip.Addr `json:"addresses"`
	// Outside are the Addresses outside the provider's networks.
	Outside []netip.Addr `json:"outside,omitempty"`
	// Note says why a name did not resolve.
	Note      string    `json:"note,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// CheckAccess resolves the A and AAAA records of domain and www.domain
// through opts.Resolver (never the system's name servers; Go's resolver
// still reads /etc/hosts first, which names only local hosts) and reports whether every address is inside
// opts.ProviderNetworks (接入核查: the addresses a filed domain resolves to
// must belong to the access provider).
func CheckAccess(ctx context.Context, domain string, opts AccessOptions) AccessResult {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultAccessTimeout
	}
	res := AccessResult{Domain: domain, CheckedAt: opts.Now().UTC(), Addresses: []netip.Addr{}}
	if opts.Resolver == "" {
		res.Status, res.Note = AccessSkipped, "no compliance.resolver configured"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var notes []string
	for _, name := range []string{domain, "www." + domain} {
		addrs, err := lookup(ctx, opts.Resolver, name)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		res.Addresses = append(res.Addresses, addrs...)
	}
	slices.SortFunc(res.Addresses, netip.Addr.Compare)
	res.Addresses = slices.Compact(res.Addresses)
	res.Note = strings.Join(notes, "; ")
	if len(res.Addresses) == 0 {
		res.Status = AccessUnresolved
		return res
	}
	for _, a := range res.Addresses {
		if !slices.ContainsFunc(opts.ProviderNetworks, func(p netip.Prefix) bool { return p.Contains(a) }) {
			res.Outside = append(res.Outside, a)
		}
	}
	res.Status = AccessOK
	if len(res.Outside) > 0 {
		res.Status = AccessOutside
	}
	return res
}

// errNoAddress is a name that exists without A or AAAA records, or does
// not exist.
var errNoAddress = errors.New("no A or AAAA record")

// lookup asks the DNS server at server for name's A and AAAA records.
func lookup(ctx context.Context, server, name string) ([]netip.Addr, error) {
	r := &net.Resolver{
		PreferGo: true,
		// Every query goes to server, whatever /etc/resolv.conf says.
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
	var out []netip.Addr
	var firstErr error
	for _, network := range []string{"ip4", "ip6"} {
		// The trailing dot: no search domains from /etc/resolv.conf.
		addrs, err := r.LookupNetIP(ctx, network, name+".")
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
		case err != nil:
			if firstErr == nil {
				firstErr = err
			}
		}
		for _, a := range addrs {
			out = append(out, a.Unmap())
		}
	}
	if len(out) == 0 {
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, errNoAddress
	}
	return out, nil
}
