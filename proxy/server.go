package proxy

// Config is everything the data plane runs with. PLACEHOLDER contract: the
// Server below is being implemented.
type Config struct {
	// Node names this gateway on block pages and in logs.
	Node      string
	Listeners []ListenerConfig
	Policy    Policy
	Timeouts  Timeouts
	Limits    Limits
}
