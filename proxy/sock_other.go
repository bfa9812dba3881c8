//go:build !linux

package proxy

// What the goroutine-per-connection path does on systems other than
// Linux, where the socket options of sock_linux.go do not exist: listening
// sockets get the system's defaults, transparent mode is refused by
// validation, and a relay's idle timeout is not checked (see tcpInactive).

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// transparentSupported: transparent mode needs IP_TRANSPARENT and
// SO_ORIGINAL_DST, which only Linux has.
const transparentSupported = false

// errNoTransparent: see transparentSupported.
var errNoTransparent = errors.New("transparent mode needs Linux")

// deferAccept does nothing: TCP_DEFER_ACCEPT is Linux's. A handler's first
// read then waits for the client's first bytes in the poller.
func deferAccept(*net.TCPListener) error { return nil }

// listenControl leaves a listening socket with the system's defaults.
func listenControl(string, string, syscall.RawConn) error { return nil }

// reusePortControl leaves a quic socket with the system's defaults.
func reusePortControl(string, string, syscall.RawConn) error { return nil }

func transparentControl(string, string, syscall.RawConn) error { return errNoTransparent }

func getOriginalDst(int, bool) (netip.AddrPort, error) { return netip.AddrPort{}, errNoTransparent }

// tcpInactive reports no inactivity: without TCP_INFO the kernel keeps no
// clock of a socket's last progress, and the relays copy without per-read
// deadlines, so a relay's idle timeout is not enforced on these systems
// (the drain still ends every relay).
func tcpInactive(syscall.Conn) (time.Duration, error) { return 0, nil }

// peerClosed reports false: without TCP_INFO the socket's state is not
// known, and a peek that waits for more bytes ends at its deadline.
func peerClosed(int) bool { return false }

// rawPeek looks at the next byte of fd without taking it: 1, 0 at EOF, or
// an errno (EAGAIN: nothing pending).
func rawPeek(fd int) (int, syscall.Errno) {
	var b [1]byte
	return peekSocket(uintptr(fd), b[:])
}
