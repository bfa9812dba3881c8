package proxy

// Socket options and queries of the goroutine-per-connection path that
// only Linux has: TCP_DEFER_ACCEPT and the keep-alive timers on listening
// sockets, transparent mode (IP_TRANSPARENT, SO_ORIGINAL_DST), TCP_INFO
// for idle checks, and a peek that never blocks. sock_other.go has what
// other systems do instead.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// transparentSupported: transparent mode works here (see sock_other.go).
const transparentSupported = true

// msgTrunc is the flag a UDP read reports for a datagram longer than the
// buffer.
const msgTrunc = unix.MSG_TRUNC

// reusePortControl sets SO_REUSEPORT on a socket before bind: a quic
// listener's, like the TCP listeners' (listenControl).
func reusePortControl(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err == nil && serr != nil {
		err = fmt.Errorf("setting SO_REUSEPORT: %w", serr)
	}
	return err
}

// peekSocket copies the next bytes of the non-blocking socket fd into b
// without taking them off it: the count, 0 at EOF, or an errno (EAGAIN:
// nothing pending). It is issued raw (rawsys_linux.go): it never blocks.
func peekSocket(fd uintptr, b []byte) (int, syscall.Errno) {
	r, e := rawCall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return int(r), e
}

// deferAccept makes the kernel complete a connection's handshake but queue
// it for accept only once its first bytes have arrived (TCP_DEFER_ACCEPT,
// nginx's "deferred", HAProxy's "defer-accept"). The accepting side then
// finds the ClientHello or request head already there: the passthrough
// engine reads it in the turn that accepts, and a handler's first read
// does not wait, so a new connection costs one poller wake-up fewer. A
// client that connects and stays silent costs a request socket in the
// kernel, not a descriptor and a connection slot here.
func deferAccept(ln *net.TCPListener) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting TCP_DEFER_ACCEPT: %w", serr)
	}
	return nil
}

// listenControl sets SO_REUSEPORT and the inherited keep-alive options on a
// listening socket before bind.
func listenControl(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, o := range []struct {
			level, name, value int
			what               string
		}{
			{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "SO_REUSEPORT"},
			// Inherited by accepted sockets: the passthrough engine
			// relays small messages at once without a setsockopt each.
			{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1, "TCP_NODELAY"},
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdleSeconds, "TCP_KEEPIDLE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveIntervalSeconds, "TCP_KEEPINTVL"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount, "TCP_KEEPCNT"},
		} {
			if err := unix.SetsockoptInt(int(fd), o.level, o.name, o.value); err != nil {
				serr = fmt.Errorf("setting %s: %w", o.what, err)
				return
			}
		}
	})
	if err == nil {
		err = serr
	}
	return err
}

// transparentControl makes a socket IP_TRANSPARENT (IPV6_TRANSPARENT for
// tcp6), so that it may bind a non-local address (spoofed source) or accept
// connections TPROXY delivers. It needs CAP_NET_ADMIN (or CAP_NET_RAW).
func transparentControl(network, address string, c syscall.RawConn) error {
	level, opt, name := unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
	if network == "tcp6" {
		level, opt, name = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), level, opt, 1); e != nil {
			serr = fmt.Errorf("setting %s (needs CAP_NET_ADMIN): %w", name, e)
		}
	})
	if err == nil {
		err = serr
	}
	return err
}

// getOriginalDst reads SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST
// (IPv6): the destination conntrack recorded before NAT REDIRECT rewrote
// it. golang.org/x/sys has no getsockopt returning a sockaddr, hence the
// raw call with exactly the length the kernel expects.
func getOriginalDst(fd int, v6 bool) (netip.AddrPort, error) {
	if !v6 {
		var sa unix.RawSockaddrInet4
		l := uint32(unix.SizeofSockaddrInet4)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST,
			uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", e)
		}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1])), nil
	}
	var sa unix.RawSockaddrInet6
	l := uint32(unix.SizeofSockaddrInet6)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IPV6, ip6tSOOriginalDst,
		uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return netip.AddrPort{}, fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", e)
	}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return unmapAddrPort(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(p[0])<<8|uint16(p[1]))), nil
}

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h),
// which golang.org/x/sys does not define; it has the same value as
// SO_ORIGINAL_DST, at level SOL_IPV6.
const ip6tSOOriginalDst = 80

// errNoTCPInfo reports a socket whose TCP_INFO could not be read.
var errNoTCPInfo = errors.New("reading TCP_INFO")

// tcpInactive reports how long c has seen no progress: the time since it
// last received data, or, while it has data in flight or queued to send (a
// slow reader), since it last received an ACK, whichever is more recent.
// The kernel keeps these with jiffy resolution; that is ample for an idle
// timeout.
func tcpInactive(c syscall.Conn) (time.Duration, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errNoTCPInfo, err)
	}
	var info *unix.TCPInfo
	var serr error
	err = rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errNoTCPInfo, err)
	}
	ms := info.Last_data_recv
	if (info.Unacked > 0 || info.Notsent_bytes > 0) && info.Last_ack_recv < ms {
		ms = info.Last_ack_recv
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// peerClosed reports whether the peer of a TCP socket has closed its side
// (the socket is in CLOSE_WAIT).
func peerClosed(fd int) bool {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && info.State == unix.BPF_TCP_CLOSE_WAIT
}
