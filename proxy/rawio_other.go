//go:build !linux

package proxy

import "syscall"

// On systems other than Linux a rawIO is its socket's own Read and Write:
// the raw calls and their callbacks are Linux's (rawio_linux.go).

// bind points r at c (nil to let go of it).
func (r *rawIO) bind(c stream) {
	if r.c == c {
		return
	}
	r.c, r.rc, r.lead = c, nil, nil
	r.forget()
	if c != nil {
		r.rc, _ = c.SyscallConn()
	}
}

// Read is net.Conn's Read; what sendThenRead left pending is written
// first.
func (r *rawIO) Read(b []byte) (int, error) {
	if err := r.flushLead(); err != nil {
		return 0, err
	}
	return r.c.Read(b)
}

// waitReadable waits, holding no buffer, until the socket has something to
// read: false when the deadline passed or the socket was closed meanwhile.
func (r *rawIO) waitReadable() bool {
	var one [1]byte
	return r.rc.Read(func(fd uintptr) bool {
		_, errno := peekSocket(fd, one[:])
		return errno != syscall.EAGAIN
	}) == nil
}

// Write is net.Conn's Write: all of b, or an error. What sendThenRead
// left pending goes out first.
func (r *rawIO) Write(b []byte) (int, error) {
	if err := r.flushLead(); err != nil {
		return 0, err
	}
	return r.c.Write(b)
}
