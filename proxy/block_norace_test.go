//go:build !race

package proxy

const blockRaceEnabled = false
