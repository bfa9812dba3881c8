// Package blockid makes and reads the request IDs of blocked requests.
//
// A block page tells the visitor to bring its request ID to support. The
// gateway keeps no record of the blocks themselves (a flood of blocked
// requests would make billions of rows a week), so the ID carries what
// support needs, and the admin API reads it back:
//
//	bits  field
//	32    time the block was decided, Unix seconds (UTC; lasts until 2106)
//	16    node tag: a hash of the gateway's node name
//	 8    reason tag: the reason's index in Reasons (0: not in the table)
//	24    host tag: 16 bits of a hash of the registrable domain, then 8
//	      bits of a hash of the host (both lower case, as decided)
//	20    sequence: a per-process counter from a random start
//
// The 100 bits are written as 20 characters of Crockford's base32
// (0-9 and A-Z without I, L, O and U) and a check character, in three
// groups of seven: "DCBRFKE-CEG50ZZ-7YR7ARC". Reading one out on the
// phone is 21 characters; a mistyped character, or two characters
// swapped, anywhere in it is always detected by the check character (a
// weighted sum in GF(32), see check). Parse ignores case, hyphens and
// spaces, and reads I and L as 1 and O as 0, as Crockford's spec says.
//
// Tags are hashes, not names: the node and the host are told by hashing
// the candidates support has (this gateway's name; the host the visitor
// names or the unfiled report's domains) and comparing. The domain half
// of the host tag is what lets the report's registrable domains be
// matched; the host half tells www.example.com from example.com.
//
// Usage, on the data plane (allocation-free):
//
//	id := blockid.Append(buf[:0], blockid.New(now, blockid.NodeTag(node), reason, host, domain))
//
// and on the control plane:
//
//	id, err := blockid.Parse(s) // errors.Is(err, blockid.ErrLegacy) for a 16-hex ID
//	id.Time(), id.Node == blockid.NodeTag(node), blockid.ReasonOf(id.Reason), id.HostTag == blockid.HostTag(h, d)
package blockid

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Sizes of an ID's text form.
const (
	// Chars is the number of base32 characters: 20 of data and the check.
	Chars = 21
	// Len is the length of the text Append writes: Chars and two hyphens.
	Len = Chars + 2
	// group is the number of characters between hyphens.
	group = 7
)

// Field widths and masks.
const (
	hostBits = 24
	seqBits  = 20
	hostMask = 1<<hostBits - 1
	seqMask  = 1<<seqBits - 1
)

// ID is what a block's request ID says.
type ID struct {
	// Unix is when the block was decided, in Unix seconds.
	Unix uint32
	// Node is NodeTag of the gateway's node name.
	Node uint16
	// Reason is the reason's index in Reasons; 0 for a reason not in it.
	Reason uint8
	// HostTag is HostTag of the host and domain as decided (24 bits).
	HostTag uint32
	// Seq is the per-process sequence number (20 bits).
	Seq uint32
}

// Time returns the ID's time.
func (id ID) Time() time.Time { return time.Unix(int64(id.Unix), 0) }

// DomainTag is the domain half of the host tag (16 bits).
func (id ID) DomainTag() uint16 { return uint16(id.HostTag >> 8) }

// seq is the process's sequence counter. Its start is random so that two
// processes (or one restarted) blocking the same host in the same second
// do not issue the same IDs.
var seq atomic.Uint32

func init() {
	var b [4]byte
	if _, err := crand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; a time-based start only
		// makes a repeat a little less unlikely.
		binary.LittleEndian.PutUint32(b[:], uint32(time.Now().UnixNano()))
	}
	seq.Store(binary.LittleEndian.Uint32(b[:]))
}

// New returns the ID of a block decided at t on the node whose tag is
// node, for reason, about host and its registrable domain as decided
// (domain "" for an IP literal or an invalid name: the host stands in).
// It takes the next sequence number and allocates nothing.
func New(t time.Time, node uint16, reason, host, domain string) ID {
	return ID{
		Unix:    uint32(t.Unix()),
		Node:    node,
		Reason:  ReasonTag(reason),
		HostTag: HostTag(host, domain),
		Seq:     seq.Add(1) & seqMask,
	}
}

// alphabet is Crockford's base32.
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// symbols returns the ID's 20 data symbols, most significant first.
func (id ID) symbols() (s [Chars - 1]byte) {
	// 100 bits: hi holds the top 36 (time, top 4 of node), lo the rest.
	hi := uint64(id.Unix)<<4 | uint64(id.Node>>12)
	lo := uint64(id.Node&0xfff)<<52 | uint64(id.Reason)<<44 | uint64(id.HostTag&hostMask)<<seqBits | uint64(id.Seq&seqMask)
	for i := range s {
		shift := 95 - 5*i // of the symbol's lowest bit
		var v uint64
		switch {
		case shift >= 64:
			v = hi >> (shift - 64)
		case shift+5 <= 64:
			v = lo >> shift
		default: // straddles hi and lo
			v = hi<<(64-shift) | lo>>shift
		}
		s[i] = byte(v & 31)
	}
	return s
}

// fromSymbols is the inverse of symbols.
func fromSymbols(s *[Chars - 1]byte) ID {
	var hi, lo uint64
	for _, v := range s {
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	hi &= 1<<36 - 1
	return ID{
		Unix:    uint32(hi >> 4),
		Node:    uint16(hi&0xf)<<12 | uint16(lo>>52),
		Reason:  uint8(lo >> 44),
		HostTag: uint32(lo>>seqBits) & hostMask,
		Seq:     uint32(lo) & seqMask,
	}
}

// mulX multiplies v by x in GF(32) = GF(2)[x]/(x^5+x^2+1).
func mulX(v byte) byte {
	v <<= 1
	if v&0x20 != 0 {
		v ^= 0x25
	}
	return v
}

// check returns the check symbol of the data symbols s: the c that makes
// sum(s[i]·x^(20-i)) + c = 0 in GF(32). The 21 weights x^20 ... x^0 are
// distinct and non-zero (x generates the field's 31 non-zero elements), so
// a wrong symbol anywhere, or two symbols swapped anywhere, changes the
// sum: both are always detected.
func check(s *[Chars - 1]byte) byte {
	var c byte
	for _, v := range s {
		c = mulX(c) ^ v
	}
	return mulX(c)
}

// Append appends id's text form (Len bytes) to dst.
func Append(dst []byte, id ID) []byte {
	s := id.symbols()
	c := check(&s)
	for i, v := range s {
		if i > 0 && i%group == 0 {
			dst = append(dst, '-')
		}
		dst = append(dst, alphabet[v])
	}
	return append(dst, alphabet[c])
}

// String returns id's text form.
func (id ID) String() string { return string(Append(make([]byte, 0, Len), id)) }

// Errors of Parse. A *SyntaxError wraps one of them.
var (
	// ErrLegacy: the text is a 16-hex request ID, as every request had
	// before this format and passing requests still have. It carries no
	// details.
	ErrLegacy = errors.New("a 16-hex request ID carries no details")
	// ErrLength: not 21 characters once hyphens and spaces are dropped.
	ErrLength = errors.New("wrong length")
	// ErrChar: a character outside Crockford's base32.
	ErrChar = errors.New("invalid character")
	// ErrCheck: the check character does not match the others, so one of
	// them is mistyped.
	ErrCheck = errors.New("check character does not match")
)

// SyntaxError says what is wrong with a text that is not an ID.
type SyntaxError struct {
	// Err is ErrLength, ErrChar or ErrCheck.
	Err error
	// Len is the number of characters (hyphens and spaces dropped).
	Len int
	// Char and Pos are the invalid character and its 1-based position
	// among the characters (ErrChar).
	Char rune
	Pos  int
}

func (e *SyntaxError) Error() string {
	switch e.Err {
	case ErrLength:
		return fmt.Sprintf("a request ID has %d characters besides hyphens, this one %d", Chars, e.Len)
	case ErrChar:
		return fmt.Sprintf("character %d, %q, is not one of 0-9 and A-Z without U", e.Pos, e.Char)
	case ErrCheck:
		return "the check character (the last) does not match the others: a character is mistyped"
	}
	return e.Err.Error()
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// maxParse bounds the text Parse reads, so a pasted page cannot make it
// walk megabytes.
const maxParse = 256

// Parse reads an ID's text form: case-insensitive, hyphens and spaces
// anywhere ignored, I and L read as 1 and O as 0. A 16-hex ID returns
// ErrLegacy; any other text a *SyntaxError.
func Parse(text string) (ID, error) {
	var s [Chars - 1]byte
	var c byte
	n := 0
	hex := true // every character a hex digit: maybe a legacy ID
	for i, r := range text {
		if i >= maxParse {
			return ID{}, &SyntaxError{Err: ErrLength, Len: n + len(text[i:])}
		}
		if r == '-' || r == ' ' {
			continue
		}
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			hex = false
		}
		v, ok := symbol(r)
		n++
		if !ok {
			return ID{}, &SyntaxError{Err: ErrChar, Char: r, Pos: n}
		}
		switch {
		case n <= len(s):
			s[n-1] = v
		case n == Chars:
			c = v
		}
	}
	if n == 16 && hex {
		return ID{}, ErrLegacy
	}
	if n != Chars {
		return ID{}, &SyntaxError{Err: ErrLength, Len: n}
	}
	if check(&s) != c {
		return ID{}, &SyntaxError{Err: ErrCheck, Len: n}
	}
	return fromSymbols(&s), nil
}

// symbol returns the value of a base32 character.
func symbol(r rune) (byte, bool) {
	switch {
	case '0' <= r && r <= '9':
		return byte(r - '0'), true
	case 'a' <= r && r <= 'z':
		r -= 'a' - 'A'
	case r < 'A' || r > 'Z':
		return 0, false
	}
	switch r {
	case 'I', 'L':
		return 1, true
	case 'O':
		return 0, true
	case 'U':
		return 0, false
	}
	// Index in alphabet: letters after I, L, O skip one each.
	v := byte(r-'A') + 10
	if r > 'I' {
		v--
	}
	if r > 'L' {
		v--
	}
	if r > 'O' {
		v--
	}
	if r > 'U' {
		v--
	}
	return v, true
}

// Reasons are the reason codes a tag can name, by tag; 0 is a reason not
// in the table. Append only: a tag already issued must keep its meaning
// for as long as IDs carrying it are brought to support.
var Reasons = [...]string{
	"",
	"filed", "access_pending", "rectifying", "rectification_overdue",
	"no_access", "filing_pending", "cancelled", "access_revoked",
	"blacklisted", "unfiled", "suffix_not_fileable", "ip_access",
	"invalid_host", "override_allow", "override_deny",
	"hrr_sni_mismatch",
}

// ReasonTag returns reason's index in Reasons, 0 when it is not there.
func ReasonTag(reason string) uint8 {
	for i := 1; i < len(Reasons); i++ {
		if Reasons[i] == reason {
			return uint8(i)
		}
	}
	return 0
}

// ReasonOf returns the reason code of a tag; ok is false for 0 and for
// tags this version does not know (an ID from a newer gateway).
func ReasonOf(tag uint8) (reason string, ok bool) {
	if tag == 0 || int(tag) >= len(Reasons) {
		return "", false
	}
	return Reasons[tag], true
}

// fnv1a is FNV-1a (32 bits) of s with ASCII folded to lower case.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// fold16 folds a 32-bit hash to 16 bits.
func fold16(h uint32) uint16 { return uint16(h ^ h>>16) }

// NodeTag is the 16-bit tag of a node name (case-insensitive).
func NodeTag(node string) uint16 { return fold16(fnv1a(node)) }

// HostTag is the 24-bit tag of a host and its registrable domain as
// decided (A-labels; case does not matter): DomainTag(domain), or of host
// when domain is empty, then 8 bits of host's hash.
func HostTag(host, domain string) uint32 {
	if domain == "" {
		domain = host
	}
	h := fnv1a(host)
	return uint32(DomainTag(domain))<<8 | (h^h>>8^h>>16^h>>24)&0xff
}

// DomainTag is the 16-bit tag of a registrable domain, the first half of
// a host tag.
func DomainTag(domain string) uint16 { return fold16(fnv1a(domain)) }
