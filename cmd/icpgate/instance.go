package main

// One live icpgate per address. Every listener sets SO_REUSEPORT (so that
// an upgrade can overlap two processes), which also means the kernel lets
// a second icpgate started by mistake bind the same ports and quietly
// take half the traffic. serve therefore claims each fixed address it is
// about to serve before it loads or binds anything, and refuses to start
// when a live instance holds one, naming that instance. An upgrade says
// so (serve --upgrade) and replaces the holders instead:
//
//	icpgate serve -config FILE            refused while another icpgate serves an address of FILE
//	icpgate serve -config FILE --upgrade  start beside it, then have it drain and exit
//
// The claims are Linux abstract unix sockets (instance_linux.go); on other
// systems there is no guard (instance_other.go). This file holds what both
// share: which addresses are claimed, and the messages of the handshake.

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// claimAddr is a fixed address (port not 0) an instance serves, in a
// canonical form: two configs that bind the same socket give the same
// claimAddr whatever their spelling.
type claimAddr struct {
	network string // "tcp" or "udp"
	// host is the IP literal bound, or "*" for any address: "", "0.0.0.0"
	// and "::" all bind Go's dual-stack wildcard socket.
	host string
	port int
}

// String is the address as messages show it: "tcp 127.0.0.1:8080".
func (a claimAddr) String() string {
	return a.network + " " + net.JoinHostPort(a.host, strconv.Itoa(a.port))
}

// claimPrefix starts every claim's socket name.
const claimPrefix = "@icpgate/"

// name is the abstract unix socket name of the claim on a:
// "@icpgate/tcp/127.0.0.1:8080", "@icpgate/udp/*:443".
func (a claimAddr) name() string {
	return claimPrefix + a.network + "/" + net.JoinHostPort(a.host, strconv.Itoa(a.port))
}

// parseClaimName is the inverse of name; ok is false for other names.
func parseClaimName(s string) (a claimAddr, ok bool) {
	rest, ok := strings.CutPrefix(s, claimPrefix)
	if !ok {
		return a, false
	}
	network, hostport, ok := strings.Cut(rest, "/")
	if !ok || (network != "tcp" && network != "udp") {
		return a, false
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return a, false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return a, false
	}
	return claimAddr{network: network, host: host, port: p}, true
}

// overlaps reports whether a and b are different claims on sockets that
// would share traffic: the same port, and one of them on any address.
// Equal claims are caught by the kernel (one name, one holder).
func (a claimAddr) overlaps(b claimAddr) bool {
	return a.network == b.network && a.port == b.port && a.host != b.host && (a.host == "*" || b.host == "*")
}

// instanceAddrs lists the fixed addresses cfg serves, in config order,
// each once: the data-plane listeners (quic ones on udp) and the admin
// listener. An address with port 0 gets a fresh port, unique by
// construction, and is not claimed; nor is one that does not resolve,
// which fails at bind with the resolver's own error.
func instanceAddrs(cfg *Config) []claimAddr {
	var out []claimAddr
	add := func(network, address string) {
		a, ok := canonicalAddr(network, address)
		if ok && !containsAddr(out, a) {
			out = append(out, a)
		}
	}
	for _, l := range cfg.Listeners {
		network := "tcp"
		if l.Protocol == "quic" {
			network = "udp"
		}
		add(network, l.Address)
	}
	add("tcp", cfg.Admin.Address)
	return out
}

func containsAddr(as []claimAddr, a claimAddr) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

// canonicalAddr resolves address as net.Listen would and returns its
// claim; ok is false for port 0 and for addresses that do not resolve.
func canonicalAddr(network, address string) (claimAddr, bool) {
	if address == "" {
		return claimAddr{}, false
	}
	var ip net.IP
	var port int
	var zone string
	if network == "udp" {
		ua, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return claimAddr{}, false
		}
		ip, port, zone = ua.IP, ua.Port, ua.Zone
	} else {
		ta, err := net.ResolveTCPAddr(network, address)
		if err != nil {
			return claimAddr{}, false
		}
		ip, port, zone = ta.IP, ta.Port, ta.Zone
	}
	if port == 0 {
		return claimAddr{}, false
	}
	a := claimAddr{network: network, host: "*", port: port}
	if ipa, ok := netip.AddrFromSlice(ip); ok && !ipa.Unmap().IsUnspecified() {
		a.host = ipa.Unmap().WithZone(zone).String()
	}
	return a, true
}

// helloProtocol names the claim handshake and its version, and is how a
// claim's holder is known to be an icpgate.
const helloProtocol = "icpgate-instance/1"

// instanceHello is the line a live instance writes to whoever connects to
// one of its claims: enough for a refused start to name it.
type instanceHello struct {
	Protocol string    `json:"protocol"` // helloProtocol
	PID      int       `json:"pid"`      // in the holder's PID namespace
	Config   string    `json:"config"`   // the config file, or "embedded"
	Node     string    `json:"node"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
}

// String describes the instance for messages.
func (h instanceHello) String() string {
	return fmt.Sprintf("pid %d, config %s, node %s, version %s, started %s",
		h.PID, h.Config, h.Node, h.Version, h.Started.Format(time.RFC3339))
}

// Requests an upgrading instance sends on a claim connection, after the
// hello, each answered with an instanceReply: first opUpgrade (reserve the
// holder for this upgrade, refused when another is under way or the
// holder is draining), then, once the new instance is ready and serving,
// opDrain (stop accepting, drain and exit, as on SIGTERM). Closing the
// connection before opDrain abandons the upgrade; the holder serves on.
const (
	opUpgrade = "upgrade"
	opDrain   = "drain"
)

// instanceRequest is one request line.
type instanceRequest struct {
	Op     string `json:"op"`
	PID    int    `json:"pid,omitempty"`
	Config string `json:"config,omitempty"`
}

// instanceReply answers a request: OK, or the reason it is refused.
type instanceReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// configName is how the hello names cfg's source.
func configName(cfg *Config) string {
	if cfg.Embedded() {
		return "embedded"
	}
	return cfg.path
}

// refusalAdvice says what to do about the running instance that makes
// cfg's start refused.
func refusalAdvice(cfg *Config) string {
	if cfg.Embedded() {
		// demo, or serve without a config: nothing worth an upgrade.
		return "stop it first"
	}
	return "stop it, or replace it with: icpgate serve -config " + cfg.path + " --upgrade"
}
