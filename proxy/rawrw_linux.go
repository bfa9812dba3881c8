//go:build !race

package proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The engine's reads and writes, issued raw (see rawsys_linux.go). A race
// build uses rawrw_race_linux.go instead.

// rawRead reads into b; 0 bytes with no error is EOF.
func rawRead(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	r, e := rawCall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), e
}

// rawWriteFD writes b (a part of it when the socket buffer fills).
func rawWriteFD(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	r, e := rawCall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), e
}
