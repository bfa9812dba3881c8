package proxy

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw system calls of the passthrough engine (engine_linux.go). Every one of
// them is non-blocking on a non-blocking descriptor, so it is issued with
// RawSyscall: the goroutine never enters the scheduler's system-call state,
// which is what wakes the runtime's monitor thread and hands the P to
// another thread (see the top of splice_linux.go). Each retries EINTR itself.

func rawCall(trap, a1, a2, a3 uintptr) (uintptr, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(trap, a1, a2, a3)
		if e != unix.EINTR {
			return r, e
		}
	}
}

func rawCall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (uintptr, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
		if e != unix.EINTR {
			return r, e
		}
	}
}

// rawClose closes fd. close(2) of a socket never blocks unless SO_LINGER
// has a timeout, which the engine never sets.
func rawClose(fd int) {
	syscall.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawShutdownWrite(fd int) syscall.Errno {
	_, e := rawCall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
	return e
}

// rawAccept accepts one connection on the listening socket fd, non-blocking
// and close-on-exec, and returns its peer address (unmapped).
func rawAccept(fd int) (int, netip.AddrPort, syscall.Errno) {
	var sa unix.RawSockaddrAny
	l := uint32(unix.SizeofSockaddrAny)
	r, e := rawCall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(r), sockaddrAddrPort(&sa), 0
}

// rawLocalAddr returns the local address of the socket fd (unmapped).
func rawLocalAddr(fd int) netip.AddrPort {
	var sa unix.RawSockaddrAny
	l := uint32(unix.SizeofSockaddrAny)
	if _, e := rawCall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l))); e != 0 {
		return netip.AddrPort{}
	}
	return sockaddrAddrPort(&sa)
}

// sockaddrAddrPort decodes an AF_INET or AF_INET6 socket address; a
// v4-mapped IPv6 address comes back as IPv4.
func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// rawConnect starts a non-blocking connection to addr from a new socket.
// It returns the socket and 0 when connected at once (loopback can be), or
// EINPROGRESS when the connection completes later (wait for writability:
// the first write reports a failed connect, see engine.connected); on any
// other error the socket is already closed.
func rawConnect(addr netip.AddrPort) (int, syscall.Errno) {
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	r, e := rawCall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	// As Go's dialer does: small relayed messages go out at once.
	one := int32(1)
	rawCall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
	var sa unix.RawSockaddrAny
	var l uintptr
	port := addr.Port()
	if family == unix.AF_INET {
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		p.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&p.Port))[:], port)
		p.Addr = addr.Addr().As4()
		l = unix.SizeofSockaddrInet4
	} else {
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
		p.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&p.Port))[:], port)
		p.Addr = addr.Addr().As16()
		l = unix.SizeofSockaddrInet6
	}
	_, e = rawCall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), l)
	if e != 0 && e != unix.EINPROGRESS {
		rawClose(fd)
		return -1, e
	}
	return fd, e
}

// rawResetClose closes fd with an RST (SO_LINGER 0): the "reset" block.
func rawResetClose(fd int) {
	lg := unix.Linger{Onoff: 1, Linger: 0}
	rawCall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER, uintptr(unsafe.Pointer(&lg)), unsafe.Sizeof(lg), 0)
	rawClose(fd)
}

// Edge-triggered interest: a socket is registered for reading (epollIn)
// and gains EPOLLOUT (epollAll) at most once, the first time a write finds
// its buffer full (engine.watchOut); the engine keeps its own readiness
// flags.
const (
	epollIn  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
	epollAll = epollIn | unix.EPOLLOUT
)

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) syscall.Errno {
	_, e := rawCall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// rawEpollPoll collects the ready events of epfd without waiting
// (timeout 0), retrying EINTR: the parker (park_linux.go) and the engines
// wait in the runtime's poller, on the epoll descriptor itself, and then
// collect with this.
func rawEpollPoll(epfd int, evs []unix.EpollEvent) (int, syscall.Errno) {
	r, e := rawCall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	return int(r), e
}

// rawSetNoDelay sets TCP_NODELAY on fd; turning it on sends what is queued.
func rawSetNoDelay(fd int, on bool) {
	v := int32(0)
	if on {
		v = 1
	}
	rawCall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&v)), 4, 0)
}

// rawSetRcvLowat sets SO_RCVLOWAT of fd: the kernel reports the socket
// readable (wakes its reader) only once n bytes are queued, or its window
// is nearly full, or the peer has closed.
func rawSetRcvLowat(fd, n int) {
	v := int32(n)
	rawCall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, uintptr(unsafe.Pointer(&v)), 4, 0)
}

// rawPeek looks at the next byte of fd without taking it: 1, 0 at EOF, or
// an errno (EAGAIN: nothing pending).
func rawPeek(fd int) (int, syscall.Errno) {
	var b [1]byte
	r, e := rawCall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return int(r), e
}
