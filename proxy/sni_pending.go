package proxy

// TEMPORARY until sni.Read lands (owned by the TLS passthrough engineer;
// deleted as soon as package sni exports Read and Conn).

import (
	"net"

	"github.com/icpgate/icpgate/sni"
)

// helloConn is the part of *sni.Conn serveTLS uses.
type helloConn interface {
	Buffered() []byte
	TCPConn() *net.TCPConn
}

// readHello is sni.Read once it exists.
var readHello = func(c net.Conn, o sni.Options) (sni.Hello, helloConn, error) {
	return sni.Hello{}, nil, sni.ErrNotTLS
}
