package proxy

// TEMPORARY until sni.Read lands (owned by the TLS passthrough engineer;
// deleted as soon as package sni exports Read and Conn). Meanwhile it reads
// the hello with crypto/tls so the Server can be tested end to end.

import (
	"errors"
	"net"
	"strings"
	"time"

	"crypto/tls"

	"github.com/icpgate/icpgate/sni"
)

// helloConn is the part of *sni.Conn serveTLS uses.
type helloConn interface {
	Buffered() []byte
	TCPConn() *net.TCPConn
}

type pendingConn struct {
	net.Conn
	tc  *net.TCPConn
	buf []byte
}

func (p *pendingConn) Read(b []byte) (int, error) {
	n, err := p.tc.Read(b)
	p.buf = append(p.buf, b[:n]...)
	return n, err
}
func (p *pendingConn) Write(b []byte) (int, error) { return len(b), nil }
func (p *pendingConn) Buffered() []byte            { return p.buf }
func (p *pendingConn) TCPConn() *net.TCPConn       { return p.tc }

var errPendingGot = errors.New("got hello")

// readHello is sni.Read once it exists.
var readHello = func(c net.Conn, o sni.Options) (sni.Hello, helloConn, error) {
	pc := &pendingConn{Conn: c, tc: c.(*net.TCPConn)}
	var h sni.Hello
	pc.SetReadDeadline(time.Now().Add(o.Timeout))
	err := tls.Server(pc, &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		h.ServerName = chi.ServerName
		return nil, errPendingGot
	}}).Handshake()
	pc.SetReadDeadline(time.Time{})
	if len(pc.buf) >= 3 {
		h.RecordVersion = uint16(pc.buf[1])<<8 | uint16(pc.buf[2])
	}
	switch {
	case errors.Is(err, errPendingGot):
		return h, pc, nil
	case errors.Is(err, errors.ErrUnsupported):
		return h, nil, err
	case err != nil && strings.Contains(err.Error(), "does not look like a TLS handshake"):
		return h, nil, sni.ErrNotTLS
	case err != nil && strings.Contains(err.Error(), "timeout"):
		return h, nil, sni.ErrTimeout
	}
	return h, nil, err
}
