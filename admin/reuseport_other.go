//go:build !unix

package admin

import "syscall"

// reusePort leaves the admin socket with the system's defaults: there is
// no SO_REUSEPORT here.
func reusePort(string, string, syscall.RawConn) error { return nil }
