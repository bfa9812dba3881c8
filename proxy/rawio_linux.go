package proxy

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// bind points r at c (nil to let go of it).
func (r *rawIO) bind(c stream) {
	if r.c == c {
		return
	}
	r.c, r.rc, r.lead = c, nil, nil
	r.forget()
	if c != nil {
		r.rc, _ = c.SyscallConn() // never fails for an open *net.TCPConn or sockConn
	}
	if r.readFn == nil {
		r.readFn = func(fd uintptr) bool {
			n, errno := rawRead(int(fd), r.b)
			if errno == unix.EAGAIN {
				return false
			}
			r.n, r.errno = n, errno
			return true
		}
		r.leadFn = func(fd uintptr) bool {
			if r.lead == nil {
				return r.readFn(fd)
			}
			if full, errno := writeOn(int(fd), r.lead, &r.leadN); full || errno != 0 {
				r.errno = errno
				return true // full: Read finishes with Write
			}
			// Sent. The answer cannot have come yet, and the poller
			// readiness was cleared before the write, so wait for it
			// rather than read into EAGAIN first.
			r.lead = nil
			return false
		}
		r.peekFn = func(fd uintptr) bool {
			_, errno := rawPeek(int(fd))
			return errno != unix.EAGAIN
		}
		r.writeFn = func(fd uintptr) bool {
			full, errno := writeOn(int(fd), r.b, &r.n)
			r.errno = errno
			return !full // full: wait for room
		}
	}
}

// writeOn writes b[*off:] to fd, advancing *off, until all is written, the
// socket is full (full: EAGAIN) or a write fails (errno).
func writeOn(fd int, b []byte, off *int) (full bool, errno syscall.Errno) {
	for *off < len(b) {
		n, e := rawWriteFD(fd, b[*off:])
		switch {
		case e == unix.EAGAIN:
			return true, 0
		case e != 0:
			return false, e
		}
		*off += n
	}
	return false, 0
}

// Read is net.Conn's Read.
func (r *rawIO) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r.b, r.n, r.errno = b, 0, 0
	fn := r.readFn
	if r.lead != nil {
		fn = r.leadFn
	}
	err := r.rc.Read(fn)
	if r.lead != nil && err == nil {
		if r.errno != 0 {
			r.lead = nil // the write failed: nothing more goes out
		} else {
			// The socket took only part of lead: write the rest waiting
			// for room, then read as usual.
			if werr := r.flushLead(); werr != nil {
				return 0, werr
			}
			r.b, r.n, r.errno = b, 0, 0
			err = r.rc.Read(r.readFn)
		}
	}
	r.b = nil
	switch {
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
	case r.errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", r.errno)}
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// waitReadable waits, holding no buffer, until the socket has something to
// read (bytes, EOF or an error): false when the deadline passed or the
// socket was closed meanwhile.
func (r *rawIO) waitReadable() bool {
	return r.rc.Read(r.peekFn) == nil
}

// Write is net.Conn's Write: all of b, or an error. What sendThenRead
// left pending goes out first.
func (r *rawIO) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if err := r.flushLead(); err != nil {
		return 0, err
	}
	r.b, r.n, r.errno = b, 0, 0
	err := r.rc.Write(r.writeFn)
	n := r.n
	r.b = nil
	switch {
	case err != nil:
		return n, &net.OpError{Op: "write", Net: "tcp", Err: err}
	case r.errno != 0:
		return n, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", r.errno)}
	}
	return n, nil
}
