//go:build race

package proxy

// blockRaceEnabled: the race detector makes sync.Pool drop items at
// random, so allocation counts mean nothing under it.
const blockRaceEnabled = true
