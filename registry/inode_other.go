//go:build !unix

package registry

import "os"

// inodeOf returns zeros: only Unix stat data carries inode numbers, and a
// file is then told apart by its size and modification time alone.
func inodeOf(os.FileInfo) (ino, dev uint64) { return 0, 0 }
