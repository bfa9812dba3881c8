//go:build !linux

package main

import "log/slog"

// sdNotify does nothing where there is no systemd.
func sdNotify(*slog.Logger, string) {}

func sdReloading() string { return "" }
