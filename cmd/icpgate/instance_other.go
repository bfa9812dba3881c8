//go:build !linux

package main

import (
	"errors"
	"log/slog"
)

// instance does nothing outside Linux: the claims are Linux abstract unix
// sockets, so there a second instance is not refused, and there is no
// upgrade handshake.
type instance struct{}

// claimInstance claims nothing; --upgrade is refused, since there is no
// running instance it could ask to drain.
func claimInstance(_ *Config, upgrade bool, _ *slog.Logger) (*instance, error) {
	if upgrade {
		return nil, errors.New("--upgrade needs Linux; here, stop the running instance (SIGTERM drains it), then start the new one")
	}
	return &instance{}, nil
}

func (*instance) takeOver(func() (bool, string)) {}

func (*instance) drainRequested() <-chan struct{} { return nil }

func (*instance) upgradeFailed() <-chan error { return nil }

func (*instance) release() {}

func (*instance) close() {}
