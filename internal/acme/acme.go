// Package acme builds the certmagic configuration through which icpgate
// obtains certificates: the HTTPS block page (on demand, for names being
// blocked) and the admin listener (a fixed list of names) both use it, so
// the CA, its roots, the storage and the challenge set-up are decided in
// one place.
//
// Validation is TLS-ALPN-01 only, answered by a listener of the caller's
// (certmagic's solver finds the challenge port taken and leaves the
// validation to it); HTTP-01 is off. OCSP stapling is off.
//
// Usage:
//
//	m, err := acme.New(acme.Config{
//		Directory:     dir,
//		StorageDir:    "data/certmagic",
//		ChallengePort: 443,
//		OnDemand:      allow, // or nil, then m.Magic.ManageAsync(ctx, names)
//	})
//	if err != nil { ... }
//	defer m.Stop()
//	ln := tls.NewListener(inner, m.Magic.TLSConfig())
package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Config says which CA certificates come from, where they are kept and
// who answers the CA's challenges.
type Config struct {
	// Directory is the ACME directory URL. Default "": Let's Encrypt's
	// production directory.
	Directory string
	// Email is the ACME account's contact address. Default "": none.
	Email string
	// CARootsFile is a PEM file of roots trusted for the ACME server's own
	// HTTPS endpoint, for a private or test CA. Default "": the system
	// roots.
	CARootsFile string
	// Storage keeps the ACME account, keys and certificates. Default nil:
	// a certmagic.FileStorage in StorageDir.
	Storage certmagic.Storage
	// StorageDir is the directory of the default Storage, created (0700)
	// when missing. Required when Storage is nil; ignored otherwise.
	StorageDir string
	// OnDemand, when set, is certmagic's on-demand decision: a handshake
	// for a name with no certificate obtains one when it returns nil.
	// Default nil: no on-demand issuance, only the names the caller
	// manages.
	OnDemand func(ctx context.Context, name string) error
	// ChallengeHost and ChallengePort are the address of the caller's
	// listener that answers TLS-ALPN-01. Default "" and 0: any address,
	// port 443.
	ChallengeHost string
	ChallengePort int
	// CacheCapacity bounds the certificates held in memory. Default 0: no
	// bound.
	CacheCapacity int
	// Logger receives certmagic's logs. Default nil: none.
	Logger *zap.Logger
	// OnEvent receives certmagic's events named in Events. Default nil:
	// none.
	OnEvent func(ctx context.Context, event string, data map[string]any) error
	Events  []string
}

// Manager is one certmagic cache, config and ACME issuer.
type Manager struct {
	Cache  *certmagic.Cache
	Magic  *certmagic.Config // its Storage is Config.Storage or the default
	Issuer *certmagic.ACMEIssuer
}

// New builds the Manager of c. Its errors start with the policy.tls_page
// key of the field at fault (ca_roots_file, storage_dir), the block both
// callers' settings come from.
func New(c Config) (*Manager, error) {
	var roots *x509.CertPool
	if c.CARootsFile != "" {
		var err error
		if roots, err = LoadRoots(c.CARootsFile); err != nil {
			return nil, fmt.Errorf("ca_roots_file: %w", err)
		}
	}
	storage := c.Storage
	if storage == nil {
		if c.StorageDir == "" {
			return nil, errors.New("storage_dir: empty, and no storage given")
		}
		if err := os.MkdirAll(c.StorageDir, 0o700); err != nil {
			return nil, fmt.Errorf("storage_dir: %w", err)
		}
		storage = &certmagic.FileStorage{Path: c.StorageDir}
	}
	log := c.Logger
	if log == nil {
		log = zap.NewNop()
	}
	directory := c.Directory
	if directory == "" {
		directory = certmagic.LetsEncryptProductionCA
	}

	m := &Manager{}
	m.Cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.Magic, nil },
		Capacity:         c.CacheCapacity,
		Logger:           log,
	})
	mc := certmagic.Config{
		Storage: storage,
		// Let's Encrypt no longer runs OCSP responders, and a test CA has
		// none: stapling would only add failing requests.
		OCSP:    certmagic.OCSPConfig{DisableStapling: true},
		Logger:  log,
		OnEvent: c.OnEvent,
	}
	if c.OnDemand != nil {
		mc.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: c.OnDemand}
	}
	if c.OnEvent != nil {
		events := slices.Clone(c.Events)
		mc.ShouldEmitFunc = func(e string) bool { return slices.Contains(events, e) }
	}
	m.Magic = certmagic.New(m.Cache, mc)
	m.Issuer = certmagic.NewACMEIssuer(m.Magic, certmagic.ACMEIssuer{
		CA:                   directory,
		Email:                c.Email,
		Agreed:               true, // configuring a CA accepts its terms
		TrustedRoots:         roots,
		DisableHTTPChallenge: true,
		ListenHost:           c.ChallengeHost,
		AltTLSALPNPort:       c.ChallengePort,
		Logger:               log,
	})
	m.Magic.Issuers = []certmagic.Issuer{m.Issuer}
	return m, nil
}

// Stop ends certmagic's background maintenance (renewals, cache upkeep).
func (m *Manager) Stop() { m.Cache.Stop() }

// LoadRoots reads a PEM file of CA certificates.
func LoadRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("reading CA roots: %s holds no PEM certificate", path)
	}
	return pool, nil
}
