package registry

import (
	"errors"
	"strings"
)

// ErrInvalidHost is returned (wrapped) for names that are not valid hostnames.
var ErrInvalidHost = errors.New("invalid host")

// ErrPublicSuffix is returned (wrapped) when a name is itself a public suffix
// and so has no registrable domain.
var ErrPublicSuffix = errors.New("name is a public suffix")

// HostKind classifies a normalised host.
type HostKind uint8

// Host kinds.
const (
	HostEmpty HostKind = iota // no name at all
	HostName                  // a DNS name (A-labels)
	HostIP                    // an IPv4 or IPv6 literal
)

// Normalize turns a requested host (SNI, Host header, authority) into a
// lower-case A-label name without trailing dot or port. TEMPORARY placeholder:
// being replaced by the full UTS-46 implementation.
func Normalize(host string) (string, HostKind, error) {
	if host == "" {
		return "", HostEmpty, nil
	}
	return strings.ToLower(host), HostName, nil
}

// RegistrableDomain returns the eTLD+1 of a normalised name using the ICANN
// section of the Public Suffix List only. TEMPORARY placeholder.
func RegistrableDomain(name string) (string, error) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", ErrPublicSuffix
	}
	j := strings.LastIndexByte(name[:i], '.')
	return name[j+1:], nil
}

// Fileable reports whether the public suffix of a registrable domain is on
// the MIIT list of suffixes that can be filed. TEMPORARY placeholder.
func Fileable(domain string) bool { return true }
