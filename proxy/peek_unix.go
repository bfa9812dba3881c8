//go:build unix && !linux

package proxy

import "syscall"

// msgTrunc is the flag a UDP read reports for a datagram longer than the
// buffer.
const msgTrunc = syscall.MSG_TRUNC

// peekSocket copies the next bytes of the non-blocking socket fd into b
// without taking them off it: the count, 0 at EOF, or an errno (EAGAIN:
// nothing pending).
func peekSocket(fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch e, _ := err.(syscall.Errno); {
		case err == nil:
			return n, 0
		case e == syscall.EINTR:
			continue
		case e != 0:
			return 0, e
		default:
			return 0, syscall.EINVAL
		}
	}
}
