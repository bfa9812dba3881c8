//go:build unix

package main

import (
	"os"
	"path/filepath"
	"syscall"
)

// matchDirOwner gives the token file (and its lock file) to the owner of
// its directory when root wrote it: an operator runs `icpgate token create`
// as root, the gateway runs as its own user (systemd DynamicUser owns
// /var/lib/icpgate), and a root-owned 0600 file would lock it out. Errors
// are ignored: the owner is then what it was, as without this.
func matchDirOwner(path string) {
	if os.Geteuid() != 0 {
		return
	}
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return
	}
	st, ok := dir.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return
	}
	for _, p := range []string{path, path + ".lock"} {
		os.Lchown(p, int(st.Uid), int(st.Gid))
	}
}
