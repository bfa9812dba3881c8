//go:build !linux

package proxy

import "errors"

// The passthrough engine is built on epoll (engine_linux.go); on other
// systems every listener is served by the goroutine-per-connection path.

var errNoEngine = errors.New("the passthrough engine needs Linux")

// engine is never made on these systems.
type engine struct{}

// engineServes reports false: no engine serves any listener here.
func (rt *listenerRuntime) engineServes() bool { return false }

func (s *Server) engineAccept(*listener) error { return errNoEngine }

func (s *Server) stopEngines() {}

func (s *Server) engineConns() int { return 0 }

func (s *Server) closeEngineConns() int { return 0 }

func (l *listener) leaveEngines() {}

func (l *listener) closeEngineFD() {}

// engineSupported reports why the engines cannot run here.
func engineSupported() error { return errNoEngine }
