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

// Apache runs Debian's Apache httpd (/usr/sbin/apache2, package apache2)
// standalone as an origin: event MPM, one child process, keep-alive, a
// mod_lua handler and input filter (apache.conf.tmpl, origin.lua).
func Apache(t testing.TB) *Origin {
	t.Helper()
	bin := testtool.Need(t, "/usr/sbin/apache2", "apache2")
	dir := t.TempDir()
	root := os.Geteuid() == 0
	if root {
		// The child runs as www-data (httpd refuses to serve as root) and
		// must reach origin.lua: open the test's directories to it.
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	port := testtool.FreePort(t)
	conf := filepath.Join(dir, "httpd.conf")
	render(t, "apache.conf.tmpl", conf, struct {
		Dir, Modules string
		Port         int
		Root         bool
	}{dir, "/usr/lib/apache2/modules", port, root})
	copyFile(t, "origin.lua", filepath.Join(dir, "origin.lua"))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startProcess(t, "apache2", exec.Command(bin, "-f", conf, "-DFOREGROUND"), addr)
	return &Origin{Name: "apache", Addr: addr, log: fileLog(filepath.Join(dir, "access.log"), parseJSONLine("apache", true))}
}
