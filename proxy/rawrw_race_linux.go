//go:build race

package proxy

import "syscall"

// The engine's reads and writes in a race build: through syscall.Read and
// syscall.Write, which tell the race detector what the kernel read from
// and wrote into b (and order the I/O as package os does), so -race sees
// the engine's buffers as it sees a net.Conn's. They enter the scheduler's
// system-call state, which the raw calls of a normal build avoid.

// rawRead reads into b; 0 bytes with no error is EOF.
func rawRead(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	for {
		n, err := syscall.Read(fd, b)
		if err == syscall.EINTR {
			continue
		}
		return n, errnoOf(err)
	}
}

// rawWriteFD writes b (a part of it when the socket buffer fills).
func rawWriteFD(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	for {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		return n, errnoOf(err)
	}
}

// errnoOf is err as an Errno: 0 for nil.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EINVAL
}
