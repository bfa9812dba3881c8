package proxy

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// sockConn is an accepted socket the engine has already read from, handed
// to a handler goroutine.
//
// Why not net.FileConn: it duplicates the descriptor, then asks the kernel
// for the socket's type, both addresses and its flags twice, and sets
// keep-alive options: about a dozen system calls for every passing HTTP
// connection handed over, which one accepted by the accept loop does not
// pay. An
// *os.File of the non-blocking socket joins the runtime poller with one
// fcntl and one epoll_ctl; it has the poller's deadlines, its RawConn and
// Close, so it serves the handler as net.Conn does. TCP_NODELAY comes from
// the listening socket (accepted sockets inherit it, see
// engine.addListener); the local address is asked for only when used.
type sockConn struct {
	f     *os.File
	local netip.AddrPort // the listener's address when bound to one, else asked for once
	peer  netip.AddrPort
}

// newSockConn makes a sockConn of the accepted socket fd. local is its
// address when known (the listener's, bound to one: engListener.local);
// invalid, LocalAddr asks the kernel.
func newSockConn(fd int, local, peer netip.AddrPort) (*sockConn, error) {
	f := os.NewFile(uintptr(fd), "tcp")
	if f == nil {
		rawClose(fd)
		return nil, os.ErrInvalid
	}
	return &sockConn{f: f, local: local, peer: peer}, nil
}

func (c *sockConn) Read(b []byte) (int, error)  { return c.f.Read(b) }
func (c *sockConn) Write(b []byte) (int, error) { return c.f.Write(b) }
func (c *sockConn) Close() error                { return c.f.Close() }

func (c *sockConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *sockConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *sockConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// SyscallConn returns the socket's RawConn: its Read and Write wait in the
// runtime poller, like a net.Conn's.
func (c *sockConn) SyscallConn() (syscall.RawConn, error) { return c.f.SyscallConn() }

// CloseWrite shuts the sending side down (a FIN).
func (c *sockConn) CloseWrite() error { return rawCloseWrite(c.f) }

func (c *sockConn) LocalAddr() net.Addr {
	if !c.local.IsValid() {
		if rc, err := c.f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { c.local = rawLocalAddr(int(fd)) })
		}
	}
	return net.TCPAddrFromAddrPort(c.local)
}

func (c *sockConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.peer) }
