package main

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpEstablished is TCP_ESTABLISHED of the kernel's include/net/tcp_states.h,
// the tcpi_state of an open connection.
const tcpEstablished = 1

// established reports whether c's socket is still in TCP state ESTABLISHED:
// a peer that closed (FIN: CLOSE_WAIT) or reset (CLOSE) it no longer holds
// the connection, even if unread bytes are waiting.
func established(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return false
	}
	return info.State == tcpEstablished
}

// raiseNofile makes RLIMIT_NOFILE at least need: the soft limit up to the
// hard one, and the hard one too when the process may (CAP_SYS_RESOURCE).
func raiseNofile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	want := syscall.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d (soft %d, hard %d): %w; raise the hard limit (ulimit -Hn as root) or lower -c",
			need, lim.Cur, lim.Max, err)
	}
	return nil
}
