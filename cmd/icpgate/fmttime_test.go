package main

import (
	"testing"
	"time"
)

// TestFmtTime: the admin commands print times on the configured clock
// with its offset, not the machine's zone.
func TestFmtTime(t *testing.T) {
	at := time.Date(2026, 12, 8, 4, 30, 5, 0, time.UTC)
	if got, want := fmtTime(&at), "2026-12-08 12:30 +08:00"; got != want {
		t.Errorf("default zone: got %q, want %q", got, want)
	}
	saved := displayZone.Load()
	t.Cleanup(func() { displayZone.Store(saved) })
	displayZone.Store(mustZone("America/St_Johns"))
	if got, want := fmtTime(&at), "2026-12-08 01:00 -03:30"; got != want {
		t.Errorf("configured zone: got %q, want %q", got, want)
	}
	if got := fmtTime(nil); got != "never" {
		t.Errorf("nil: got %q, want never", got)
	}
}
