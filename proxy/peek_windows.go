package proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// msgTrunc is the flag a UDP read reports for a datagram longer than the
// buffer.
const msgTrunc = windows.MSG_TRUNC

// peekSocket copies the next bytes of the socket fd into b without taking
// them off it: the count, or an errno (EAGAIN: nothing pending). Windows
// sockets have no MSG_DONTWAIT, so FIONREAD says first whether bytes are
// waiting. It never reports EOF: a peek that waits for more bytes after
// the peer closed ends at its deadline.
func peekSocket(fd uintptr, b []byte) (int, syscall.Errno) {
	var avail, got uint32
	if err := windows.WSAIoctl(windows.Handle(fd), fionread, nil, 0, (*byte)(unsafe.Pointer(&avail)), 4, &got, nil, 0); err != nil {
		return 0, errnoOf(err)
	}
	if avail == 0 {
		return 0, syscall.EAGAIN
	}
	n, _, err := windows.Recvfrom(windows.Handle(fd), b[:min(int(avail), len(b))], windows.MSG_PEEK)
	if err != nil {
		return 0, errnoOf(err)
	}
	return n, 0
}

// fionread is FIONREAD (winsock2.h), which golang.org/x/sys/windows does
// not define.
const fionread = 0x4004667f

func errnoOf(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EINVAL
}
