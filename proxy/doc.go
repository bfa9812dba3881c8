// Package proxy is icpgate's data plane: the listeners that read the name
// each connection asks for, ask a Decider whether that name may pass, and
// either pass the traffic to the hosted server untouched or block it.
//
// Usage sketch (cmd wires it; tests do the same with ":0" addresses):
//
//	m := proxy.NewMetrics(reg)
//	srv, err := proxy.NewServer(proxy.Config{
//		Node: "edge-1",
//		Listeners: []proxy.ListenerConfig{
//			{Name: "tls", Protocol: "tls", Address: ":443", Upstream: "10.0.0.5:443"},
//			{Name: "http", Protocol: "http", Address: ":80", Upstream: "10.0.0.5:80"},
//		},
//	}, decider, m, log) // decider adapts the registry; err names the bad field
//	if err != nil { ... }
//	if err := srv.Start(); err != nil { ... } // binds, SO_REUSEPORT
//	go func() { for range sighup { srv.Reload(newCfg, nil) } }()
//	err = srv.Serve(ctx) // until ctx is done, then drains
//
// # Design
//
// No registry import. proxy declares the Decider interface it needs
// (decider.go) and never imports the registry; cmd adapts one to the other.
// A dependency test keeps it that way. The Server holds the Decider behind
// an atomic pointer, so SetDecider and Reload apply to the next decision.
//
// Decisions. A TLS connection is decided once, on the server_name of its
// ClientHello ("" when there is none, which the registry treats as IP
// access); an HTTP connection is decided on every request's Host. Every
// decision is counted in Metrics.Decisions by protocol, verdict and reason
// code; hosts never become labels.
//
// TLS passthrough. The hello is read by package sni under Timeouts.Hello
// and a size cap, with fragmented records and TCP segments reassembled.
// A blocked connection gets a fatal access_denied alert, an RST with
// Policy.TLSBlock "reset", or with "page" the block page over TLS, with a
// certificate certmagic obtains on demand only for names being blocked
// (tlspage.go); either way the upstream is never dialled. A hello carrying
// ECH is counted and decided on its outer name, the only one readable. A passing
// one is dialled to Decision.Upstream or the listener's default, the hello
// bytes are replayed, and then both directions are moved with splice(2)
// through a cached pipe (splice_linux.go): the payload stays in the kernel, and
// the calls do not wake the Go scheduler's monitor thread. When one side
// finishes, the other is half-closed with
// CloseWrite and the reverse direction keeps running.
//
// QUIC. A quic listener (quic.go) decrypts each new flow's Initial packets
// with the version's initial keys (package sni), reassembles the CRYPTO
// frames into the ClientHello and decides once per flow. A passing flow's
// datagrams go to the upstream through a per-flow connected UDP socket; a
// blocked one never reaches it and gets a CONNECTION_CLOSE (0x131, the
// QUIC form of access_denied) so browsers fall back to TCP, or nothing
// with Policy.QUICBlock "drop". HTTP listeners are described at the top of
// http.go (strict streaming parser, every request decided); outside
// transparent mode and PROXY headers the passthrough engines accept their
// connections, answer a blocked first request on the spot and hand every
// other connection to a handler goroutine (enghttp.go).
//
// Idle timeout without per-read syscalls. A spliced relay has no user-space
// read loop in which to refresh deadlines, and refreshing them would cost
// syscalls per read anyway. Instead one watchdog goroutine per Server asks
// the kernel (TCP_INFO: time since data was last received, or since the
// last ACK while data is in flight) when each relay was last active,
// about once per idle period per relay, and closes relays idle for longer
// than Timeouts.Idle (default 5 min).
//
// Limits and shutdown. Each accept checks a global and a per-client-IP cap
// (Limits.MaxConns, Limits.MaxConnsPerIP); a connection over a cap is
// closed at once and counted in Metrics.LimitRejects. Listeners are bound
// with SO_REUSEPORT, so a new process can bind the same addresses before
// the old one drains during an upgrade. Serve's drain stops accepting,
// tells HTTP handlers to finish their request in progress, lets
// passthrough connections run until Timeouts.Drain, then closes what is
// left and waits for every handler. Reload applies a new config to new
// connections only; open connections keep the config they started with.
package proxy
