package sni

import (
	"fmt"
	"io"
	"sync"
	"unsafe"
)

// TLS constants this package needs (RFC 8446, RFC 6066, RFC 7301 and the
// ECH draft), with the values crypto/tls uses.
const (
	recordTypeHandshake = 22
	recordHeaderLen     = 5
	maxPlaintext        = 16384 // largest record payload crypto/tls accepts before keys
	handshakeHeaderLen  = 4
	typeClientHello     = 1

	extServerName          = 0
	extStatusRequest       = 5
	extSupportedGroups     = 10
	extPointFormats        = 11
	extSignatureAlgorithms = 13
	extALPN                = 16
	extSCT                 = 18
	extExtendedMaster      = 23
	extSessionTicket       = 35
	extPreSharedKey        = 41
	extEarlyData           = 42
	extSupportedVersions   = 43
	extCookie              = 44
	extPSKModes            = 45
	extSigAlgsCert         = 50
	extKeyShare            = 51
	extQUICTransportParams = 57
	extRenegotiationInfo   = 0xff01
	extECH                 = 0xfe0d
)

// ParseHandshake parses one bare ClientHello handshake message (type,
// 24-bit length, body), as carried in QUIC CRYPTO frames. Bytes after the
// message are ignored.
//
// The returned ServerName and ALPN strings alias msg: they are valid as long
// as msg is not modified. ParseHandshake allocates only the ALPN and
// SupportedVersions slices: one small allocation per call.
//
// Errors wrap ErrMalformed; when msg is a valid prefix of a longer message
// the error also matches io.ErrUnexpectedEOF, so a QUIC reader can wait for
// more CRYPTO data. A message longer than 64 KiB is ErrTooLarge.
func ParseHandshake(msg []byte) (Hello, error) {
	var h Hello
	if len(msg) < handshakeHeaderLen {
		return h, fmt.Errorf("sni: %d bytes of handshake header: %w: %w", len(msg), ErrMalformed, io.ErrUnexpectedEOF)
	}
	if msg[0] != typeClientHello {
		return h, fmt.Errorf("sni: handshake message type %d: %w", msg[0], ErrMalformed)
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if n > maxHandshake {
		return h, fmt.Errorf("sni: handshake message of %d bytes: %w", n, ErrTooLarge)
	}
	if len(msg) < handshakeHeaderLen+n {
		return h, fmt.Errorf("sni: %d of %d handshake bytes: %w: %w", len(msg), handshakeHeaderLen+n, ErrMalformed, io.ErrUnexpectedEOF)
	}
	p := parserPool.Get().(*parser)
	defer parserPool.Put(p)
	s := new(struct {
		alpn [4]string
		vers [4]uint16
	})
	if err := p.parse(msg[:handshakeHeaderLen+n], &h, s.alpn[:0], s.vers[:0]); err != nil {
		return Hello{}, err
	}
	return h, nil
}

// parserPool holds the parsers of ParseHandshake (Read uses the Conn's).
var parserPool = sync.Pool{New: func() any { return new(parser) }}

// parser holds the scratch state of one parse, so that parsing allocates
// nothing. It is embedded in the pooled Conn; ParseHandshake takes one from
// parserPool.
type parser struct {
	// seen has one bit per extension type, for rejecting duplicates in
	// O(1) per extension whatever their number. Only the words listed in
	// dirty[:ndirty] are non-zero, so reset costs what the parse set.
	seen   [65536 / 64]uint64
	dirty  [65536 / 64]uint16
	ndirty int
}

// reset clears the words of seen that the last parse set.
func (p *parser) reset() {
	for _, w := range p.dirty[:p.ndirty] {
		p.seen[w] = 0
	}
	p.ndirty = 0
}

// mark records extension type t and reports whether it was already seen.
func (p *parser) mark(t uint16) (dup bool) {
	w, bit := t>>6, uint64(1)<<(t&63)
	v := p.seen[w]
	if v&bit != 0 {
		return true
	}
	if v == 0 {
		p.dirty[p.ndirty] = w
		p.ndirty++
	}
	p.seen[w] = v | bit
	return false
}

// alias returns b as a string sharing its memory (see the package
// documentation on lifetime).
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// malformed wraps ErrMalformed with what was wrong.
func malformed(what string) error {
	return fmt.Errorf("sni: %s: %w", what, ErrMalformed)
}

// parse parses a complete ClientHello message (header included, nothing
// after it) into h, appending to alpn and vers for h.ALPN and
// h.SupportedVersions. It accepts exactly what crypto/tls's
// clientHelloMsg.unmarshal accepts, plus its server-side check of the
// encrypted_client_hello extension.
func (p *parser) parse(msg []byte, h *Hello, alpn []string, vers []uint16) error {
	defer p.reset()
	s := str(msg)
	var (
		sessionID, compression str
		suites                 str
	)
	if !s.Skip(handshakeHeaderLen) || !s.ReadUint16(&h.Version) || !s.Skip(32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) {
		return malformed("truncated hello header")
	}
	if !s.ReadUint16LengthPrefixed(&suites) || len(suites)%2 != 0 {
		return malformed("bad cipher suites")
	}
	if !s.ReadUint8LengthPrefixed(&compression) {
		return malformed("bad compression methods")
	}
	if s.Empty() {
		return nil // no extensions at all
	}
	var exts str
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return malformed("bad extensions block")
	}
	for !exts.Empty() {
		var (
			typ  uint16
			data str
		)
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return malformed("truncated extension")
		}
		if p.mark(typ) {
			return fmt.Errorf("sni: duplicate extension %d: %w", typ, ErrMalformed)
		}
		var ok bool
		switch typ {
		case extServerName:
			ok = parseServerName(&data, h)
		case extStatusRequest:
			var st uint8
			var ign str
			ok = data.ReadUint8(&st) && data.ReadUint16LengthPrefixed(&ign) && data.ReadUint16LengthPrefixed(&ign)
		case extSupportedGroups, extSignatureAlgorithms, extSigAlgsCert:
			var l str
			ok = data.ReadUint16LengthPrefixed(&l) && !l.Empty() && len(l)%2 == 0
		case extPointFormats:
			var l str
			ok = data.ReadUint8LengthPrefixed(&l) && !l.Empty()
		case extSessionTicket, extQUICTransportParams, extECH:
			if typ == extECH {
				h.ECH = true
				ok = checkECH(data)
			} else {
				ok = true
			}
			data = nil // the whole body is the value
		case extRenegotiationInfo, extPSKModes:
			var l str
			ok = data.ReadUint8LengthPrefixed(&l)
		case extExtendedMaster, extSCT, extEarlyData:
			ok = true // must be empty: checked below
		case extALPN:
			var l str
			ok = data.ReadUint16LengthPrefixed(&l) && !l.Empty()
			for ok && !l.Empty() {
				var proto str
				ok = l.ReadUint8LengthPrefixed(&proto) && !proto.Empty()
				if ok {
					alpn = append(alpn, alias(proto))
				}
			}
			h.ALPN = alpn
		case extSupportedVersions:
			var l str
			ok = data.ReadUint8LengthPrefixed(&l) && !l.Empty() && len(l)%2 == 0
			for ok && !l.Empty() {
				var v uint16
				l.ReadUint16(&v)
				vers = append(vers, v)
			}
			h.SupportedVersions = vers
		case extCookie:
			var l str
			ok = data.ReadUint16LengthPrefixed(&l) && !l.Empty()
		case extKeyShare:
			var l str
			ok = data.ReadUint16LengthPrefixed(&l)
			for ok && !l.Empty() {
				var ks str
				ok = l.Skip(2) && l.ReadUint16LengthPrefixed(&ks) && !ks.Empty()
			}
		case extPreSharedKey:
			ok = exts.Empty() && checkPSK(&data) // must be the last extension
		default:
			continue // unknown extensions are ignored, whatever they hold
		}
		if !ok || !data.Empty() {
			return fmt.Errorf("sni: bad extension %d: %w", typ, ErrMalformed)
		}
	}
	return nil
}

// parseServerName parses the server_name extension (RFC 6066, section 3)
// the way crypto/tls does: a non-empty list of non-empty names, at most one
// of type host_name, without a trailing dot.
func parseServerName(data *str, h *Hello) bool {
	var list str
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() {
		return false
	}
	h.HasSNI = true
	for !list.Empty() {
		var (
			typ  uint8
			name str
		)
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
			return false
		}
		if typ != 0 {
			continue
		}
		if h.ServerName != "" {
			return false // two host_name entries
		}
		if name[len(name)-1] == '.' {
			return false
		}
		h.ServerName = alias(name)
	}
	return true
}

// checkECH validates an encrypted_client_hello extension body as
// crypto/tls's server does before GetConfigForClient: empty, an inner
// marker (type 1, nothing else) or an outer hello (type 0, KDF, AEAD,
// config id, enc and payload; trailing bytes are tolerated).
func checkECH(data str) bool {
	if data.Empty() {
		return true
	}
	var typ uint8
	data.ReadUint8(&typ)
	switch typ {
	case 1:
		return data.Empty()
	case 0:
		var enc, payload str
		return data.Skip(5) && data.ReadUint16LengthPrefixed(&enc) && data.ReadUint16LengthPrefixed(&payload)
	}
	return false
}

// checkPSK validates a pre_shared_key extension body: a non-empty list of
// identities with non-empty labels and a non-empty list of non-empty
// binders.
func checkPSK(data *str) bool {
	var ids, binders str
	if !data.ReadUint16LengthPrefixed(&ids) || ids.Empty() {
		return false
	}
	for !ids.Empty() {
		var label str
		if !ids.ReadUint16LengthPrefixed(&label) || label.Empty() || !ids.Skip(4) {
			return false
		}
	}
	if !data.ReadUint16LengthPrefixed(&binders) || binders.Empty() {
		return false
	}
	for !binders.Empty() {
		var b str
		if !binders.ReadUint8LengthPrefixed(&b) || b.Empty() {
			return false
		}
	}
	return true
}

// str is a bounds-checked reader over a byte slice with the cryptobyte
// method names this parser uses. These small methods inline, which makes the
// parse about twice as fast as with cryptobyte.String. On failure they
// leave the reader unchanged.
type str []byte

// Empty reports whether s is exhausted.
func (s *str) Empty() bool { return len(*s) == 0 }

// Skip advances s by n bytes.
func (s *str) Skip(n int) bool {
	if len(*s) < n {
		return false
	}
	*s = (*s)[n:]
	return true
}

// ReadUint8 reads one byte.
func (s *str) ReadUint8(out *uint8) bool {
	if len(*s) < 1 {
		return false
	}
	*out = (*s)[0]
	*s = (*s)[1:]
	return true
}

// ReadUint16 reads a big-endian uint16.
func (s *str) ReadUint16(out *uint16) bool {
	if len(*s) < 2 {
		return false
	}
	*out = uint16((*s)[0])<<8 | uint16((*s)[1])
	*s = (*s)[2:]
	return true
}

// ReadUint8LengthPrefixed reads a vector with a one-byte length.
func (s *str) ReadUint8LengthPrefixed(out *str) bool {
	b := *s
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return false
	}
	n := 1 + int(b[0])
	*out = b[1:n]
	*s = b[n:]
	return true
}

// ReadUint16LengthPrefixed reads a vector with a two-byte length.
func (s *str) ReadUint16LengthPrefixed(out *str) bool {
	b := *s
	if len(b) < 2 {
		return false
	}
	n := 2 + (int(b[0])<<8 | int(b[1]))
	if len(b) < n {
		return false
	}
	*out = b[2:n]
	*s = b[n:]
	return true
}
