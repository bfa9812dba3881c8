//go:build !linux

package proxy

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
)

// Without splice(2) the relays copy through user space: io.Copy, which
// uses whatever zero-copy path the system's net package has.

// splicerCache is empty: there are no pipes to keep.
type splicerCache struct{}

func (c *splicerCache) close() {}

// spliceCopy copies src to dst until EOF on src (nil error) or an error,
// adding the bytes moved to count (if any) every relayChunk bytes and at
// the end.
func spliceCopy(_ *splicerCache, dst, src stream, count prometheus.Counter) (int64, error) {
	var total int64
	for {
		n, err := io.CopyN(dst, src, relayChunk)
		total += n
		if count != nil && n > 0 {
			count.Add(float64(n))
		}
		switch {
		case err == io.EOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// spliceRun moves up to n bytes from src to dst, never more; eof reports
// that src ended first.
func spliceRun(_ *splicerCache, dst, src stream, n int64) (moved int64, eof bool, err error) {
	moved, err = io.CopyN(dst, src, n)
	if err == io.EOF {
		return moved, true, nil
	}
	return moved, false, err
}

// rawCloseWrite shuts c's sending side down (a FIN).
func rawCloseWrite(c stream) error { return c.CloseWrite() }
