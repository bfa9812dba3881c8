// Package sni reads a TLS ClientHello from a connection without consuming
// it, so a gateway can decide on the server name and then forward exactly the
// bytes it parsed.
//
// It is a leaf package: it imports only the standard library and
// golang.org/x/crypto.
//
// Usage sketch:
//
//	hello, conn, err := sni.Read(tcpConn, sni.Options{})
//	if err != nil { ... errors.Is(err, sni.ErrNotTLS) ... }
//	defer conn.Close()
//	host := hello.ServerName // "" when the client sent no SNI
//	// pass: io.Copy(upstream, conn) replays the hello, then splices.
package sni

import (
	"errors"
	"time"
)

// Defaults for Options.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultMaxBytes = 64 << 10
)

// Sentinel errors returned by Read, for callers to count by kind.
var (
	ErrNotTLS    = errors.New("not a TLS handshake")
	ErrTooLarge  = errors.New("client hello exceeds size limit")
	ErrTimeout   = errors.New("timed out reading client hello")
	ErrMalformed = errors.New("malformed client hello")
)

// Options bound Read. The zero value means the defaults.
type Options struct {
	// Timeout bounds the whole read of the hello. Default 5 s.
	Timeout time.Duration
	// MaxBytes caps the bytes consumed (TLS record headers included).
	// Default 64 KiB.
	MaxBytes int
}

// Hello is the part of a ClientHello a gateway acts on.
type Hello struct {
	// ServerName is the host_name entry of the server_name extension,
	// exactly as sent (not lower-cased). Empty when absent.
	ServerName string
	// HasSNI reports whether a server_name extension was present.
	HasSNI bool
	// RecordVersion is the legacy version of the first TLS record header,
	// which an alert sent back should carry.
	RecordVersion uint16
	// ALPN lists the offered application protocols.
	ALPN []string
	// SupportedVersions lists the supported_versions extension, if any.
	SupportedVersions []uint16
	// ECH reports an encrypted_client_hello extension (0xfe0d); ServerName
	// is then the outer (public) name.
	ECH bool
}
