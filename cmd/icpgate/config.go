package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/icpgate/icpgate/configs"
	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// ErrConfig marks a configuration that cannot be used: unreadable, not YAML,
// an unknown key or a value that fails validation.
var ErrConfig = errors.New("invalid config")

// Config is the gateway's YAML configuration (see configs/icpgate.yaml, which
// lists every key with its default). Zero values mean the default; all
// defaults are applied in one place, (*Config).setDefaults.
type Config struct {
	// Node names this gateway on block pages and in logs. Default: the
	// machine's hostname ("icpgate" if it has none).
	Node string `yaml:"node"`
	// Registry configures the filing registry.
	Registry RegistryConfig `yaml:"registry"`
	// Listeners are the data-plane listeners. At least one is required.
	Listeners []ListenerConfig `yaml:"listeners"`
	// Admin configures the control-plane listener.
	Admin AdminConfig `yaml:"admin"`
	// Report configures the unfiled-site report for the filing team.
	Report ReportConfig `yaml:"report"`
	// Policy is what the data plane does with nameless and blocked traffic.
	Policy PolicyConfig `yaml:"policy"`
	// Timeouts bound each phase of a connection.
	Timeouts TimeoutsConfig `yaml:"timeouts"`
	// Limits cap resources.
	Limits LimitsConfig `yaml:"limits"`
	// Log configures the process log on stderr.
	Log LogConfig `yaml:"log"`
	// Performance selects how the data plane serves connections
	// (docs/performance.md).
	Performance PerformanceConfig `yaml:"performance"`
	// Compliance configures the filed-site checks (compliance.go,
	// docs/compliance.md).
	Compliance ComplianceConfig `yaml:"compliance"`

	// path is the file the config was read from; "" for the embedded one.
	path string
}

// PerformanceConfig selects how the data plane serves connections
// (proxy.Performance).
type PerformanceConfig struct {
	// Engine is on or off: the passthrough engines serve tls listeners and
	// http listeners without PROXY headers (Linux 4.18 or later), or a
	// goroutine per connection serves every listener. Default "": on,
	// unless the environment variable ICPGATE_ENGINE is off.
	Engine string `yaml:"engine"`
	// GatherNaps is on or off: busy engines nap briefly before they wait,
	// so that events gather. Default off.
	GatherNaps string `yaml:"gather_naps"`
}

// validate checks the on/off values.
func (p *PerformanceConfig) validate() error {
	for _, f := range []struct{ key, v string }{{"engine", p.Engine}, {"gather_naps", p.GatherNaps}} {
		if f.v != "" && f.v != "on" && f.v != "off" {
			return fmt.Errorf("performance.%s: must be on or off, got %q", f.key, f.v)
		}
	}
	return nil
}

// RegistryConfig locates the filing registry.
type RegistryConfig struct {
	// File is the registry as JSON Lines or CSV, reloaded when it changes.
	// Relative paths resolve against the config file's directory. Required.
	// In the embedded config it names the embedded sample registry.
	File string `yaml:"file"`
	// Store is the bbolt file keeping the last good snapshot and sync
	// cursor of the PostgreSQL source, for a cold start with the database
	// down. Default "": no store. Relative paths resolve like File.
	Store string `yaml:"store"`
	// CacheSize is the number of per-host decisions cached. Default 100000.
	CacheSize int `yaml:"cache_size"`
	// Suffixes is an optional file with the MIIT list of fileable suffixes,
	// one per line. Default "": the built-in list.
	Suffixes string `yaml:"suffixes"`
	// MaxDeleteFraction refuses a reload that would remove more than this
	// fraction of the serving records (a truncated or half-copied file),
	// keeping the previous registry. Default 0.5; 1 accepts any reload.
	MaxDeleteFraction float64 `yaml:"max_delete_fraction"`
	// Postgres, when its dsn is set, makes the filing database the source
	// in place of File (see PostgresConfig in pgsource.go).
	Postgres PostgresConfig `yaml:"postgres"`
}

// ListenerConfig is one data-plane listener (edge-deployment keys:
// listeners.go, docs/transparent.md).
type ListenerConfig struct {
	// Name labels the listener in logs and metrics; unique. Required.
	Name string `yaml:"name"`
	// Protocol is "http", "tls", "quic" (UDP: the SNI of QUIC Initials;
	// it may share a tls listener's port number) or "auto" (sniffs TLS,
	// HTTP and other protocols on any port). Required.
	Protocol string `yaml:"protocol"`
	// Address is the host:port to listen on; port 0 picks a free port.
	// Required.
	Address string `yaml:"address"`
	// Upstream is the host:port passing traffic goes to, or "original":
	// each connection's original destination (transparent mode). Required.
	Upstream string `yaml:"upstream"`
	// ForwardedProto is the X-Forwarded-Proto an http (or auto) listener
	// sends upstream: "http" or "https". Default "http"; ignored for tls.
	ForwardedProto string `yaml:"forwarded_proto"`
	// Transparent is how upstream "original" learns the original
	// destination: "tproxy" (TPROXY rules, IP_TRANSPARENT listener) or
	// "redirect" (NAT REDIRECT rules, SO_ORIGINAL_DST). Required with
	// upstream "original". Default "".
	Transparent string `yaml:"transparent"`
	// SpoofSource dials the hosted server from the client's own address
	// (needs the policy routing of docs/transparent.md). Default false.
	SpoofSource bool `yaml:"spoof_source"`
	// AllowedDestinations are the CIDRs of the hosted networks a
	// transparent listener may pass to. Default []: any address but the
	// gateway's own.
	AllowedDestinations []string `yaml:"allowed_destinations"`
	// OtherProtocols is what an auto listener does with traffic that is
	// neither TLS nor HTTP (SSH, MySQL, ...): "pass" or "block". Default
	// "pass"; ignored by other protocols.
	OtherProtocols string `yaml:"other_protocols"`
	// SniffTimeout is how long an auto listener waits for the client's
	// first byte before taking it for a server-speaks-first protocol.
	// Default 300ms; ignored by other protocols.
	SniffTimeout time.Duration `yaml:"sniff_timeout"`
	// ProxyProtocol accepts and sends PROXY protocol headers.
	ProxyProtocol ProxyProtocolConfig `yaml:"proxy_protocol"`

	// Parsed by validateEdge.
	allowed, acceptFrom []netip.Prefix
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Address is the host:port of /metrics, /healthz, /readyz and the API.
	// Default "127.0.0.1:9090".
	Address string `yaml:"address"`
	// TLSNames, when set, serve the admin listener over HTTPS with
	// certificates for these names from the ACME CA of policy.tls_page
	// (see admintls.go). Default none: plain HTTP.
	TLSNames []string `yaml:"tls_names"`
	// Hosts are the DNS names the API and console accept in the Host
	// header besides localhost and TLSNames (a guard against DNS
	// rebinding); IP literals are always accepted. Default none.
	Hosts []string `yaml:"hosts"`
	// State is the bbolt file keeping overrides and the audit log in file
	// mode. Relative paths resolve against the config file's directory.
	// Default "": a file in a private temporary directory, removed at
	// exit (overrides are not persisted; serve warns). Not used with
	// registry.postgres.dsn: the filing database keeps them.
	State string `yaml:"state"`
	// TokensFile is the JSON Lines file of access tokens in file mode,
	// written by `icpgate token create`. Relative paths resolve like
	// State. Default "": no tokens, so no one can sign in (serve warns).
	// Not used with registry.postgres.dsn.
	TokensFile string `yaml:"tokens_file"`
	// DefaultAllowTTL is how long an allow without ttl or expires lasts.
	// Default 1080h (45 days).
	DefaultAllowTTL time.Duration `yaml:"default_allow_ttl"`
	// MaxAllowTTL caps an allow's expiry from now. Default 2160h (90 days).
	MaxAllowTTL time.Duration `yaml:"max_allow_ttl"`
	// MaxDenyTTL caps a deny's expiry from now. Default 8760h (365 days).
	MaxDenyTTL time.Duration `yaml:"max_deny_ttl"`
	// MutationsPerMinute caps override changes per token (burst 20).
	// Default 60.
	MutationsPerMinute int `yaml:"mutations_per_minute"`
	// FailedLoginsPerMinute caps failed authentications per client IP;
	// over it every attempt from that IP is refused until the bucket
	// refills. Default 10.
	FailedLoginsPerMinute int `yaml:"failed_logins_per_minute"`
}

// ReportConfig configures the unfiled-site report: the registrable
// domains the data plane blocked, with hits, first/last seen and
// destination addresses, kept in bounded memory (a heavy-hitter sketch).
type ReportConfig struct {
	// File persists the report (JSON, saved every 30 s when it changed and
	// at exit, loaded at start). Relative paths resolve against the config
	// file's directory. Default "": memory only, lost at restart.
	File string `yaml:"file"`
	// Capacity is the number of domains tracked; when full, a new domain
	// replaces the least-hit one and inherits its count as error.
	// Default 10000.
	Capacity int `yaml:"capacity"`
	// MaxDestinations is the number of distinct destination addresses
	// kept per domain. Default 8.
	MaxDestinations int `yaml:"max_destinations"`
}

// PolicyConfig is the data plane's policy.
type PolicyConfig struct {
	// IPAccess is "pass" or "block" for traffic without a name (no SNI, no
	// Host, an IP literal). Default "pass".
	IPAccess string `yaml:"ip_access"`
	// TLSWithoutSNI is "pass" or "block" for TLS and QUIC hellos that name
	// no server (no SNI, or an IP literal), on tls, quic and auto
	// listeners: such a client reaches whatever site the origin serves for
	// the Host inside TLS (docs/security.md). Default: the value of
	// ip_access (so "pass" unless ip_access is "block"): browsers send no
	// SNI only for IP addresses, and clients that reach servers by IP over
	// TLS (APIs, monitoring, devices) would break with "block".
	TLSWithoutSNI string `yaml:"tls_without_sni"`
	// TLSBlock is "alert", "reset" or "page". Default "alert".
	TLSBlock string `yaml:"tls_block"`
	// QUICBlock is "close" (a CONNECTION_CLOSE, so browsers fall back to
	// TCP at once) or "drop" (silence). Default "close".
	QUICBlock string `yaml:"quic_block"`
	// HTTPBlockStatus is the status of HTTP block responses, 400-599.
	// Default 403.
	HTTPBlockStatus int `yaml:"http_block_status"`
	// RedirectURL, when set, turns HTTP blocks into a 302 to this absolute
	// http(s) URL. Default "": serve the block page.
	RedirectURL string `yaml:"redirect_url"`
	// BlockPage is an html/template file replacing the built-in block page
	// (docs/block-page.md; `icpgate blockpage` prints the built-in one).
	// Relative paths resolve against the config file's directory. Default "".
	BlockPage string `yaml:"block_page"`
	// Provider names the provider and its support on block pages.
	// Default: nothing shown.
	Provider ProviderConfig `yaml:"provider"`
	// TimeZone is the IANA time zone block pages show times in, with the
	// offset. Default Asia/Shanghai.
	TimeZone string `yaml:"time_zone"`
	// ShowNode shows node on block pages and in their JSON body. Default
	// false: visitors see the request ID; the node stays in logs.
	ShowNode bool `yaml:"show_node"`
	// TLSPage configures tls_block: page, the HTTPS block page, and the
	// ACME CA admin.tls_names use (see tlspage.go).
	TLSPage TLSPageConfig `yaml:"tls_page"`
}

// ProviderConfig is the provider as block pages name it (proxy.Provider);
// every field is optional and an empty one is left off the page.
type ProviderConfig struct {
	// Name is the provider's name, e.g. "示例云 Example Cloud".
	Name string `yaml:"name"`
	// SupportContact is how to reach support, as text: phone, e-mail,
	// hours.
	SupportContact string `yaml:"support_contact"`
	// SupportURL is the support or ticket page, an absolute http(s) URL.
	SupportURL string `yaml:"support_url"`
	// FilingURL is the provider's ICP filing page or console, an absolute
	// http(s) URL.
	FilingURL string `yaml:"filing_url"`
}

// validatePage checks the block page's settings.
func (p *PolicyConfig) validatePage() error {
	if _, err := time.LoadLocation(p.TimeZone); err != nil {
		return fmt.Errorf("policy.time_zone: must be an IANA time zone name such as Asia/Shanghai, got %q", p.TimeZone)
	}
	for _, u := range []struct{ key, url string }{{"support_url", p.Provider.SupportURL}, {"filing_url", p.Provider.FilingURL}} {
		if u.url != "" && !isHTTPURL(u.url) {
			return fmt.Errorf("policy.provider.%s: must be an absolute http or https URL, got %q", u.key, u.url)
		}
	}
	return nil
}

// isHTTPURL reports whether s is an absolute http or https URL.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// TimeoutsConfig bounds each phase of a connection; Go duration strings.
type TimeoutsConfig struct {
	// Hello bounds reading a ClientHello or HTTP request head. Default 5s.
	Hello time.Duration `yaml:"hello"`
	// Dial bounds dialling an upstream. Default 3s.
	Dial time.Duration `yaml:"dial"`
	// Idle closes connections with no bytes either way. Default 0: the data
	// plane's own (5m for tls, 60s for HTTP keep-alive).
	Idle time.Duration `yaml:"idle"`
	// Drain is the graceful shutdown deadline. Default 30s.
	Drain time.Duration `yaml:"drain"`
	// QUICIdle ends a passing QUIC flow after no datagram either way.
	// Default 60s.
	QUICIdle time.Duration `yaml:"quic_idle"`
	// TunnelIdle closes an upgraded HTTP connection (a 101 tunnel such as
	// a WebSocket) after no bytes either way. Default 0: the HTTP idle
	// timeout (timeouts.idle, else 60s).
	TunnelIdle time.Duration `yaml:"tunnel_idle"`
	// BodyGrace is how long a request body may take before
	// limits.min_body_rate applies to it. Default 5s.
	BodyGrace time.Duration `yaml:"body_grace"`
}

// LimitsConfig caps resources.
type LimitsConfig struct {
	// MaxHeaderBytes caps an HTTP request head. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxHeaders caps the header fields of an HTTP request. Default 100.
	MaxHeaders int `yaml:"max_headers"`
	// MaxConns caps open client connections over all listeners.
	// Default 100000.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP caps open client connections per client IP.
	// Default 1000.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxQUICFlows caps the QUIC flows (pending, passing, recently
	// blocked) of each quic listener. Default 10000.
	MaxQUICFlows int `yaml:"max_quic_flows"`
	// MinBodyRate is the least average rate, in bytes per second, at
	// which a client must send a request body after timeouts.body_grace;
	// a slower one gets a 408. Default 240; -1 turns it off.
	MinBodyRate int `yaml:"min_body_rate"`
	// MaxQUICPendingBytes caps the bytes the undecided QUIC flows of
	// each quic listener hold together (datagrams and hello
	// reassembly); over it the oldest are ended first. Default 16 MiB.
	MaxQUICPendingBytes int `yaml:"max_quic_pending_bytes"`
}

// LogConfig configures the process log.
type LogConfig struct {
	// Level is "debug", "info", "warn" or "error". Default "info".
	Level string `yaml:"level"`
	// Format is "json" or "text". Default "": text when stderr is a
	// terminal, JSON otherwise.
	Format string `yaml:"format"`
}

// Default values, used only by setDefaults.
const (
	defaultCacheSize      = 100000
	defaultMaxDelete      = 0.5
	defaultAdminAddress   = "127.0.0.1:9090"
	defaultIPAccess       = "pass"
	defaultTLSBlock       = "alert"
	defaultQUICBlock      = "close"
	defaultQUICIdle       = 60 * time.Second
	defaultMaxQUICFlows   = 10000
	defaultBodyGrace      = 5 * time.Second
	defaultMinBodyRate    = 240
	defaultMaxQUICPending = 16 << 20 // thousands of real undecided flows (a few KiB for a round trip each); a flood costs no more
	defaultHTTPStatus     = 403
	defaultForwardedProto = "http"
	defaultHello          = 5 * time.Second
	defaultDial           = 3 * time.Second
	defaultDrain          = 30 * time.Second
	defaultMaxHeaderBytes = 64 << 10
	defaultMaxHeaders     = 100
	defaultMaxConns       = 100000
	defaultMaxConnsPerIP  = 1000
	defaultLogLevel       = "info"

	defaultAllowTTL         = 45 * 24 * time.Hour
	defaultMaxAllowTTL      = 90 * 24 * time.Hour
	defaultMaxDenyTTL       = 365 * 24 * time.Hour
	defaultMutationsPerMin  = 60
	defaultFailedLoginsPerM = 10
	defaultReportCapacity   = 10000
	defaultReportMaxDests   = 8
)

// setDefaults replaces zero values by the defaults. It is the only place
// defaults live.
func (c *Config) setDefaults() {
	if c.Node == "" {
		c.Node, _ = os.Hostname()
		if c.Node == "" {
			c.Node = "icpgate"
		}
	}
	orDefault(&c.Registry.CacheSize, defaultCacheSize)
	orDefault(&c.Registry.MaxDeleteFraction, defaultMaxDelete)
	c.Registry.Postgres.setDefaults()
	for i := range c.Listeners {
		c.Listeners[i].setListenerDefaults()
	}
	orDefault(&c.Admin.Address, defaultAdminAddress)
	orDefault(&c.Admin.DefaultAllowTTL, defaultAllowTTL)
	orDefault(&c.Admin.MaxAllowTTL, defaultMaxAllowTTL)
	orDefault(&c.Admin.MaxDenyTTL, defaultMaxDenyTTL)
	orDefault(&c.Admin.MutationsPerMinute, defaultMutationsPerMin)
	orDefault(&c.Admin.FailedLoginsPerMinute, defaultFailedLoginsPerM)
	orDefault(&c.Report.Capacity, defaultReportCapacity)
	orDefault(&c.Report.MaxDestinations, defaultReportMaxDests)
	orDefault(&c.Policy.IPAccess, defaultIPAccess)
	orDefault(&c.Policy.TLSWithoutSNI, c.Policy.IPAccess)
	orDefault(&c.Policy.TLSBlock, defaultTLSBlock)
	orDefault(&c.Policy.QUICBlock, defaultQUICBlock)
	orDefault(&c.Timeouts.QUICIdle, defaultQUICIdle)
	orDefault(&c.Limits.MaxQUICFlows, defaultMaxQUICFlows)
	orDefault(&c.Timeouts.BodyGrace, defaultBodyGrace)
	orDefault(&c.Limits.MinBodyRate, defaultMinBodyRate)
	orDefault(&c.Limits.MaxQUICPendingBytes, defaultMaxQUICPending)
	c.Policy.TLSPage.setDefaults()
	orDefault(&c.Policy.HTTPBlockStatus, defaultHTTPStatus)
	orDefault(&c.Policy.TimeZone, proxy.DefaultTimeZone)
	orDefault(&c.Timeouts.Hello, defaultHello)
	orDefault(&c.Timeouts.Dial, defaultDial)
	orDefault(&c.Timeouts.Drain, defaultDrain)
	orDefault(&c.Limits.MaxHeaderBytes, defaultMaxHeaderBytes)
	orDefault(&c.Limits.MaxHeaders, defaultMaxHeaders)
	orDefault(&c.Limits.MaxConns, defaultMaxConns)
	orDefault(&c.Limits.MaxConnsPerIP, defaultMaxConnsPerIP)
	orDefault(&c.Log.Level, defaultLogLevel)
}

// orDefault sets *p to def when *p is the zero value: a zero or absent
// config value means the default.
func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// LoadConfig reads, decodes, defaults and validates the config at path. An
// empty path means the embedded default config (configs/icpgate.yaml) with
// the embedded sample registry.
func LoadConfig(path string) (*Config, error) {
	if path == "" {
		return parseConfig(configs.Config, "", configs.ConfigName)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrConfig, path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return parseConfig(data, abs, path)
}

// parseConfig decodes data strictly (unknown keys fail with their line),
// applies defaults, resolves relative paths against path's directory and
// validates. name is used in error messages.
func parseConfig(data []byte, path, name string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		if p := configProblems(data, reflect.TypeFor[Config]()); len(p) > 0 {
			err = errConfigProblems(p)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: more than one YAML document", ErrConfig, name)
	}
	c.path = path
	c.setDefaults()
	if path != "" {
		dir := filepath.Dir(path)
		c.Registry.File = resolve(dir, c.Registry.File)
		c.Registry.Store = resolve(dir, c.Registry.Store)
		c.Registry.Suffixes = resolve(dir, c.Registry.Suffixes)
		c.Policy.BlockPage = resolve(dir, c.Policy.BlockPage)
		c.Policy.TLSPage.resolvePaths(dir)
		c.Admin.State = resolve(dir, c.Admin.State)
		c.Admin.TokensFile = resolve(dir, c.Admin.TokensFile)
		c.Report.File = resolve(dir, c.Report.File)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	return &c, nil
}

// registrySource is the one rule every command applies to a config's
// registry source (serve and check through validate, the database
// commands through resolveDSN): the registry comes from a file or from the
// filing database, never both, since a gateway that merged them could not
// say which one a decision came from.
func registrySource(file, dsn string) error {
	if file != "" && dsn != "" {
		return errors.New("registry: both registry.file and registry.postgres.dsn are set, and the registry has one source: " +
			"to use the filing database, delete the registry.file line (import the file into the database with `icpgate import`); " +
			"to keep the file, delete registry.postgres.dsn")
	}
	return nil
}

// resolve makes a relative, non-empty p relative to dir.
func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Embedded reports whether c is the embedded default config, whose
// registry file is read from memory.
func (c *Config) Embedded() bool { return c.path == "" }

// validate checks every field and names the first bad one.
func (c *Config) validate() error {
	if err := c.Registry.Postgres.validate(); err != nil {
		return err
	}
	if err := c.Performance.validate(); err != nil {
		return err
	}
	if err := c.Compliance.validate(); err != nil {
		return err
	}
	switch {
	case !c.Embedded():
		if err := registrySource(c.Registry.File, c.Registry.Postgres.DSN); err != nil {
			return err
		}
	}
	switch {
	case c.Registry.File == "" && c.Registry.Postgres.DSN == "":
		return errors.New("registry.file: required (or registry.postgres.dsn)")
	}
	if c.Embedded() && c.Registry.File != configs.RegistrySampleName {
		return fmt.Errorf("registry.file: the embedded config only has %s", configs.RegistrySampleName)
	}
	if c.Registry.CacheSize < 0 {
		return fmt.Errorf("registry.cache_size: must not be negative, got %d", c.Registry.CacheSize)
	}
	if f := c.Registry.MaxDeleteFraction; !(f > 0 && f <= 1) {
		return fmt.Errorf("registry.max_delete_fraction: must be above 0 and at most 1, got %v", f)
	}
	if len(c.Listeners) == 0 {
		return errors.New("listeners: at least one listener is required")
	}
	seen := make(map[string]int, len(c.Listeners))
	for i, l := range c.Listeners {
		field := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			return fmt.Errorf("%s.name: required", field)
		}
		if j, dup := seen[l.Name]; dup {
			return fmt.Errorf("%s.name: %q already used by listeners[%d]", field, l.Name, j)
		}
		seen[l.Name] = i
		switch l.Protocol {
		case "http", "tls", "quic", "auto":
		default:
			return fmt.Errorf("%s.protocol: must be http, tls, quic or auto, got %q", field, l.Protocol)
		}
		if err := checkHostPort(l.Address, true); err != nil {
			return fmt.Errorf("%s.address: %w", field, err)
		}
		if l.Upstream != proxy.UpstreamOriginal {
			if err := checkHostPort(l.Upstream, false); err != nil {
				return fmt.Errorf("%s.upstream: %w", field, err)
			}
		}
		if err := c.Listeners[i].validateEdge(field); err != nil {
			return err
		}
		switch l.ForwardedProto {
		case "", "http", "https":
		default:
			return fmt.Errorf("%s.forwarded_proto: must be http or https, got %q", field, l.ForwardedProto)
		}
	}
	if err := checkHostPort(c.Admin.Address, true); err != nil {
		return fmt.Errorf("admin.address: %w", err)
	}
	if err := c.Admin.validate(c.Registry.Postgres.DSN != ""); err != nil {
		return err
	}
	if err := c.Report.validate(); err != nil {
		return err
	}
	if err := c.checkDistinctFiles(); err != nil {
		return err
	}
	for i, l := range c.Listeners {
		if l.Address == c.Admin.Address && !strings.HasSuffix(l.Address, ":0") {
			return fmt.Errorf("listeners[%d].address: %s is also admin.address", i, l.Address)
		}
	}
	switch c.Policy.IPAccess {
	case "pass", "block":
	default:
		return fmt.Errorf("policy.ip_access: must be pass or block, got %q", c.Policy.IPAccess)
	}
	switch c.Policy.TLSWithoutSNI {
	case "pass", "block":
	default:
		return fmt.Errorf("policy.tls_without_sni: must be pass or block, got %q", c.Policy.TLSWithoutSNI)
	}
	switch c.Policy.TLSBlock {
	case "alert", "reset", "page":
	default:
		return fmt.Errorf("policy.tls_block: must be alert, reset or page, got %q", c.Policy.TLSBlock)
	}
	switch c.Policy.QUICBlock {
	case "close", "drop":
	default:
		return fmt.Errorf("policy.quic_block: must be close or drop, got %q", c.Policy.QUICBlock)
	}
	if s := c.Policy.HTTPBlockStatus; s < 400 || s > 599 {
		return fmt.Errorf("policy.http_block_status: must be 400-599, got %d", s)
	}
	if u := c.Policy.RedirectURL; u != "" && !isHTTPURL(u) {
		return fmt.Errorf("policy.redirect_url: must be an absolute http or https URL, got %q", u)
	}
	if err := c.Policy.validatePage(); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"hello", c.Timeouts.Hello}, {"dial", c.Timeouts.Dial}, {"idle", c.Timeouts.Idle}, {"drain", c.Timeouts.Drain}, {"quic_idle", c.Timeouts.QUICIdle},
		{"tunnel_idle", c.Timeouts.TunnelIdle}, {"body_grace", c.Timeouts.BodyGrace}} {
		if d.v < 0 {
			return fmt.Errorf("timeouts.%s: must not be negative, got %s", d.name, d.v)
		}
	}
	for _, l := range []struct {
		name string
		v    int
	}{
		{"max_header_bytes", c.Limits.MaxHeaderBytes}, {"max_headers", c.Limits.MaxHeaders},
		{"max_conns", c.Limits.MaxConns}, {"max_conns_per_ip", c.Limits.MaxConnsPerIP},
		{"max_quic_flows", c.Limits.MaxQUICFlows}, {"max_quic_pending_bytes", c.Limits.MaxQUICPendingBytes},
	} {
		if l.v < 0 {
			return fmt.Errorf("limits.%s: must not be negative, got %d", l.name, l.v)
		}
	}
	if c.Limits.MinBodyRate < -1 {
		return fmt.Errorf("limits.min_body_rate: must be a rate in bytes per second, or -1 to turn it off, got %d", c.Limits.MinBodyRate)
	}
	if c.Limits.MaxHeaderBytes < 1024 {
		return fmt.Errorf("limits.max_header_bytes: must be at least 1024, got %d", c.Limits.MaxHeaderBytes)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		return fmt.Errorf("log.format: must be json or text, got %q", c.Log.Format)
	}
	return nil
}

// checkHostPort accepts host:port with a numeric port; port 0 only when
// listen is set. Listen addresses take an IP literal, localhost or an
// empty host (all interfaces), as the data plane binds them.
func checkHostPort(s string, listen bool) error {
	if s == "" {
		return errors.New("required")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", s)
	}
	if host == "" && !listen {
		return fmt.Errorf("host missing in %q", s)
	}
	if listen && host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("listen host must be an IP address or localhost, got %q", s)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !listen) {
		return fmt.Errorf("bad port in %q", s)
	}
	return nil
}

// parseLevel maps a log.level value to a slog level.
func parseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
}

// ProxyConfig converts c into the data plane's config.
func (c *Config) ProxyConfig() proxy.Config {
	pc := proxy.Config{
		Node:     c.Node,
		Outcomes: decisionOutcomes(),
		Policy: proxy.Policy{
			TLSBlock:        c.Policy.TLSBlock,
			TLSWithoutSNI:   c.Policy.TLSWithoutSNI,
			QUICBlock:       c.Policy.QUICBlock,
			HTTPBlockStatus: c.Policy.HTTPBlockStatus,
			RedirectURL:     c.Policy.RedirectURL,
			BlockPage:       c.Policy.BlockPage,
			Provider:        proxy.Provider(c.Policy.Provider),
			TimeZone:        c.Policy.TimeZone,
			ShowNode:        c.Policy.ShowNode,
			TLSPage:         c.Policy.TLSPage.proxyConfig(),
		},
		Timeouts: proxy.Timeouts{
			Hello:    c.Timeouts.Hello,
			Dial:     c.Timeouts.Dial,
			Idle:     c.Timeouts.Idle,
			Drain:    c.Timeouts.Drain,
			QUICIdle: c.Timeouts.QUICIdle,

			TunnelIdle: c.Timeouts.TunnelIdle,
			BodyGrace:  c.Timeouts.BodyGrace,
		},
		Limits: proxy.Limits{
			MaxHeaderBytes: c.Limits.MaxHeaderBytes,
			MaxHeaders:     c.Limits.MaxHeaders,
			MaxConns:       c.Limits.MaxConns,
			MaxConnsPerIP:  c.Limits.MaxConnsPerIP,
			MaxQUICFlows:   c.Limits.MaxQUICFlows,
			MinBodyRate:    c.Limits.MinBodyRate,

			MaxQUICPendingBytes: c.Limits.MaxQUICPendingBytes,
		},
		Performance: proxy.Performance{
			Engine:     c.Performance.Engine,
			GatherNaps: c.Performance.GatherNaps == "on",
		},
	}
	for i := range c.Listeners {
		pc.Listeners = append(pc.Listeners, c.Listeners[i].proxyListener())
	}
	return pc
}

// decisionOutcomes lists every reason the registry decides with, and the
// verdicts each can carry, for the data plane's decision metrics.
func decisionOutcomes() []proxy.Outcome {
	var out []proxy.Outcome
	for _, r := range registry.Reasons() {
		pass, block := r.Verdicts()
		if pass {
			out = append(out, proxy.Outcome{Reason: string(r), Pass: true})
		}
		if block {
			out = append(out, proxy.Outcome{Reason: string(r), Pass: false})
		}
	}
	return out
}
