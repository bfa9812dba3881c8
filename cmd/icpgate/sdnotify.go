//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sdNotify sends state to the service manager when it asked for it
// ($NOTIFY_SOCKET, set by systemd for Type=notify units): READY=1 once the
// listeners are bound and serving, RELOADING=1 for the length of a SIGHUP
// reload, STOPPING=1 when the drain starts. Without $NOTIFY_SOCKET it does
// nothing. A failure is logged, never fatal: the gateway serves whether or
// not the manager heard it.
func sdNotify(log *slog.Logger, state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		_, err = c.Write([]byte(state))
		c.Close()
	}
	if err != nil {
		log.Warn("notifying the service manager", "state", state, "error", err.Error())
	}
}

// sdReloading is the RELOADING=1 message: systemd (253+) wants the
// CLOCK_MONOTONIC time with it, to tell this reload from an older one.
func sdReloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1\nSTATUS=reloading"
	}
	usec := ts.Sec*int64(time.Second/time.Microsecond) + ts.Nsec/int64(time.Microsecond)
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading", usec)
}
