//go:build linux

package origins

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/syncbuf"

	"github.com/icpgate/icpgate/internal/testtool"
)

// Node runs Node.js's http module (/usr/bin/node, Debian package nodejs)
// as an origin (origin.js).
func Node(t testing.TB) *Origin {
	t.Helper()
	bin := testtool.Need(t, "/usr/bin/node", "nodejs")
	dir := t.TempDir()
	script, logPath := filepath.Join(dir, "origin.js"), filepath.Join(dir, "access.log")
	copyFile(t, "origin.js", script)
	cmd := exec.Command(bin, script, logPath)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	exited := spawn(t, "node", cmd, &out)
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		port <- strings.TrimSpace(line)
	}()
	var p string
	select {
	case p = <-port:
	case <-time.After(15 * time.Second):
		t.Fatal("node did not print its port within 15s")
	}
	if p == "" {
		t.Fatalf("node exited before listening (%v):\n%s", <-exited, out.String())
	}
	return &Origin{Name: "node", Addr: fmt.Sprintf("127.0.0.1:%s", p), log: fileLog(logPath, parseJSONLine("node", false))}
}
