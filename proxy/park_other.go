//go:build !linux

package proxy

// parker parks nothing on systems other than Linux: an idle keep-alive
// client keeps its handler goroutine, waiting in the poller.
type parker struct{ s *Server }

// enabled reports false: no connection is parked.
func (p *parker) enabled() bool { return false }

func (p *parker) park(*parkedConn) bool { return false }

func (p *parker) parked() int { return 0 }

func (p *parker) drain() {}

func (p *parker) close() {}
