// Package sni reads a TLS ClientHello from a connection without losing any
// of it, so a gateway can decide on the server name and then forward exactly
// the bytes it parsed.
//
// Read reassembles the hello from any number of TLS records and TCP
// segments, under a deadline (Options.Timeout) and a hard byte cap
// (Options.MaxBytes). It returns the parsed Hello and a *Conn that replays
// the consumed bytes before reading on from the socket. Conn implements
// io.WriterTo and io.ReaderFrom and exposes TCPConn, so io.Copy in either
// direction still reaches splice(2) once the replay is drained.
//
// ParseHandshake parses a bare ClientHello handshake message, such as the
// CRYPTO data of a QUIC Initial.
//
// It is a leaf package: it imports only the standard library (its tests
// also use golang.org/x/crypto/cryptobyte).
//
// Usage sketch:
//
//	hello, conn, err := sni.Read(tcpConn, sni.Options{})
//	if err != nil {
//		// errors.Is(err, sni.ErrNotTLS / ErrTooLarge / ErrTimeout / ErrMalformed)
//		// conn is nil when nothing was read, else it holds the bytes read.
//		...
//	}
//	defer conn.Release()      // last: recycles the Conn; hello is invalid after it
//	defer conn.Close()        // closes tcpConn
//	host := hello.ServerName  // "" when the client sent no SNI
//	if pass(host) {
//		io.Copy(upstream, conn) // replays the hello, then splices
//	}
//
// A proxy that handles the two sockets itself writes conn.Buffered() to
// the upstream, calls conn.Release() when it no longer needs the Hello, and
// relays conn.TCPConn().
//
// # Memory and lifetime
//
// The hot path does not allocate: the Conn, its read buffer (8 KiB,
// grown for larger hellos) and the backing arrays of Hello.ALPN and
// Hello.SupportedVersions come from a sync.Pool. Hello.ServerName and the
// ALPN strings alias that buffer. They stay valid until Conn.Release
// returns it to the pool; use Hello.Clone to keep them longer. Release is
// explicit on purpose: the buffer cannot go back when the replay is drained
// (the Conn is still in use then, and the Hello may still be read), nor on
// Close (which another goroutine may call to stop a relay still using the
// Conn). A Conn that is never released is simply collected by the GC.
//
// # Strictness, compared with crypto/tls
//
// A hello is accepted exactly when a crypto/tls server would accept it and
// call Config.GetConfigForClient, and ServerName is then the name
// crypto/tls reports (FuzzAgainstCryptoTLS checks this), with these
// deliberate differences:
//
//   - Every record before the hello is complete must be a handshake record.
//     crypto/tls skips warning alerts before the ClientHello; a gateway has
//     no reason to, so a first record of another type is ErrNotTLS and a
//     later one ErrMalformed.
//   - The bytes consumed are capped by Options.MaxBytes (default 64 KiB,
//     record headers included), so a hello crypto/tls would still read
//     (its own limit is a 64 KiB message, without record headers) can be
//     ErrTooLarge here. A handshake message over 64 KiB is rejected by both
//     (ErrTooLarge here).
//
// Like crypto/tls, ServerName is reported as sent: not lower-cased, and
// possibly holding bytes that are not valid in a hostname (NUL, spaces,
// slashes; a trailing dot is the one thing crypto/tls refuses, and so does
// Read). Validating the name
// is the caller's job (the registry's normalisation rejects such names).
// Two host_name entries, an empty name or an empty list are ErrMalformed, as
// in crypto/tls; entries of another name type are skipped. A malformed
// encrypted_client_hello extension is ErrMalformed, as crypto/tls rejects it
// before GetConfigForClient even without ECH keys.
package sni

import (
	"errors"
	"strings"
	"time"
)

// Defaults for Options.
const (
	// DefaultTimeout bounds the read of a hello when Options.Timeout is zero.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxBytes caps the bytes of a hello, record headers included,
	// when Options.MaxBytes is zero.
	DefaultMaxBytes = 64 << 10
)

// maxHandshake is the largest handshake message crypto/tls reads.
const maxHandshake = 65536

// Sentinel errors returned by Read, for callers to count by kind. Read wraps
// them with context; compare with errors.Is.
var (
	// ErrNotTLS: the first bytes are not a TLS handshake record (HTTP,
	// SSLv2-compatible hello, garbage, a first record of another type).
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrTooLarge: the hello would need more than Options.MaxBytes, or its
	// handshake message is longer than 64 KiB.
	ErrTooLarge = errors.New("client hello exceeds size limit")
	// ErrTimeout: the deadline passed before the hello was complete. The
	// error also matches os.ErrDeadlineExceeded.
	ErrTimeout = errors.New("timed out reading client hello")
	// ErrMalformed: TLS records that do not carry a valid ClientHello.
	ErrMalformed = errors.New("malformed client hello")
)

// Options bound Read. The zero value means the defaults.
type Options struct {
	// Timeout bounds the whole read of the hello. Default 5 s
	// (DefaultTimeout); zero or negative means the default.
	Timeout time.Duration
	// MaxBytes caps the bytes consumed (TLS record headers included).
	// Default 64 KiB (DefaultMaxBytes); zero or negative means the default.
	MaxBytes int
}

// Hello is the part of a ClientHello a gateway acts on.
//
// Hellos returned by Read alias the Conn's pooled buffer: ServerName, the
// ALPN strings and the two slices are valid until that Conn is released.
// Clone makes a copy that owns its memory.
type Hello struct {
	// ServerName is the host_name entry of the server_name extension,
	// exactly as sent (not lower-cased). Empty when absent.
	ServerName string
	// HasSNI reports whether a server_name extension was present.
	HasSNI bool
	// RecordVersion is the legacy version of the first TLS record header,
	// which an alert sent back should carry. Read sets it even on error
	// once a first handshake record header was read; ParseHandshake leaves
	// it zero.
	RecordVersion uint16
	// Version is the legacy_version field of the ClientHello itself.
	Version uint16
	// ALPN lists the offered application protocols.
	ALPN []string
	// SupportedVersions lists the supported_versions extension, if any.
	SupportedVersions []uint16
	// ECH reports an encrypted_client_hello extension (0xfe0d); ServerName
	// is then the outer (public) name. Browsers also send a GREASE ECH
	// extension without any ECH config, so ECH alone does not prove the
	// real name is hidden.
	ECH bool
}

// Clone returns a copy of h that shares no memory with any buffer, for
// keeping a Hello after its Conn is released.
func (h Hello) Clone() Hello {
	c := h
	c.ServerName = strings.Clone(h.ServerName)
	if h.ALPN != nil {
		c.ALPN = make([]string, len(h.ALPN))
		for i, p := range h.ALPN {
			c.ALPN[i] = strings.Clone(p)
		}
	}
	if h.SupportedVersions != nil {
		c.SupportedVersions = append([]uint16(nil), h.SupportedVersions...)
	}
	return c
}
