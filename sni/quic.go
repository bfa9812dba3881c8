package sni

// QUIC Initial packets (RFC 9000, RFC 9001 section 5, RFC 9369 for QUIC v2).
//
// A QUIC client sends its ClientHello in CRYPTO frames of Initial packets.
// Their payload is encrypted, but with keys anyone can derive from the
// client's first Destination Connection ID, so a gateway can read the name
// without taking part in the handshake: derive the client Initial keys,
// remove header protection, open the AEAD, collect the CRYPTO frames by
// offset (Chrome splits the hello over several packets and datagrams and
// sends the pieces out of order), and parse the hello with ParseHandshake.
//
// Initials does this for one connection, datagram by datagram, within
// caps on CRYPTO bytes and packets; ParseInitial is the one-datagram
// shortcut. It reads the packets as the server does, so that a gateway
// decides on the hello the server will read: a packet whose number was
// seen before is one the server discards (RFC 9000 12.3), and after the
// hello Initials goes on checking what the client sends until the caller
// knows the server has moved past its Initial packets. AppendInitialClose builds the server's answer for a blocked
// connection: an Initial packet carrying a CONNECTION_CLOSE frame.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// QUIC versions Initials decrypts.
const (
	// QUICv1 is QUIC version 1 (RFC 9000).
	QUICv1 uint32 = 0x00000001
	// QUICv2 is QUIC version 2 (RFC 9369).
	QUICv2 uint32 = 0x6b3343cf
)

// Defaults of QUICOptions.
const (
	// DefaultQUICMaxCryptoBytes caps the CRYPTO stream offset+length
	// Initials accepts: a ClientHello is at most 64 KiB plus its 4-byte
	// header (the same bound as crypto/tls).
	DefaultQUICMaxCryptoBytes = maxHandshake + handshakeHeaderLen
	// DefaultQUICMaxPackets caps the Initial packets one Initials decrypts.
	// A 64 KiB hello fits in about 55 full-size packets; browsers need 1-3.
	DefaultQUICMaxPackets = 64
)

// Errors of the QUIC functions, besides ErrMalformed (undecryptable packet,
// bad frame) and ErrTooLarge (a cap was reached). Compare with errors.Is.
var (
	// ErrNotInitial: the datagram holds no client Initial packet (a short
	// header packet, only Handshake/0-RTT/Retry packets, or too short).
	ErrNotInitial = errors.New("not a QUIC initial packet")
	// ErrQUICVersion: a long header packet of a version other than QUICv1
	// and QUICv2 (including version negotiation and greased versions).
	ErrQUICVersion = errors.New("unsupported QUIC version")
	// ErrCryptoConflict: the client sent CRYPTO data the server may read
	// differently from Initials: bytes that differ from bytes of the same
	// offsets received before, new bytes in a packet the server discards
	// (a packet number already received, another source connection ID),
	// or bytes past the ClientHello other than one second ClientHello.
	// Errors matching it also match ErrMalformed.
	ErrCryptoConflict = errors.New("conflicting QUIC CRYPTO data")
)

// QUIC long header packet types, in their QUIC v1 numbering.
const (
	quicInitial   = 0
	quicZeroRTT   = 1
	quicHandshake = 2
	quicRetry     = 3
)

// Frame types a client may send in Initial packets (RFC 9000, 12.4).
const (
	framePadding   = 0x00
	framePing      = 0x01
	frameACK       = 0x02
	frameACKECN    = 0x03
	frameCrypto    = 0x06
	frameConnClose = 0x1c
	maxConnIDLen   = 20
	aeadTagLen     = 16
	hpSampleLen    = 16
)

// Salts of the Initial secrets (RFC 9001 5.2, RFC 9369 3.3.1).
var (
	saltV1 = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	saltV2 = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

// QUICHeader is the version-independent part of a QUIC packet header
// (RFC 8999) plus, for long headers, the packet type.
type QUICHeader struct {
	// Long reports a long header packet; the fields below are set only
	// for long headers.
	Long bool
	// Version is the long header's version field (0 for version
	// negotiation).
	Version uint32
	// Initial reports a QUICv1 or QUICv2 Initial packet.
	Initial bool
	// Retry reports a QUICv1 or QUICv2 Retry packet; SCID is then the
	// connection ID the client's next Initials are addressed to and
	// protected with.
	Retry bool
	// DCID and SCID are the connection IDs. They alias the datagram.
	DCID, SCID []byte
}

// ParseQUICHeader parses the invariant header fields of the first packet in
// b. It reports false for a datagram too short for its header, or with a
// connection ID longer than 20 bytes in a QUICv1 or QUICv2 packet. For a
// short header packet it only sets Long to false: the DCID length of short
// headers is known only to the endpoint that chose it.
func ParseQUICHeader(b []byte) (QUICHeader, bool) {
	var h QUICHeader
	if len(b) == 0 {
		return h, false
	}
	if b[0]&0x80 == 0 {
		return h, true
	}
	h.Long = true
	if len(b) < 7 {
		return h, false
	}
	h.Version = binary.BigEndian.Uint32(b[1:5])
	n := int(b[5])
	if len(b) < 6+n+1 {
		return h, false
	}
	h.DCID = b[6 : 6+n]
	m := int(b[6+n])
	if len(b) < 7+n+m {
		return h, false
	}
	h.SCID = b[7+n : 7+n+m]
	if h.Version == QUICv1 || h.Version == QUICv2 {
		if n > maxConnIDLen || m > maxConnIDLen {
			return h, false
		}
		t := packetType(h.Version, b[0])
		h.Initial, h.Retry = t == quicInitial, t == quicRetry
	}
	return h, true
}

// HasHandshakePacket reports whether datagram holds a QUICv1 or QUICv2
// Handshake packet, first or coalesced after Initial or 0-RTT packets. A
// server sends its first Handshake packet once it has read a ClientHello
// and answered it with a ServerHello: from then on, client Initials can no
// longer change the hello it decided on.
func HasHandshakePacket(datagram []byte) bool {
	b := datagram
	for len(b) > 0 && b[0]&0x80 != 0 {
		h, ok := ParseQUICHeader(b)
		if !ok || (h.Version != QUICv1 && h.Version != QUICv2) {
			return false
		}
		t := packetType(h.Version, b[0])
		switch t {
		case quicHandshake:
			return true
		case quicRetry:
			return false
		}
		p := 7 + len(h.DCID) + len(h.SCID)
		if t == quicInitial {
			tok, n := readVarint(b[p:])
			if n == 0 || uint64(len(b)-p-n) < tok {
				return false
			}
			p += n + int(tok)
		}
		length, n := readVarint(b[p:])
		if n == 0 || uint64(len(b)-p-n) < length {
			return false
		}
		b = b[p+n+int(length):]
	}
	return false
}

// packetType returns the long header packet type of first byte b in v1
// numbering (QUIC v2 rotates the codes, RFC 9369 3.2).
func packetType(version uint32, b byte) int {
	t := int(b>>4) & 3
	if version == QUICv2 {
		t = (t + 3) & 3 // v2: Initial 1, 0-RTT 2, Handshake 3, Retry 0
	}
	return t
}

// typeBits returns the long header type bits of packet type t in v1
// numbering for version.
func typeBits(version uint32, t int) byte {
	if version == QUICv2 {
		t = (t + 1) & 3
	}
	return byte(t) << 4
}

// initialKeys are the AEAD and header protection keys of one direction.
type initialKeys struct {
	aead cipher.AEAD
	iv   [12]byte
	hp   cipher.Block
}

// deriveInitialKeys derives the client's (server false) or server's
// Initial keys for dcid, the client's first Destination Connection ID.
func deriveInitialKeys(version uint32, dcid []byte, server bool) (*initialKeys, error) {
	key, iv, hpKey, err := initialSecrets(version, dcid, server)
	if err != nil {
		return nil, err
	}
	k := new(initialKeys)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sni: initial key: %w", err)
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("sni: initial key: %w", err)
	}
	if k.hp, err = aes.NewCipher(hpKey); err != nil {
		return nil, fmt.Errorf("sni: header protection key: %w", err)
	}
	copy(k.iv[:], iv)
	return k, nil
}

// initialSecrets derives the AEAD key, IV and header protection key of
// one direction (RFC 9001 5.2, RFC 9369 3.3).
func initialSecrets(version uint32, dcid []byte, server bool) (key, iv, hp []byte, err error) {
	if len(dcid) > maxConnIDLen {
		return nil, nil, nil, fmt.Errorf("sni: %d-byte connection ID: %w", len(dcid), ErrMalformed)
	}
	salt, keyLabel, ivLabel, hpLabel := saltV1, "quic key", "quic iv", "quic hp"
	if version == QUICv2 {
		salt, keyLabel, ivLabel, hpLabel = saltV2, "quicv2 key", "quicv2 iv", "quicv2 hp"
	}
	initial := hmacSHA256(salt, dcid) // HKDF-Extract
	label := "client in"
	if server {
		label = "server in"
	}
	secret := expandLabel(initial[:], label, sha256.Size)
	var out [16 + 12 + 16]byte
	k := expandLabel(secret[:], keyLabel, 16)
	v := expandLabel(secret[:], ivLabel, 12)
	h := expandLabel(secret[:], hpLabel, 16)
	copy(out[:16], k[:16])
	copy(out[16:28], v[:12])
	copy(out[28:], h[:16])
	return out[:16:16], out[16:28:28], out[28:], nil
}

// expandLabel is TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446
// 7.1) for outputs of at most one SHA-256 block, as QUIC's Initial keys
// need: the first n bytes of the result are the output.
func expandLabel(secret []byte, label string, n int) [sha256.Size]byte {
	var info [64]byte
	b := append(info[:0], byte(n>>8), byte(n), byte(6+len(label)))
	b = append(b, "tls13 "...)
	b = append(b, label...)
	b = append(b, 0, 1) // empty context, then HKDF-Expand's block counter
	return hmacSHA256(secret, b)
}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) for keys and messages of at most 64
// bytes, computed on the stack: crypto/hmac and crypto/hkdf allocate
// several objects per call, and a gateway derives keys for every QUIC
// connection.
func hmacSHA256(key, msg []byte) [sha256.Size]byte {
	var pad [sha256.BlockSize + 64]byte
	var outer [sha256.BlockSize + sha256.Size]byte
	for i := range sha256.BlockSize {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		pad[i] = k ^ 0x36
		outer[i] = k ^ 0x5c
	}
	n := copy(pad[sha256.BlockSize:], msg)
	inner := sha256.Sum256(pad[:sha256.BlockSize+n])
	copy(outer[sha256.BlockSize:], inner[:])
	return sha256.Sum256(outer[:])
}

// nonce returns the AEAD nonce of packet number pn.
func (k *initialKeys) nonce(pn uint64) [12]byte {
	n := k.iv
	for i := 0; i < 8; i++ {
		n[11-i] ^= byte(pn >> (8 * i))
	}
	return n
}

// QUICOptions bound an Initials. The zero value means the defaults.
type QUICOptions struct {
	// MaxCryptoBytes caps the end offset of any CRYPTO frame. Default
	// DefaultQUICMaxCryptoBytes; zero or negative means the default.
	MaxCryptoBytes int
	// MaxPackets caps the Initial packets decrypted. Default
	// DefaultQUICMaxPackets; zero or negative means the default.
	MaxPackets int
}

// Initials reassembles the ClientHello of one QUIC connection from the
// client's Initial packets. Feed it the connection's datagrams with Add
// until it returns the Hello. It is not safe for concurrent use; the zero
// value uses the default QUICOptions.
//
// A caller that decides on the Hello and then forwards the connection can
// go on feeding Add the client's datagrams until the server has left its
// Initial packets behind (it has sent a Handshake packet, see
// HasHandshakePacket), so that nothing the server reads differs from what
// the decision was made on: a later Initial must repeat the bytes received
// before at their offsets, and the only CRYPTO data allowed past the hello
// is one second ClientHello (after a HelloRetryRequest), which
// SecondHello returns for deciding. Tell it of a Retry the server sends
// with ServerRetry.
//
// The Hellos it returns alias its reassembly buffer: they stay valid until
// the next Add or Reset.
type Initials struct {
	// Options bound the reassembly; set before the first Add.
	Options QUICOptions

	version uint32
	dcid    []byte
	scid    [maxConnIDLen]byte // the first Initial's Source Connection ID (held here: no allocation)
	scidLen int
	keys    *initialKeys
	largest int64 // largest packet number opened; -1 before the first
	pns     [maxPNSpans]pnSpan
	npns    int // pns in use: the packet numbers received, sorted, disjoint
	packets int
	crypto  []byte // CRYPTO stream bytes [0, len) as far as received
	ranges  []span // received byte ranges of crypto, sorted, disjoint
	plain   []byte // scratch for opened payloads
	aad     []byte // scratch for unprotected headers
	hello   Hello
	done    bool
	opened  bool // a packet has been decrypted
	// helloEnd is the CRYPTO offset where the first ClientHello ends, set
	// once done; secondEnd where the second one ends, once complete.
	helloEnd, secondEnd int
	second              Hello
}

// span is a received range [from, to) of the CRYPTO stream.
type span struct{ from, to int }

// pnSpan is a received range [from, to) of packet numbers.
type pnSpan struct{ from, to uint64 }

// maxSpans caps the holes reassembly tracks, so a peer sending many
// one-byte fragments cannot make merging quadratic.
const maxSpans = 64

// maxPNSpans caps the runs of packet numbers tracked (held in Initials
// itself, so tracking allocates nothing). A client numbers its Initials
// 0, 1, 2...; each run past the first needs a packet lost or reordered.
// More runs than this end the connection rather than let Initials forget
// numbers the server remembers (quic-go remembers 64 runs).
const maxPNSpans = 16

// Reset clears i for another connection, keeping its buffers and Options.
func (i *Initials) Reset() {
	*i = Initials{Options: i.Options, crypto: i.crypto[:0], ranges: i.ranges[:0], plain: i.plain[:0], aad: i.aad[:0],
		dcid: i.dcid[:0]}
}

// Footprint returns the bytes of the buffers i holds (reassembly and
// scratch), for callers that budget the memory of many connections.
func (i *Initials) Footprint() int {
	return cap(i.crypto) + cap(i.plain) + cap(i.aad) + cap(i.dcid)
}

// Version returns the QUIC version of the first Initial packet added, or 0.
func (i *Initials) Version() uint32 { return i.version }

// Add decrypts the client Initial packets in datagram (other packet types
// coalesced with them are skipped) and adds their CRYPTO data. It returns
// the Hello once the ClientHello is complete (and again on later calls).
// While more data is needed the error matches io.ErrUnexpectedEOF.
// Otherwise the error matches ErrNotInitial, ErrQUICVersion, ErrMalformed
// (and ErrCryptoConflict for CRYPTO data the server may read differently,
// see ErrCryptoConflict) or ErrTooLarge; the first datagram of a
// connection must hold an Initial. A packet whose packet number was
// received before is read only to check that it carries nothing new.
//
// Once the hello is complete, Add goes on reading the Initials of later
// datagrams (a datagram without one is no error): their CRYPTO bytes must
// agree with those received, their packets count towards MaxPackets, and
// they may be addressed to any connection ID (the server's, once it
// answered), though they must open with the connection's keys.
// datagram is not modified and not retained.
func (i *Initials) Add(datagram []byte) (Hello, error) {
	if i.done {
		if _, err := i.add(datagram); err != nil && !errors.Is(err, ErrNotInitial) && !errors.Is(err, ErrQUICVersion) {
			return Hello{}, err
		}
		if err := i.parseSecond(); err != nil {
			return Hello{}, err
		}
		return i.hello, nil
	}
	if _, err := i.add(datagram); err != nil {
		return Hello{}, err
	}
	return i.parse()
}

// add reads the packets of datagram and reports whether it held an
// Initial.
func (i *Initials) add(datagram []byte) (bool, error) {
	b := datagram
	sawInitial := false
	for len(b) > 0 {
		if b[0]&0x80 == 0 {
			break // a short header packet ends the datagram
		}
		h, ok := ParseQUICHeader(b)
		if !ok {
			if !sawInitial {
				return false, fmt.Errorf("sni: truncated QUIC long header: %w", ErrNotInitial)
			}
			return true, malformed("truncated coalesced QUIC packet")
		}
		if h.Version != QUICv1 && h.Version != QUICv2 {
			if sawInitial {
				break // RFC 9000 12.2: ignore coalesced packets of another version
			}
			return false, fmt.Errorf("sni: QUIC version %#08x: %w", h.Version, ErrQUICVersion)
		}
		n, err := i.addPacket(b, h)
		if err != nil {
			return sawInitial || h.Initial, err
		}
		sawInitial = sawInitial || h.Initial
		b = b[n:]
	}
	if !sawInitial {
		return false, fmt.Errorf("sni: no initial packet in datagram: %w", ErrNotInitial)
	}
	return true, nil
}

// ServerRetry tells i that the server answered with a Retry packet whose
// Source Connection ID is scid. The client's next Initials are addressed
// to scid and protected with keys derived from it, and the server reads
// them as a new connection: it forgets the packet numbers and CRYPTO data
// it had (RFC 9000 17.2.5). i keeps the CRYPTO data the decision was made
// on, which the client must send again unchanged (RFC 9000 17.2.5.2), so
// the server still cannot read another hello; packet numbers start over.
func (i *Initials) ServerRetry(scid []byte) error {
	if i.keys == nil {
		return malformed("QUIC retry before any initial")
	}
	k, err := deriveInitialKeys(i.version, scid, false)
	if err != nil {
		return err
	}
	i.keys = k
	i.dcid = append(i.dcid[:0], scid...)
	i.largest, i.npns = -1, 0
	return nil
}

// addPacket processes the long header packet at the start of b and returns
// its length. Packets other than Initials are skipped.
func (i *Initials) addPacket(b []byte, h QUICHeader) (int, error) {
	if packetType(h.Version, b[0]) == quicRetry {
		return len(b), nil // a Retry has no length field and is never from a client
	}
	p := 7 + len(h.DCID) + len(h.SCID)
	if h.Initial {
		tok, n := readVarint(b[p:])
		if n == 0 || uint64(len(b)-p-n) < tok {
			return 0, malformed("bad QUIC token length")
		}
		p += n + int(tok)
	}
	length, n := readVarint(b[p:])
	if n == 0 || uint64(len(b)-p-n) < length {
		return 0, malformed("bad QUIC packet length")
	}
	pnOff := p + n
	end := pnOff + int(length)
	if !h.Initial {
		return end, nil
	}
	if err := i.open(b[:end], h, pnOff); err != nil {
		return 0, err
	}
	return end, nil
}

// open removes header protection from the Initial packet pkt, decrypts it
// and adds its frames.
func (i *Initials) open(pkt []byte, h QUICHeader, pnOff int) error {
	if i.keys == nil {
		k, err := deriveInitialKeys(h.Version, h.DCID, false)
		if err != nil {
			return err
		}
		i.keys, i.version = k, h.Version
		i.dcid = append(i.dcid[:0], h.DCID...)
		i.largest = -1
		i.scidLen = copy(i.scid[:], h.SCID)
	} else if h.Version != i.version || !i.done && string(h.DCID) != string(i.dcid) {
		// Before the server answers, every client Initial carries the
		// first DCID; another one is another connection.
		return malformed("QUIC initial of another connection")
	}
	if string(h.SCID) != string(i.scid[:i.scidLen]) {
		// quic-go discards an Initial whose SCID is not the first one's
		// unread; a client keeps its SCID through the handshake, so no
		// client but one sending the server what Initials must not read
		// sends such a packet.
		return fmt.Errorf("sni: QUIC initial from another source connection ID: %w: %w", ErrCryptoConflict, ErrMalformed)
	}
	if i.packets >= i.maxPackets() {
		return fmt.Errorf("sni: more than %d QUIC initial packets: %w", i.maxPackets(), ErrTooLarge)
	}
	i.packets++
	if len(pkt) < pnOff+4+hpSampleLen {
		return malformed("QUIC initial too short for header protection sample")
	}
	var mask [aes.BlockSize]byte
	i.keys.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+4+hpSampleLen])
	first := pkt[0] ^ mask[0]&0x0f
	pnLen := int(first&3) + 1
	i.aad = append(i.aad[:0], pkt[:pnOff+pnLen]...)
	i.aad[0] = first
	var truncated uint64
	for k := 0; k < pnLen; k++ {
		i.aad[pnOff+k] ^= mask[1+k]
		truncated = truncated<<8 | uint64(i.aad[pnOff+k])
	}
	pn := decodePN(i.largest, truncated, pnLen)
	nonce := i.keys.nonce(pn)
	ct := pkt[pnOff+pnLen:]
	if len(ct) < aeadTagLen {
		return malformed("QUIC initial payload shorter than its tag")
	}
	plain, err := i.keys.aead.Open(i.plain[:0], nonce[:], ct, i.aad)
	if err != nil {
		return fmt.Errorf("sni: opening QUIC initial packet %d: %w", pn, ErrMalformed)
	}
	i.plain = plain
	i.opened = true
	if first&0x0c != 0 {
		return malformed("QUIC initial with reserved bits set")
	}
	if int64(pn) > i.largest {
		i.largest = int64(pn)
	}
	// A packet number received before: the server discards the packet
	// unread (RFC 9000 12.3; quic-go checks after opening, as here, so it
	// decodes the next packet number against the same largest). Initials
	// does not read it either, and more: a network duplicate repeats CRYPTO
	// bytes already received, so one that carries any other bytes is an
	// attempt to complete the hello here with bytes the server never
	// reads, and ends the connection. Ignoring it would not do: if the
	// two copies were reordered on the way to the server, it would keep
	// the other one.
	dup := i.seenPN(pn)
	if err := i.frames(plain, dup); err != nil {
		return err
	}
	if !dup {
		return i.markPN(pn)
	}
	return nil
}

// seenPN reports whether packet number pn was received.
func (i *Initials) seenPN(pn uint64) bool {
	for _, r := range i.pns[:i.npns] {
		if pn < r.from {
			return false
		}
		if pn < r.to {
			return true
		}
	}
	return false
}

// markPN records packet number pn (not received before) as received.
func (i *Initials) markPN(pn uint64) error {
	r := i.pns[:i.npns]
	k := 0
	for k < len(r) && r[k].to < pn {
		k++
	}
	switch {
	case k < len(r) && r[k].to == pn: // extends r[k], perhaps up to r[k+1]
		r[k].to = pn + 1
		if k+1 < len(r) && r[k+1].from == pn+1 {
			r[k].to = r[k+1].to
			copy(r[k+1:], r[k+2:])
			i.npns--
		}
	case k < len(r) && r[k].from == pn+1:
		r[k].from = pn
	default:
		if i.npns == maxPNSpans {
			return fmt.Errorf("sni: QUIC initial packet numbers in more than %d runs: %w", maxPNSpans, ErrTooLarge)
		}
		i.npns++
		r = i.pns[:i.npns]
		copy(r[k+1:], r[k:])
		r[k] = pnSpan{pn, pn + 1}
	}
	return nil
}

// decodePN reconstructs a full packet number from its truncated encoding
// (RFC 9000 A.3).
func decodePN(largest int64, truncated uint64, pnLen int) uint64 {
	expected := uint64(largest + 1)
	win := uint64(1) << (8 * pnLen)
	hwin, mask := win/2, win-1
	candidate := expected&^mask | truncated
	switch {
	case candidate+hwin <= expected && candidate < 1<<62-win:
		return candidate + win
	case candidate > expected+hwin && candidate >= win:
		return candidate - win
	}
	return candidate
}

// frames walks the frames of a decrypted Initial payload; dup reports a
// packet number received before, whose CRYPTO data must all have been
// received.
func (i *Initials) frames(p []byte, dup bool) error {
	if len(p) == 0 {
		return malformed("empty QUIC initial payload")
	}
	for len(p) > 0 {
		typ, n := readVarint(p)
		if n == 0 {
			return malformed("truncated QUIC frame type")
		}
		p = p[n:]
		switch typ {
		case framePadding, framePing:
		case frameACK, frameACKECN:
			var v [4]uint64
			if p, n = readVarints(p, v[:]); n == 0 {
				return malformed("truncated QUIC ACK frame")
			}
			for r := v[2]; r > 0; r-- { // gap, range length
				if p, n = readVarints(p, v[:2]); n == 0 {
					return malformed("truncated QUIC ACK range")
				}
			}
			if typ == frameACKECN {
				if p, n = readVarints(p, v[:3]); n == 0 {
					return malformed("truncated QUIC ACK ECN counts")
				}
			}
		case frameCrypto:
			var v [2]uint64
			if p, n = readVarints(p, v[:]); n == 0 || uint64(len(p)) < v[1] {
				return malformed("truncated QUIC CRYPTO frame")
			}
			if err := i.addCrypto(v[0], p[:v[1]], dup); err != nil {
				return err
			}
			p = p[v[1]:]
		case frameConnClose:
			return malformed("QUIC client closed the connection in its initial")
		default:
			return fmt.Errorf("sni: QUIC frame type %#x in an initial packet: %w", typ, ErrMalformed)
		}
	}
	return nil
}

// addCrypto copies CRYPTO data at offset into the reassembly buffer. For
// a duplicate packet (dup) it only checks that the data was received.
func (i *Initials) addCrypto(offset uint64, data []byte, dup bool) error {
	end := offset + uint64(len(data))
	if end > uint64(i.maxCrypto()) {
		return fmt.Errorf("sni: QUIC CRYPTO data up to offset %d: %w", end, ErrTooLarge)
	}
	if len(data) == 0 {
		return nil
	}
	from, to := int(offset), int(end)
	if err := i.sameAsReceived(from, to, data); err != nil {
		return err
	}
	if dup {
		if !i.received(from, to) {
			return fmt.Errorf("sni: QUIC CRYPTO bytes %d-%d first sent in a packet number used before: %w: %w", from, to, ErrCryptoConflict, ErrMalformed)
		}
		return nil
	}
	if i.secondEnd > 0 && to > i.secondEnd {
		return fmt.Errorf("sni: QUIC CRYPTO bytes up to %d, past a second ClientHello: %w: %w", to, ErrCryptoConflict, ErrMalformed)
	}
	if to > len(i.crypto) {
		if to > cap(i.crypto) {
			// Growth stops at the cap, so a caller's MaxCryptoBytes also
			// bounds the memory one connection's reassembly holds.
			c := make([]byte, to, max(to, min(max(2*cap(i.crypto), 2048), i.maxCrypto())))
			copy(c, i.crypto)
			i.crypto = c
		}
		i.crypto = i.crypto[:to]
	}
	copy(i.crypto[from:], data)
	return i.mark(from, to)
}

// sameAsReceived checks that data, for CRYPTO stream bytes [from, to),
// agrees with every byte of that range received before. A retransmission
// repeats the same bytes; different ones are an attack on the gateway:
// the origin keeps the bytes it received first (quic-go, for one, drops
// data it already has) while a gateway that let a later copy win would
// decide on a name the origin never sees. Both ends agree only if every
// copy is the same, so a conflict ends the connection.
func (i *Initials) sameAsReceived(from, to int, data []byte) error {
	for _, r := range i.ranges {
		if r.from >= to {
			break
		}
		lo, hi := max(from, r.from), min(to, r.to)
		if lo < hi && !bytes.Equal(i.crypto[lo:hi], data[lo-from:hi-from]) {
			return fmt.Errorf("sni: QUIC CRYPTO bytes %d-%d differ from those received before: %w: %w", lo, hi, ErrCryptoConflict, ErrMalformed)
		}
	}
	return nil
}

// received reports whether every byte of [from, to) was received.
func (i *Initials) received(from, to int) bool {
	for _, r := range i.ranges {
		if r.from <= from {
			if to <= r.to {
				return true
			}
		} else {
			break
		}
	}
	return false
}

// mark records [from, to) as received, merging overlapping and adjacent
// ranges.
func (i *Initials) mark(from, to int) error {
	r := i.ranges
	k := 0
	for k < len(r) && r[k].to < from {
		k++
	}
	j := k
	for j < len(r) && r[j].from <= to {
		from, to = min(from, r[j].from), max(to, r[j].to)
		j++
	}
	if j == k { // no overlap: insert
		if len(r) >= maxSpans {
			return fmt.Errorf("sni: QUIC CRYPTO data in more than %d pieces: %w", maxSpans, ErrTooLarge)
		}
		r = append(r, span{})
		copy(r[k+1:], r[k:])
		r[k] = span{from, to}
	} else {
		r[k] = span{from, to}
		r = append(r[:k+1], r[j:]...)
	}
	i.ranges = r
	return nil
}

// parse parses the contiguous CRYPTO prefix once it holds the whole hello.
func (i *Initials) parse() (Hello, error) {
	if len(i.ranges) == 0 || i.ranges[0].from != 0 {
		return Hello{}, fmt.Errorf("sni: waiting for the start of the QUIC CRYPTO stream: %w: %w", ErrMalformed, io.ErrUnexpectedEOF)
	}
	h, err := ParseHandshake(i.crypto[:i.ranges[0].to])
	if err != nil {
		return Hello{}, err
	}
	// A client sends nothing after its ClientHello in Initial packets
	// until a HelloRetryRequest asks for a second one, and the server has
	// not seen this hello yet: bytes past it now could only be read by the
	// server as something the decision was not made on (Go's TLS stack
	// refuses a connection with bytes buffered past the hello; another
	// could read them as the hello after a retry).
	end := handshakeHeaderLen + (int(i.crypto[1])<<16 | int(i.crypto[2])<<8 | int(i.crypto[3]))
	if i.ranges[0].to > end || len(i.ranges) > 1 {
		return Hello{}, fmt.Errorf("sni: QUIC CRYPTO data past the %d-byte ClientHello: %w: %w", end, ErrCryptoConflict, ErrMalformed)
	}
	i.hello, i.done, i.helloEnd = h, true, end
	return h, nil
}

// parseSecond parses the handshake message after the first hello once it
// is complete: it must be a ClientHello.
func (i *Initials) parseSecond() error {
	if i.secondEnd > 0 || i.ranges[0].to < i.helloEnd+handshakeHeaderLen {
		return nil
	}
	h, err := ParseHandshake(i.crypto[i.helloEnd:i.ranges[0].to])
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sni: QUIC CRYPTO data after the ClientHello: %w", err)
	}
	c := i.crypto[i.helloEnd:]
	end := i.helloEnd + handshakeHeaderLen + (int(c[1])<<16 | int(c[2])<<8 | int(c[3]))
	if i.ranges[0].to > end || len(i.ranges) > 1 {
		return fmt.Errorf("sni: QUIC CRYPTO data past the second ClientHello: %w: %w", ErrCryptoConflict, ErrMalformed)
	}
	i.second, i.secondEnd = h, end
	return nil
}

// SecondHello returns the ClientHello the client sent after the first one
// (after the server's HelloRetryRequest), once Add has read all of it. A
// caller that forwards the connection must decide it too, before
// forwarding the datagram that completed it: the server reads it as the
// connection's hello.
func (i *Initials) SecondHello() (Hello, bool) {
	return i.second, i.secondEnd > 0
}

func (i *Initials) maxPackets() int {
	if i.Options.MaxPackets > 0 {
		return i.Options.MaxPackets
	}
	return DefaultQUICMaxPackets
}

func (i *Initials) maxCrypto() int {
	if i.Options.MaxCryptoBytes > 0 {
		return i.Options.MaxCryptoBytes
	}
	return DefaultQUICMaxCryptoBytes
}

// ParseInitial parses the ClientHello carried by the client Initial
// packets of one datagram. A hello spread over several datagrams needs an
// Initials; for such a datagram the error matches io.ErrUnexpectedEOF.
// The returned strings do not alias datagram.
func ParseInitial(datagram []byte) (Hello, error) {
	var i Initials
	return i.Add(datagram)
}

// InitialOpens reports whether the first packet of datagram is a client
// Initial that decrypts with the client Initial keys of origDCID, the DCID
// of a connection's first Initial. Those keys stay in use after the client
// switches to a server-issued DCID, so a gateway can tell a known
// connection's later Initial from another connection's first one.
func InitialOpens(datagram, origDCID []byte) bool {
	h, ok := ParseQUICHeader(datagram)
	if !ok || !h.Initial {
		return false
	}
	k, err := deriveInitialKeys(h.Version, origDCID, false)
	if err != nil {
		return false
	}
	i := Initials{keys: k, version: h.Version, dcid: h.DCID, largest: -1}
	i.scidLen = copy(i.scid[:], h.SCID)
	i.addPacket(datagram, h)
	return i.packets == 1 && i.opened
}

// readVarint reads a QUIC variable-length integer (RFC 9000 16); n is 0
// when b is too short.
func readVarint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for k := 1; k < n; k++ {
		v = v<<8 | uint64(b[k])
	}
	return v, n
}

// readVarints reads len(out) varints; n is 0 when b is too short.
func readVarints(b []byte, out []uint64) (rest []byte, n int) {
	total := 0
	for k := range out {
		v, m := readVarint(b)
		if m == 0 {
			return b, 0
		}
		out[k], b, total = v, b[m:], total+m
	}
	return b, total
}

// appendVarint appends v (< 2^62) in the shortest QUIC encoding.
func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, 0x40|byte(v>>8), byte(v))
	case v < 1<<30:
		return append(b, 0x80|byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, 0xc0|byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// QUIC transport error codes for AppendInitialClose (RFC 9000 20.1).
const (
	// QUICNoError (0x0) closes without signalling an error.
	QUICNoError uint64 = 0x0
	// QUICAccessDenied is CRYPTO_ERROR for the TLS access_denied alert
	// (0x100 + 49): the handshake failed, which clients treat as a QUIC
	// failure and fall back to TCP.
	QUICAccessDenied uint64 = 0x131
)

// AppendInitialClose appends to dst a server Initial packet that closes the
// connection with a CONNECTION_CLOSE frame (type 0x1c) carrying code and
// reason. origDCID is the DCID of the client's first Initial (the server's
// Initial keys derive from it); dcid is the client's SCID, to which the
// packet is addressed; scid is the connection ID the server picks (the
// client adopts it, so it should be fresh and 8+ bytes). The packet is
// not padded: CONNECTION_CLOSE is not ack-eliciting (RFC 9000 14.1).
func AppendInitialClose(dst []byte, version uint32, origDCID, dcid, scid []byte, code uint64, reason string) ([]byte, error) {
	if version != QUICv1 && version != QUICv2 {
		return dst, fmt.Errorf("sni: QUIC version %#08x: %w", version, ErrQUICVersion)
	}
	if len(dcid) > maxConnIDLen || len(scid) > maxConnIDLen {
		return dst, fmt.Errorf("sni: connection ID over %d bytes: %w", maxConnIDLen, ErrMalformed)
	}
	if len(reason) > 256 {
		reason = reason[:256]
	}
	k, err := deriveInitialKeys(version, origDCID, true)
	if err != nil {
		return dst, err
	}
	var frame []byte
	frame = append(frame, frameConnClose)
	frame = appendVarint(frame, code)
	frame = append(frame, 0) // the frame type that triggered the error: none
	frame = appendVarint(frame, uint64(len(reason)))
	frame = append(frame, reason...)
	const pnLen = 2
	for len(frame) < 4 { // the header protection sample needs 4 bytes past the packet number
		frame = append(frame, framePadding)
	}
	start := len(dst)
	dst = append(dst, 0xc0|typeBits(version, quicInitial)|(pnLen-1))
	dst = binary.BigEndian.AppendUint32(dst, version)
	dst = append(dst, byte(len(dcid)))
	dst = append(dst, dcid...)
	dst = append(dst, byte(len(scid)))
	dst = append(dst, scid...)
	dst = append(dst, 0) // token length
	length := pnLen + len(frame) + aeadTagLen
	dst = append(dst, 0x40|byte(length>>8), byte(length))
	dst = append(dst, 0, 0) // packet number 0
	return sealInitial(dst, start, len(dst)-pnLen, pnLen, 0, frame, k), nil
}

// AppendClientInitial appends to dst a client Initial packet numbered pn
// (4-byte encoding) that carries payload, a sequence of frames, protected
// with the client Initial keys of dcid, the DCID of the connection's first
// Initial, and addressed to dcid. Unless it is already that long, payload
// is padded with PADDING frames until dst holds padTo bytes (1200 for a
// datagram's last packet, RFC 9000 14.1). It is for tests and load tools
// that send what no real client would; payload must not be empty.
func AppendClientInitial(dst []byte, version uint32, dcid, scid []byte, pn uint32, payload []byte, padTo int) ([]byte, error) {
	if version != QUICv1 && version != QUICv2 {
		return dst, fmt.Errorf("sni: QUIC version %#08x: %w", version, ErrQUICVersion)
	}
	if len(dcid) > maxConnIDLen || len(scid) > maxConnIDLen || len(payload) == 0 {
		return dst, fmt.Errorf("sni: connection ID over %d bytes or empty payload: %w", maxConnIDLen, ErrMalformed)
	}
	k, err := deriveInitialKeys(version, dcid, false)
	if err != nil {
		return dst, err
	}
	const pnLen = 4
	start := len(dst)
	hdrLen := 7 + len(dcid) + len(scid) + 1 + 2 + pnLen
	if n := padTo - start - hdrLen - len(payload) - aeadTagLen; n > 0 {
		payload = append(payload[:len(payload):len(payload)], make([]byte, n)...)
	}
	length := pnLen + len(payload) + aeadTagLen
	if length >= 1<<14 {
		return dst, fmt.Errorf("sni: %d-byte QUIC initial: %w", length, ErrTooLarge)
	}
	dst = append(dst, 0xc0|typeBits(version, quicInitial)|(pnLen-1))
	dst = binary.BigEndian.AppendUint32(dst, version)
	dst = append(append(dst, byte(len(dcid))), dcid...)
	dst = append(append(dst, byte(len(scid))), scid...)
	dst = append(dst, 0) // no token
	dst = append(dst, 0x40|byte(length>>8), byte(length))
	dst = binary.BigEndian.AppendUint32(dst, pn)
	return sealInitial(dst, start, len(dst)-pnLen, pnLen, uint64(pn), payload, k), nil
}

// sealInitial encrypts payload as packet number pn after the header in
// dst[start:], whose packet number field of pnLen bytes starts at pnOff,
// and applies header protection.
func sealInitial(dst []byte, start, pnOff, pnLen int, pn uint64, payload []byte, k *initialKeys) []byte {
	nonce := k.nonce(pn)
	hdrEnd := len(dst)
	dst = k.aead.Seal(dst, nonce[:], payload, dst[start:hdrEnd])
	var mask [aes.BlockSize]byte
	k.hp.Encrypt(mask[:], dst[pnOff+4:pnOff+4+hpSampleLen])
	dst[start] ^= mask[0] & 0x0f
	for j := 0; j < pnLen; j++ {
		dst[pnOff+j] ^= mask[1+j]
	}
	return dst
}
