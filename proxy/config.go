package proxy

import (
	"net/netip"
	"time"

	"github.com/caddyserver/certmagic"
)

// ListenerConfig describes one data-plane listener. cmd fills it from the
// YAML config (after applying defaults and validating); proxy re-checks only
// what it needs to run. Shared by the TLS and HTTP handlers and the Server;
// add fields with a comment stating the default.
type ListenerConfig struct {
	// Name identifies the listener in logs and metrics labels ("http", "tls").
	Name string
	// Protocol is "http", "tls", "quic" (UDP; see proxy/quic.go) or "auto":
	// a bounded peek at the first bytes tells TLS (decided on the SNI), HTTP
	// (decided on every request's Host) and anything else apart, which
	// OtherProtocols decides (see sniff.go).
	Protocol string
	// Address is the host:port to listen on.
	Address string
	// Upstream is the default host:port traffic passes to; a Decision's
	// Upstream overrides it. UpstreamOriginal ("original") sends each
	// connection to its original destination instead (transparent mode,
	// see Transparent); a Decision's Upstream is then ignored.
	Upstream string
	// Transparent is how a listener with Upstream "original" learns each
	// connection's original destination: "tproxy" (the listening socket is
	// IP_TRANSPARENT and nftables/iptables TPROXY rules deliver the
	// intercepted connections to it; the destination is the accepted
	// socket's local address) or "redirect" (NAT REDIRECT rules; the
	// destination is read with SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST).
	// Required with Upstream "original", refused otherwise. Default "".
	Transparent string
	// SpoofSource dials the upstream from the client's own address
	// (IP_TRANSPARENT on the upstream socket, bound to the client IP), so
	// the server sees the real client. It needs Transparent and the
	// policy routing of docs/transparent.md for the return traffic.
	// Default false: the gateway's own address.
	SpoofSource bool
	// AllowedDestinations, when not empty, are the only original
	// destinations (hosted networks) a transparent listener relays to;
	// others are refused. Default empty: any destination that is not an
	// address of the gateway itself.
	AllowedDestinations []netip.Prefix
	// OtherProtocols is what an auto listener does with a connection that
	// is neither TLS nor HTTP, including a client that sends nothing for
	// SniffTimeout (a server-speaks-first protocol such as SSH, MySQL or
	// SMTP): "pass" (default: dial and relay) or "block" (close).
	OtherProtocols string
	// SniffTimeout is how long an auto listener waits for the client's
	// first byte before treating the connection as server-speaks-first.
	// Default 300 ms. The rest of the peek is bounded by Timeouts.Hello.
	SniffTimeout time.Duration
	// ProxyProtocol configures the PROXY protocol (v1 and v2) on this
	// listener. Zero: off (a PROXY header is never honoured).
	ProxyProtocol ProxyProtocol
	// ForwardedProto is the X-Forwarded-Proto value the HTTP handler adds
	// to every forwarded request (client-supplied X-Forwarded-* headers are
	// always removed). Default "http"; set "https" behind a TLS terminator.
	ForwardedProto string
}

// UpstreamOriginal is the ListenerConfig.Upstream of transparent mode:
// every connection goes to its own original destination.
const UpstreamOriginal = "original"

// ProxyProtocol configures the PROXY protocol (HAProxy's, v1 and v2) of a
// listener: accepted from load balancers in front of the gateway, and
// optionally sent to upstreams behind it.
type ProxyProtocol struct {
	// AcceptFrom are the peers (load balancers) whose connections must
	// start with a PROXY header; the client address it carries is then
	// the client for limits, logs, block reports, X-Forwarded-For and
	// SpoofSource. A connection from one of them without a valid header
	// is refused (closed): a trusted peer that forgets the header would
	// otherwise make every client look like the balancer. A connection
	// from any other peer that starts with a PROXY header is refused too.
	// Default empty: PROXY headers are not accepted.
	AcceptFrom []netip.Prefix
	// Send, "v1" or "v2", writes a PROXY header (client address, and the
	// address the client connected to) before anything else on every
	// upstream connection. Default "": none.
	Send string
}

// Policy is the block/pass policy the data plane applies.
type Policy struct {
	// TLSBlock is "alert" (default), "reset" or "page".
	TLSBlock string
	// TLSWithoutSNI is the verdict for a ClientHello that names no server:
	// no SNI, or an IP literal (the Decider's reason "ip_access"), on tls,
	// auto and quic listeners: "pass" or "block". Such a client reaches
	// whatever site the origin serves for the Host inside TLS (see
	// docs/security.md). Default "": the Decider's verdict.
	TLSWithoutSNI string
	// QUICBlock is how quic listeners refuse a connection: "close"
	// (default: a CONNECTION_CLOSE with CRYPTO_ERROR access_denied in a
	// server Initial, so clients give up at once and browsers fall back to
	// TCP) or "drop" (silence; clients wait for their handshake timeout).
	QUICBlock string
	// HTTPBlockStatus is the status of an HTTP block response, 400-599.
	// Default 403.
	HTTPBlockStatus int
	// RedirectURL, when set, turns HTTP blocks into a 302 to this URL with
	// ?d=<host>&r=<reason>&id=<request id>.
	RedirectURL string
	// BlockPage is the path of an html/template that replaces the embedded
	// bilingual block page (BlockPageData lists the fields it gets;
	// docs/block-page.md shows how to start from proxy/blockpage.html).
	// Default "": the embedded page.
	BlockPage string
	// Provider names the hosting provider and its support on block pages
	// (and in their JSON body). Zero: nothing shown, the texts say only
	// "this provider".
	Provider Provider
	// TimeZone is the IANA name of the time zone block pages show the time
	// in, with its offset. Default "": Asia/Shanghai.
	TimeZone string
	// ShowNode shows Config.Node on block pages and in their JSON body.
	// Default false: visitors see the request ID, which is all support
	// needs to find the block; the node stays in logs and metrics.
	ShowNode bool
	// TLSPage configures TLSBlock "page"; it is ignored otherwise.
	TLSPage TLSPage
}

// Provider is the hosting provider as block pages name it. Every field is
// optional; an empty one is left off the page.
type Provider struct {
	// Name is the provider's name, e.g. "示例云 Example Cloud".
	Name string `json:"name,omitempty"`
	// SupportContact is how to reach support, as plain text (a phone
	// number, an e-mail address, working hours).
	SupportContact string `json:"support_contact,omitempty"`
	// SupportURL is an absolute http(s) URL of the support or ticket page.
	SupportURL string `json:"support_url,omitempty"`
	// FilingURL is an absolute http(s) URL of the provider's ICP filing
	// page or console, where site owners file or add an access filing.
	FilingURL string `json:"filing_url,omitempty"`
}

// TLSPage configures Policy.TLSBlock "page": a blocked TLS connection is
// terminated with a certificate that certmagic obtains over ACME on demand,
// only for names currently being blocked, and answered with the block page
// (see proxy/tlspage.go). Zero values mean the defaults.
type TLSPage struct {
	// ACMEDirectory is the ACME directory URL. Default Let's Encrypt's
	// production directory. The CA validates with TLS-ALPN-01, which the
	// gateway's own tls listeners answer: a public CA needs one on port 443.
	ACMEDirectory string
	// Email is the ACME account's contact address. Default "": no contact.
	Email string
	// StorageDir is the directory certmagic keeps the ACME account, keys
	// and certificates in (created if missing). Default "data/certmagic".
	StorageDir string
	// CARootsFile is a PEM file of root certificates trusted for the ACME
	// server's own HTTPS endpoint instead of the system roots, for a
	// private CA or a test CA such as pebble. Default "": system roots.
	CARootsFile string
	// IssuePerMinute caps certificate requests for new names (names with
	// no stored certificate), as a token bucket of this size refilled at
	// this rate. Default 10.
	IssuePerMinute int
	// MaxNamesPerHour caps the distinct new names certificates are
	// requested for in each clock hour. Default 100.
	MaxNamesPerHour int
	// Timeout bounds how long a blocked client's handshake waits for its
	// certificate; after it the client gets the access_denied alert.
	// Default 10 s.
	Timeout time.Duration
	// Storage, when set, replaces StorageDir: certmagic keeps the account,
	// keys, certificates and locks there, e.g. in the filing database so
	// that every node shares them. Its dynamic type must be comparable (a
	// pointer). Default nil: a certmagic.FileStorage in StorageDir.
	Storage certmagic.Storage
}

// Timeouts bound each phase of a connection. Zero means the default.
type Timeouts struct {
	Hello time.Duration // reading a ClientHello or an HTTP request head; default 5 s
	Dial  time.Duration // dialling an upstream; default 3 s
	Idle  time.Duration // no bytes either way; default 5 min (TLS), 60 s (HTTP keep-alive)
	Drain time.Duration // graceful shutdown deadline; default 30 s
	// QUICIdle ends a passing QUIC flow after no datagram either way;
	// default 60 s (QUIC stacks default to 30 s idle timeouts).
	QUICIdle time.Duration
	// TunnelIdle closes an upgraded HTTP connection (a 101 tunnel such as
	// a WebSocket) after no bytes either way; default the HTTP listener's
	// Idle (60 s, as nginx's proxy_read_timeout). WebSocket applications
	// that stay quiet longer send pings.
	TunnelIdle time.Duration
	// BodyGrace is how long a request body may take before
	// Limits.MinBodyRate applies to it; default 5 s.
	BodyGrace time.Duration
}

// Limits cap resources. Zero means the default.
type Limits struct {
	MaxHeaderBytes int // HTTP request head; default 64 KiB
	MaxHeaders     int // HTTP header fields; default 100
	MaxConns       int // open client connections, all listeners; default 100000
	MaxConnsPerIP  int // open connections per client IP; default 1000
	MaxQUICFlows   int // QUIC flows (pending, passing, recently blocked) per quic listener; default 10000
	// MaxQUICPendingBytes caps what the undecided flows of one quic
	// listener hold together (buffered datagrams and hello reassembly);
	// over it the oldest undecided flows are ended first. Default 16 MiB.
	MaxQUICPendingBytes int
	// MinBodyRate is the least average rate, in bytes per second, at which
	// a client must send a request body once Timeouts.BodyGrace has
	// passed; a slower one gets a 408 and the connection is closed, so a
	// client cannot hold a connection and an upstream by trickling a byte
	// inside every idle period. Default 240 (as Kestrel's); negative: off.
	MinBodyRate int
}
