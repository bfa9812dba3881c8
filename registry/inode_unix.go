//go:build unix

package registry

import (
	"os"
	"syscall"
)

// inodeOf returns the inode and device numbers of the file fi describes,
// zero when fi carries no stat data.
func inodeOf(fi os.FileInfo) (ino, dev uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino), uint64(st.Dev)
	}
	return 0, 0
}
