// Package testtool holds what tests that drive real servers from Debian's
// packages share: finding the server's binary, and a free loopback port
// for servers that cannot be handed a listening socket.
package testtool

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// Need returns path, the binary of Debian package pkg. Outside CI a
// missing one skips the test with the command that installs it; under
// CI=true, where .ci/run installs it, it fails the test.
func Need(t testing.TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI must install Debian's %s: see .ci/run)", path, pkg)
		}
		t.Skipf("%s not installed: apt-get install %s", path, pkg)
	}
	return path
}

// FreePort returns a loopback port that was free for TCP and UDP a moment
// ago.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free loopback port")
	return 0
}
