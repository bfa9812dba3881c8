package proxy

import "os"

// Performance selects how the data plane serves connections
// (docs/performance.md). The zero value is the default. Both fields are
// read when the Server is made; a Reload keeps the ones it started with.
type Performance struct {
	// Engine is "on" or "off". On, the passthrough engines (one event
	// loop per P) serve the tls listeners, and the http listeners that
	// take no PROXY headers, outside transparent mode; off, or on a
	// system other than Linux or a kernel older than 4.18, every listener
	// is served by a goroutine per connection. Default "": on, unless
	// the environment variable ICPGATE_ENGINE is "off" (which lets a test
	// run or a deployment turn it off without a config change).
	Engine string
	// GatherNaps lets a busy engine nap briefly before it waits, so that
	// events gather (gather_linux.go). Default false: no naps.
	GatherNaps bool
}

// Values of Performance.Engine.
const (
	EngineOn  = "on"
	EngineOff = "off"
)

// engineEnv is the environment variable that turns the engines off when
// Performance.Engine is unset.
const engineEnv = "ICPGATE_ENGINE"

// engineWanted reports whether p asks for the engines.
func (p Performance) engineWanted() bool {
	switch p.Engine {
	case EngineOn:
		return true
	case EngineOff:
		return false
	}
	return os.Getenv(engineEnv) != EngineOff
}

// validate checks p, naming a bad field with bad.
func (p Performance) validate(bad func(field, format string, args ...any) error) error {
	switch p.Engine {
	case "", EngineOn, EngineOff:
	default:
		return bad("performance.engine", "%q: want on or off", p.Engine)
	}
	return nil
}
