//go:build !linux

package adminstore

import "os"

// idOf identifies fi by its size and modification time only: the inode,
// device and change time are read from Linux's stat (fileid_linux.go).
func idOf(fi os.FileInfo) fileID {
	return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
