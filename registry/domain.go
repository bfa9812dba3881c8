package registry

import (
	"errors"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// ErrPublicSuffix is returned (wrapped) when a name is itself a public suffix
// and so has no registrable domain.
var ErrPublicSuffix = errors.New("name is a public suffix")

// errNotNormal is returned by RegistrableDomain for input Normalize would
// not have produced; it wraps ErrInvalidHost.
var errNotNormal error = hostError("not a normalised host name")

// RegistrableDomain returns the registrable domain (eTLD+1) of a name
// returned by Normalize, using the ICANN section of the Public Suffix List
// only (decision step 3, registry/doc.go): filing is done by whoever registered
// the domain at a registry, so suffixes that companies publish in the
// private section do not count.
//
//	x.github.io          -> github.io       (github.io is private; io is ICANN)
//	a.b.example.com.cn   -> example.com.cn
//	foo.amazonaws.com.cn -> amazonaws.com.cn
//	a.cn.com             -> cn.com
//	www.xn--fsqu00a.xn--fiqs8s -> xn--fsqu00a.xn--fiqs8s (例子.中国)
//
// A name that is itself a public suffix ("com.cn", "cn", "xn--fiqs8s")
// fails with ErrPublicSuffix. A name under a top-level domain missing from
// the list ("example.internal") gets the list's default rule "*": its last
// label is the public suffix, so the registrable domain is the last two
// labels. That keeps such names in the registry's terms (one record per
// registered domain), and since an unlisted suffix cannot be on the MIIT
// list either, Fileable reports false for it and an unfiled name is
// blocked as suffix_not_fileable.
//
// The result is a substring of name, never a copy. The one allocation per
// call (two under a private suffix) is inside x/net/publicsuffix, which
// first tries netip.ParseAddr and so boxes a parse error; the registry's
// decision cache keeps it off the path of hot names. The input must already
// be normalised (lower-case A-labels, no trailing dot); other input fails
// with an error wrapping ErrInvalidHost rather than being silently
// mismatched, since the list is keyed by lower-case A-labels.
//
// It uses golang.org/x/net/publicsuffix because its table is compiled into
// the binary (nothing is fetched or read at run time, so every node of a
// given build agrees), lookups walk that table in place, and it
// tells for each match whether the rule is in the ICANN or the private
// section, which is what lets private rules be ignored. Updating the list
// means updating golang.org/x/net.
func RegistrableDomain(name string) (string, error) {
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return "", errNotNormal
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return "", errNotNormal
		}
	}
	if numericLabel(name[strings.LastIndexByte(name, '.')+1:]) {
		return "", errNotNormal // an IPv4 literal or a numeric name
	}
	suffix := icannSuffix(name)
	if len(suffix) == len(name) {
		return "", ErrPublicSuffix
	}
	rest := name[:len(name)-len(suffix)-1]
	return name[strings.LastIndexByte(rest, '.')+1:], nil
}

// icannSuffix returns the public suffix of name under the ICANN section of
// the list (or the default rule "*"), as a substring of name.
//
// publicsuffix.PublicSuffix answers with the longest matching rule of
// either section. When that rule is private, dropping its first label and
// asking again climbs towards the ICANN rule under it (private rules always
// sit below an ICANN suffix: "amazonaws.com.cn" under "com.cn", "cn.com"
// under "com"). A single-label non-ICANN answer is the default rule for an
// unlisted top-level domain, which is kept.
func icannSuffix(name string) string {
	suffix, icann := publicsuffix.PublicSuffix(name)
	for !icann {
		dot := strings.IndexByte(suffix, '.')
		if dot < 0 {
			break
		}
		suffix, icann = publicsuffix.PublicSuffix(suffix[dot+1:])
	}
	return suffix
}
