package registry

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalidHost is returned (wrapped) for names that are not valid hostnames.
var ErrInvalidHost = errors.New("invalid host")

// HostKind classifies a normalised host.
type HostKind uint8

// Host kinds.
const (
	HostEmpty HostKind = iota // no name at all
	HostName                  // a DNS name (A-labels)
	HostIP                    // an IPv4 or IPv6 literal
)

// String returns "empty", "name" or "ip".
func (k HostKind) String() string {
	switch k {
	case HostEmpty:
		return "empty"
	case HostName:
		return "name"
	case HostIP:
		return "ip"
	}
	return fmt.Sprintf("HostKind(%d)", uint8(k))
}

// Limits on host names (RFC 1035 section 2.3.4, in the presentation form
// without the trailing dot).
const (
	maxNameLen  = 253
	maxLabelLen = 63
	// maxInputLen bounds the work done on a hostile input. Non-ASCII input
	// can legitimately be longer than its A-label form only by a little
	// (UTF-8 takes up to 4 bytes a rune; UTS-46 drops a few ignorable
	// runes such as U+00AD), so anything beyond this cannot produce a name
	// of at most 253 bytes in practice and is rejected before IDNA runs.
	maxInputLen = 1024
)

// hostError is an invalid-host reason that costs no allocation: Normalize
// runs on every uncached decision, and a flood of junk names must not turn
// into a flood of garbage. It wraps ErrInvalidHost.
type hostError string

func (e hostError) Error() string { return "invalid host: " + string(e) }
func (e hostError) Unwrap() error { return ErrInvalidHost }

// Reasons for rejecting a host. The messages name what is wrong without
// echoing the input; callers add the input where they report it.
var (
	errTooLong        error = hostError("longer than 253 bytes")
	errInputTooLong   error = hostError("input longer than 1024 bytes")
	errLabelTooLong   error = hostError("label longer than 63 bytes")
	errEmptyLabel     error = hostError("empty label")
	errHyphen         error = hostError("label starts or ends with a hyphen")
	errControl        error = hostError("control byte")
	errSpace          error = hostError("space")
	errPercent        error = hostError(`"%" (percent-encoding is not allowed in a host)`)
	errAt             error = hostError(`"@" (user information is not allowed in a host)`)
	errSlash          error = hostError(`"/" or "\" (a path is not allowed in a host)`)
	errByte           error = hostError("character not allowed in a host name (letters, digits, hyphen and dot only)")
	errUTF8           error = hostError("not valid UTF-8")
	errPort           error = hostError("port is not a number from 0 to 65535")
	errBracket        error = hostError("bad IPv6 literal in brackets")
	errColons         error = hostError("colons but not an IPv6 address")
	errNumeric        error = hostError("last label is numeric but the name is not a dotted-quad IPv4 address")
	errPunycodeHyphen error = hostError("internationalised label starts or ends with a hyphen")
)

// lookupProfile is UTS-46 processing with the lookup mapping (full-width
// letters, "。" and upper case map; disallowed runes fail), nontransitional
// (ß stays ß, as in current browsers), the Bidi and ContextJ rules, and
// STD3 ASCII rules (LDH only: no "_" or "*"). CheckHyphens is off, as in
// the WHATWG URL standard and in browsers: ASCII labels such as
// "r3---sn-abc" (hyphens in positions 3 and 4) are in common use and
// browsers resolve them, so blocking them as invalid would drop real
// sites. Leading and trailing hyphens are still rejected, by checkLDH for
// ASCII labels and after decoding for internationalised ones.
var lookupProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.VerifyDNSLength(true),
	idna.CheckHyphens(false), // after MapForLookup, which turns it on
)

// Normalize turns the name a client asked for into the form the registry
// is keyed by (decision step 1, registry/doc.go).
//
// The input may be a TLS SNI, an HTTP Host header value or a URL
// authority: "Example.COM", "example.com:8443", "例子.中国", "[2001:db8::1]:443",
// "1.2.3.4". Normalize strips one trailing dot and any port, rejects
// control bytes, spaces, "%", "@", "/" and "\", maps the name with UTS-46
// (lookup profile) to lower-case A-labels ("例子。中国" and "例子.中国" both
// give "xn--fsqu00a.xn--fiqs8s") and checks the result is a hostname: labels
// of 1 to 63 letters, digits and hyphens, not starting or ending with a
// hyphen, at most 253 bytes in all. A label starting with "xn--" must be
// valid Punycode of a valid internationalised label.
//
// It returns HostEmpty for an empty input, HostIP with the canonical
// address for an IPv4 dotted quad, a bracketed IPv6 literal or a bare IPv6
// literal (as seen in some SNI values), and HostName otherwise. Errors wrap
// ErrInvalidHost.
//
// A name whose last label is numeric ("1.2.3", "127.1", "0x7f.1",
// "01.2.3.4") but that is not a strict dotted quad is rejected: resolvers
// and URL parsers read such names differently (inet_aton takes "127.1" as
// 127.0.0.1, browsers take "0x7f.1" the same way, strict parsers reject
// them), no top-level domain is numeric, so it is neither a name the
// registry could hold nor an address we could name without guessing.
//
// Normalize is idempotent: Normalize(n) returns n for every name n it
// returned. When the input is already normal (lower-case ASCII LDH, with
// no "xn--" label) it returns the input itself, or a substring of it when
// only a port or trailing dot was removed, without allocating; upper case
// ASCII costs one allocation. Names with "xn--" labels are checked with
// IDNA the first time a label is seen and then remembered (aLabelCache),
// so the A-label names browsers send cost about as much as plain ones;
// only non-ASCII input always goes through IDNA (about 1.5 µs).
func Normalize(host string) (string, HostKind, error) {
	if host == "" {
		return "", HostEmpty, nil
	}
	if len(host) > maxInputLen {
		return "", HostName, errInputTooLong
	}
	name := host
	if name[0] == '[' {
		return normalizeBracketed(name)
	}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		if strings.IndexByte(name[i+1:], ':') >= 0 {
			// Two or more colons: only a bare IPv6 literal has them.
			return normalizeIPv6(name, name)
		}
		if !validPort(name[i+1:]) {
			return "", HostName, errPort
		}
		name = name[:i]
	}
	before := len(name)
	name = trimRootDot(name)
	if name == "" {
		return "", HostName, errEmptyLabel
	}
	rootDot := len(name) < before

	// One pass to classify: forbidden bytes fail at once, upper case
	// needs lower-casing, non-ASCII needs IDNA.
	upper, nonASCII := false, false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
		case 'A' <= c && c <= 'Z':
			upper = true
		case c >= utf8.RuneSelf:
			nonASCII = true
		default:
			return "", HostName, asciiError(c)
		}
	}
	if nonASCII {
		return normalizeIDNA(name, rootDot)
	}
	if len(name) > maxNameLen {
		return "", HostName, errTooLong
	}
	if !upper {
		return finishASCII(name, name)
	}
	var buf [maxNameLen]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return finishASCII(buf[:len(name)], "")
}

// finishASCII checks a lower-case ASCII name held in s. When s is a
// string it is returned as is; when it is the stack buffer it is copied
// out. orig is s when s is a string, for the no-copy return.
func finishASCII[T string | []byte](s T, orig string) (string, HostKind, error) {
	xn, numeric, err := checkLDH(s)
	switch {
	case err != nil:
		return "", HostName, err
	case numeric:
		return normalizeIPv4(string(s))
	case xn:
		name := orig
		if name == "" {
			name = string(s)
		}
		if knownALabels(name) {
			return name, HostName, nil
		}
		return normalizeIDNA(name, true)
	case orig != "":
		return orig, HostName, nil
	}
	return string(s), HostName, nil
}

// checkLDH reports whether the lower-case ASCII name s is a valid LDH
// hostname, whether any label starts with "xn--" (and so needs its Punycode
// checked) and whether the last label looks numeric (all digits, or "0x"
// and hex digits: the WHATWG URL "ends in a number" test).
func checkLDH[T string | []byte](s T) (xn, numeric bool, err error) {
	if len(s) > maxNameLen {
		return false, false, errTooLong
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false, false, errByte
			}
			continue
		}
		n := i - start
		switch {
		case n == 0:
			return false, false, errEmptyLabel
		case n > maxLabelLen:
			return false, false, errLabelTooLong
		case s[start] == '-' || s[i-1] == '-':
			return false, false, errHyphen
		}
		if n >= 4 && s[start] == 'x' && s[start+1] == 'n' && s[start+2] == '-' && s[start+3] == '-' {
			xn = true
		}
		if i == len(s) {
			numeric = numericLabel(s[start:i])
		}
		start = i + 1
	}
	return xn, numeric, nil
}

// numericLabel reports whether a lower-case label is a number as the WHATWG
// URL host parser sees it: decimal digits, or "0x" followed by hex digits.
func numericLabel[T string | []byte](l T) bool {
	if len(l) >= 2 && l[0] == '0' && l[1] == 'x' {
		for i := 2; i < len(l); i++ {
			c := l[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// normalizeIPv4 accepts only the strict dotted quad (four decimal octets
// up to 255, no leading zeros, the form netip.ParseAddr accepts) and
// returns it as given, which is then canonical. It is checked by hand
// because netip's parse error allocates, and junk numeric names are
// exactly what a flood of bad requests carries.
func normalizeIPv4(s string) (string, HostKind, error) {
	parts, n, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || n > 255 {
				return "", HostName, errNumeric
			}
			parts++
			n, digits = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || (digits == 1 && n == 0) || digits == 3 {
			return "", HostName, errNumeric // not a digit, leading zero, too long
		}
		n = n*10 + int(c-'0')
		digits++
	}
	if parts != 4 {
		return "", HostName, errNumeric
	}
	return s, HostIP, nil
}

// normalizeBracketed handles "[v6]" and "[v6]:port".
func normalizeBracketed(s string) (string, HostKind, error) {
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return "", HostName, errBracket
	}
	if rest := s[end+1:]; rest != "" {
		if rest[0] != ':' || !validPort(rest[1:]) {
			return "", HostName, errPort
		}
	}
	return normalizeIPv6(s[1:end], s)
}

// normalizeIPv6 parses an IPv6 literal (no zone: "%" never reaches a
// registry) and returns its canonical text form (RFC 5952), the input
// itself when it is already canonical.
func normalizeIPv6(lit, orig string) (string, HostKind, error) {
	for i := 0; i < len(lit); i++ {
		if c := lit[i]; c == '%' {
			return "", HostName, errPercent
		}
	}
	a, err := netip.ParseAddr(lit)
	if err != nil {
		if orig[0] == '[' {
			return "", HostName, errBracket
		}
		return "", HostName, errColons
	}
	if !a.Is6() {
		return "", HostName, errBracket // "[1.2.3.4]"
	}
	var buf [64]byte
	canon := a.AppendTo(buf[:0])
	if string(canon) == lit {
		return lit, HostIP, nil
	}
	return string(canon), HostIP, nil
}

// normalizeIDNA maps a name with non-ASCII runes or "xn--" labels to
// A-labels with the UTS-46 lookup profile and checks the result. rootDot
// says whether the caller already removed the one trailing root dot.
func normalizeIDNA(name string, rootDot bool) (string, HostKind, error) {
	if !utf8.ValidString(name) {
		return "", HostName, errUTF8
	}
	a, err := lookupProfile.ToASCII(name)
	if err != nil {
		return "", HostName, fmt.Errorf("%w: %w", ErrInvalidHost, err)
	}
	// The root dot may only appear now, when the input ended in a rune
	// that maps to nothing (U+00AD SOFT HYPHEN) after the dot; a second
	// one ("例子.中国.。") is an empty label, as "example.com.." is.
	if !rootDot && strings.HasSuffix(a, ".") {
		a = a[:len(a)-1]
	}
	xn, numeric, err := checkLDH(a)
	if err != nil {
		return "", HostName, err
	}
	if numeric {
		// "１２７.０.０.１" in full-width digits maps to an IPv4 literal.
		return normalizeIPv4(a)
	}
	if xn {
		if err := checkULabels(a); err != nil {
			return "", HostName, err
		}
	}
	if a == name {
		// Already normal (an A-label name given as such): keep the
		// caller's string rather than the copy.
		a = name
	}
	return a, HostName, nil
}

// checkULabels rejects internationalised labels whose Unicode form starts
// or ends with a hyphen (RFC 5891 section 4.2.3.1). The lookup profile has
// CheckHyphens off to let "r3---sn" style ASCII labels through, and its
// check would not see the hyphen of a U-label inside the A-label anyway.
func checkULabels(a string) error {
	for a != "" {
		label := a
		if i := strings.IndexByte(a, '.'); i >= 0 {
			label, a = a[:i], a[i+1:]
		} else {
			a = ""
		}
		if !strings.HasPrefix(label, "xn--") {
			continue
		}
		u, err := idna.Punycode.ToUnicode(label)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidHost, err)
		}
		if u == "" || u[0] == '-' || u[len(u)-1] == '-' {
			return errPunycodeHyphen
		}
	}
	return nil
}

// trimRootDot removes one trailing root dot, written "." or as one of the
// full stops UTS-46 maps to it.
func trimRootDot(s string) string {
	switch {
	case strings.HasSuffix(s, "."):
		return s[:len(s)-1]
	case strings.HasSuffix(s, "。"), strings.HasSuffix(s, "．"), strings.HasSuffix(s, "｡"):
		return s[:len(s)-len("。")] // all three are 3 bytes in UTF-8
	}
	return s
}

// validPort reports whether p is a port: empty (RFC 3986 allows "host:")
// or decimal digits with a value up to 65535.
func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// asciiError names the class of a forbidden ASCII byte.
func asciiError(c byte) error {
	switch {
	case c < 0x20 || c == 0x7f:
		return errControl
	case c == ' ':
		return errSpace
	case c == '%':
		return errPercent
	case c == '@':
		return errAt
	case c == '/' || c == '\\':
		return errSlash
	case c == ':' || c == '[' || c == ']':
		return errColons
	}
	return errByte
}

// Browsers send internationalised names already in A-label form, so the
// hot IDN case is ASCII with "xn--" labels, and the same few labels
// ("xn--fiqs8s" for 中国, a customer's own label) come back again and
// again. Full UTS-46 processing of such a name costs microseconds and a
// dozen allocations; aLabelCache remembers labels that passed it, so a
// name made only of remembered labels and plain LDH labels is accepted
// after checkLDH alone.
//
// Only labels whose Unicode form cannot make a name right-to-left are
// remembered (see ltrOnly): the Bidi rule is the one check of UTS-46 that
// looks across labels, and a name with such a label always takes the full
// path. The cache holds at most aLabelCacheMax labels and then stops
// growing: a flood of random labels can fill it but never evicts the
// labels already there, and a name that misses is simply checked in full.
//
// Readers load the map through an atomic pointer without locking; a
// writer copies it (aLabelMu serialises writers).
var (
	aLabelCache atomic.Pointer[map[string]struct{}]
	aLabelMu    sync.Mutex // serialises copy-on-write updates of aLabelCache
)

const aLabelCacheMax = 1024

// knownALabels reports whether every "xn--" label of the lower-case LDH
// name is a valid A-label in canonical form, checking and remembering
// labels not seen before. False means "take the full IDNA path", which
// gives the definitive answer and error.
func knownALabels(name string) bool {
	var cache map[string]struct{}
	if p := aLabelCache.Load(); p != nil {
		cache = *p
	}
	for rest := name; rest != ""; {
		label := rest
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			label, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if !strings.HasPrefix(label, "xn--") {
			continue
		}
		if _, ok := cache[label]; ok {
			continue
		}
		if !checkALabel(label) {
			return false
		}
		rememberALabel(label)
	}
	return true
}

// checkALabel runs UTS-46 on one A-label on its own and reports whether it
// is valid, canonical (re-encodes to itself), has no hyphen at either end
// of its Unicode form and is left-to-right only.
func checkALabel(label string) bool {
	a, err := lookupProfile.ToASCII(label)
	if err != nil || a != label {
		return false
	}
	u, err := idna.Punycode.ToUnicode(label)
	if err != nil || u == "" || u[0] == '-' || u[len(u)-1] == '-' {
		return false
	}
	return ltrOnly(u)
}

// ltrOnly reports whether every rune of u lies in blocks that hold no
// right-to-left or Arabic-number characters (bidi classes R, AL, AN):
// everything below Hebrew (U+0590), CJK (U+2E80 to U+9FFF) and Hangul
// syllables. A label of such runes cannot make a name subject to the Bidi
// rule, so checking it alone is the same as checking it in any name.
func ltrOnly(u string) bool {
	for _, r := range u {
		switch {
		case r < 0x0590:
		case 0x2e80 <= r && r <= 0x9fff:
		case 0xac00 <= r && r <= 0xd7af:
		default:
			return false
		}
	}
	return true
}

// rememberALabel adds a checked label to aLabelCache while it has room.
func rememberALabel(label string) {
	aLabelMu.Lock()
	defer aLabelMu.Unlock()
	var old map[string]struct{}
	if p := aLabelCache.Load(); p != nil {
		old = *p
	}
	if _, ok := old[label]; ok || len(old) >= aLabelCacheMax {
		return
	}
	next := make(map[string]struct{}, len(old)+1)
	for k := range old {
		next[k] = struct{}{}
	}
	next[strings.Clone(label)] = struct{}{}
	aLabelCache.Store(&next)
}
