package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"github.com/caddyserver/certmagic"
	"golang.org/x/net/idna"

	"github.com/icpgate/icpgate/internal/acme"
)

// adminTLS serves the admin console over HTTPS with certificates certmagic
// obtains and renews over ACME for a fixed list of names (admin.tls_names),
// from the CA configured under policy.tls_page (directory, email, storage,
// roots), sharing its storage.
//
// The CA validates with TLS-ALPN-01 on port 443 of each name, and the
// admin listener answers it itself (its tls.Config is certmagic's, which
// serves the challenge certificate to an "acme-tls/1" hello). So the names
// must resolve to an address where port 443 reaches the admin listener (a
// dedicated address, or a forward to admin.address); on loopback only a
// private CA can validate. Start the listener before manage: certmagic's
// solver then finds the port taken and leaves the validation to it.
type adminTLS struct {
	names []string
	acme  *acme.Manager
	log   *slog.Logger
}

// errAdminTLS marks an unusable admin TLS configuration.
var errAdminTLS = errors.New("admin tls")

// newAdminTLS prepares certificate management for names, validated on the
// port of address (admin.address). It obtains nothing until manage.
func newAdminTLS(names []string, conf TLSPageConfig, address string, log *slog.Logger) (*adminTLS, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: admin.tls_names: empty", errAdminTLS)
	}
	clean := make([]string, 0, len(names))
	for _, n := range names {
		a, err := idna.Lookup.ToASCII(n)
		_, ipErr := netip.ParseAddr(a)
		if err != nil || a == "" || ipErr == nil || !certmagic.SubjectQualifiesForPublicCert(a) {
			return nil, fmt.Errorf("%w: admin.tls_names: %q is not a public DNS name", errAdminTLS, n)
		}
		clean = append(clean, a)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("%w: admin.address: %w", errAdminTLS, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("%w: admin.address: %q needs a fixed port for TLS-ALPN-01", errAdminTLS, address)
	}
	a := &adminTLS{names: clean, log: log.With("component", "admin_tls")}
	m, err := acme.New(acme.Config{
		Directory:     conf.ACMEDirectory,
		Email:         conf.Email,
		CARootsFile:   conf.CARootsFile,
		StorageDir:    cmp.Or(conf.StorageDir, defaultTLSPageStorage),
		ChallengeHost: host,
		ChallengePort: p,
		OnEvent:       a.event,
		Events:        []string{"cert_obtained", "cert_failed"},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: policy.tls_page.%w", errAdminTLS, err)
	}
	a.acme = m
	return a, nil
}

// event logs certmagic's issuance outcomes (once per order, not per
// handshake).
func (a *adminTLS) event(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		a.log.Info("admin certificate obtained", "identifier", fmt.Sprint(data["identifier"]), "renewal", data["renewal"] == true)
	case "cert_failed":
		a.log.Warn("admin certificate not obtained", "identifier", fmt.Sprint(data["identifier"]), "error", fmt.Sprint(data["error"]))
	}
	return nil
}

// tlsConfig is the admin listener's TLS config: certmagic's certificates
// and TLS-ALPN-01 answers, HTTP/1.1.
func (a *adminTLS) tlsConfig() *tls.Config {
	c := a.acme.Magic.TLSConfig()
	c.NextProtos = append([]string{"http/1.1"}, c.NextProtos...)
	c.MinVersion = tls.VersionTLS12
	return c
}

// manage loads the names' certificates from storage, or obtains them in
// the background, and keeps them renewed until stop. The admin listener
// must already be bound.
func (a *adminTLS) manage(ctx context.Context) error {
	if err := a.acme.Magic.ManageAsync(ctx, a.names); err != nil {
		return fmt.Errorf("managing admin certificates: %w", err)
	}
	return nil
}

// stop ends certmagic's renewal maintenance.
func (a *adminTLS) stop() { a.acme.Stop() }
