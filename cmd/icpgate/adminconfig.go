package main

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/icpgate/icpgate/admin/unfiled"
	"github.com/icpgate/icpgate/registry"
)

// validate checks the control-plane keys of admin and names the bad one.
// postgres says whether registry.postgres.dsn is set (overrides, audit and
// tokens then live in the filing database). Hosts are normalised in place
// (lower case, A-labels), the form the API compares a Host header with.
func (a *AdminConfig) validate(postgres bool) error {
	for i, h := range a.Hosts {
		n, kind, err := registry.Normalize(h)
		if err != nil || kind != registry.HostName {
			return fmt.Errorf("admin.hosts[%d]: must be a DNS name (IP literals are always accepted), got %q", i, h)
		}
		a.Hosts[i] = n
	}
	if postgres {
		if a.State != "" {
			return errors.New("admin.state: not used with registry.postgres.dsn (overrides and the audit log live in the filing database); remove it")
		}
		if a.TokensFile != "" {
			return errors.New("admin.tokens_file: not used with registry.postgres.dsn (tokens live in the filing database); remove it")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"default_allow_ttl", a.DefaultAllowTTL}, {"max_allow_ttl", a.MaxAllowTTL}, {"max_deny_ttl", a.MaxDenyTTL}} {
		if d.v < 0 {
			return fmt.Errorf("admin.%s: must not be negative, got %s", d.name, d.v)
		}
		if d.v > 0 && d.v < time.Minute {
			return fmt.Errorf("admin.%s: must be at least 1m, got %s", d.name, d.v)
		}
	}
	if a.DefaultAllowTTL > a.MaxAllowTTL {
		return fmt.Errorf("admin.default_allow_ttl: %s is longer than admin.max_allow_ttl %s", a.DefaultAllowTTL, a.MaxAllowTTL)
	}
	if a.MutationsPerMinute < 0 {
		return fmt.Errorf("admin.mutations_per_minute: must not be negative, got %d", a.MutationsPerMinute)
	}
	if a.FailedLoginsPerMinute < 0 {
		return fmt.Errorf("admin.failed_logins_per_minute: must not be negative, got %d", a.FailedLoginsPerMinute)
	}
	return nil
}

// validate checks the report keys and names the bad one.
func (r *ReportConfig) validate() error {
	if r.Capacity < 0 || r.Capacity > unfiled.MaxCapacity {
		return fmt.Errorf("report.capacity: must be 1-%d, got %d", unfiled.MaxCapacity, r.Capacity)
	}
	if r.MaxDestinations < 0 || r.MaxDestinations > unfiled.MaxMaxDestinations {
		return fmt.Errorf("report.max_destinations: must be 1-%d, got %d", unfiled.MaxMaxDestinations, r.MaxDestinations)
	}
	return nil
}

// checkDistinctFiles refuses two keys naming the same file: bbolt files
// are locked by the process holding them, and the token file and report
// are replaced whole.
func (c *Config) checkDistinctFiles() error {
	files := []struct{ key, path string }{
		{"registry.store", c.Registry.Store},
		{"admin.state", c.Admin.State},
		{"admin.tokens_file", c.Admin.TokensFile},
		{"report.file", c.Report.File},
	}
	for i, a := range files {
		for _, b := range files[i+1:] {
			if a.path != "" && a.path == b.path {
				return fmt.Errorf("%s: %s is also %s", b.key, b.path, a.key)
			}
		}
	}
	return nil
}

// adminRestartOnly lists the control-plane keys of admin that differ
// between a and b. They all take effect only at start: the stores are
// opened once, and the admin server takes its hosts, TTL caps and rate
// limits when it is built.
func adminRestartOnly(a, b *AdminConfig) []string {
	var keys []string
	if !slices.Equal(a.Hosts, b.Hosts) {
		keys = append(keys, "admin.hosts")
	}
	for _, k := range []struct {
		name    string
		changed bool
	}{
		{"admin.state", a.State != b.State},
		{"admin.tokens_file", a.TokensFile != b.TokensFile},
		{"admin.default_allow_ttl", a.DefaultAllowTTL != b.DefaultAllowTTL},
		{"admin.max_allow_ttl", a.MaxAllowTTL != b.MaxAllowTTL},
		{"admin.max_deny_ttl", a.MaxDenyTTL != b.MaxDenyTTL},
		{"admin.mutations_per_minute", a.MutationsPerMinute != b.MutationsPerMinute},
		{"admin.failed_logins_per_minute", a.FailedLoginsPerMinute != b.FailedLoginsPerMinute},
	} {
		if k.changed {
			keys = append(keys, k.name)
		}
	}
	return keys
}
