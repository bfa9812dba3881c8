//go:build linux

package origins

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/icpgate/icpgate/internal/testtool"
)

// Nginx runs Debian's nginx (/usr/sbin/nginx, package nginx) as an origin:
// one worker, keep-alive, every request's body read to its end and logged
// (nginx.conf.tmpl).
func Nginx(t testing.TB) *Origin {
	t.Helper()
	bin := testtool.Need(t, "/usr/sbin/nginx", "nginx")
	dir := t.TempDir()
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "tmp", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := testtool.FreePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	render(t, "nginx.conf.tmpl", conf, struct {
		Dir  string
		Port int
		Root bool
	}{dir, port, os.Geteuid() == 0})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// -e: the start-up error log too goes to the temporary directory, not
	// to /var/log/nginx.
	startProcess(t, "nginx", exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")), addr)
	return &Origin{Name: "nginx", Addr: addr, log: fileLog(filepath.Join(dir, "access.log"), parseJSONLine("nginx", false))}
}
