package main

import (
	"time"

	"github.com/icpgate/icpgate/proxy"
)

// defaultTLSPageStorage is policy.tls_page.storage_dir's default (the data
// plane's), relative to the config file's directory like registry.store.
const defaultTLSPageStorage = proxy.DefaultTLSPageStorageDir

// TLSPageConfig configures policy.tls_block: page, the HTTPS block page:
// blocked TLS connections are terminated with a certificate certmagic
// obtains over ACME on demand, only for names being blocked, and answered
// with the block page. Ignored with the other tls_block values.
type TLSPageConfig struct {
	// ACMEDirectory is the ACME directory URL (https). Default "": Let's
	// Encrypt's production directory. The CA validates with TLS-ALPN-01,
	// answered by the gateway's tls listeners: one must be reachable on
	// port 443.
	ACMEDirectory string `yaml:"acme_directory"`
	// Email is the ACME account's contact address. Default "": none.
	Email string `yaml:"email"`
	// StorageDir holds the ACME account, keys and certificates; a relative
	// path resolves against the config file's directory. Default
	// "data/certmagic".
	StorageDir string `yaml:"storage_dir"`
	// CARootsFile is a PEM file of roots trusted for the ACME server's own
	// HTTPS endpoint, for a private or test CA; a relative path resolves
	// against the config file's directory. Default "": the system roots.
	CARootsFile string `yaml:"ca_roots_file"`
	// IssuePerMinute caps certificate requests for new names (a token
	// bucket). Default 0: 10.
	IssuePerMinute int `yaml:"issue_per_minute"`
	// MaxNamesPerHour caps distinct new names per clock hour. Default 0:
	// 100.
	MaxNamesPerHour int `yaml:"max_names_per_hour"`
	// Timeout bounds how long a blocked handshake waits for a certificate
	// before the client gets the access_denied alert. Default 0s: 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// setDefaults applies the defaults cmd owns (the data plane applies the
// others).
func (t *TLSPageConfig) setDefaults() {
	orDefault(&t.StorageDir, defaultTLSPageStorage)
}

// resolvePaths makes relative paths relative to dir, the config file's
// directory.
func (t *TLSPageConfig) resolvePaths(dir string) {
	t.StorageDir = resolve(dir, t.StorageDir)
	t.CARootsFile = resolve(dir, t.CARootsFile)
}

// proxyConfig converts t into the data plane's TLSPage.
func (t TLSPageConfig) proxyConfig() proxy.TLSPage {
	return proxy.TLSPage{
		ACMEDirectory:   t.ACMEDirectory,
		Email:           t.Email,
		StorageDir:      t.StorageDir,
		CARootsFile:     t.CARootsFile,
		IssuePerMinute:  t.IssuePerMinute,
		MaxNamesPerHour: t.MaxNamesPerHour,
		Timeout:         t.Timeout,
	}
}
