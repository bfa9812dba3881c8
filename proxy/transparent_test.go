package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

func TestEdgeValidation(t *testing.T) {
	base := ListenerConfig{Name: "t", Protocol: "auto", Address: "127.0.0.1:0", Upstream: UpstreamOriginal, Transparent: "tproxy"}
	pfx := netip.MustParsePrefix
	tests := []struct {
		name  string
		f     func(l *ListenerConfig)
		field string // "" = valid
	}{
		{"tproxy", func(l *ListenerConfig) {}, ""},
		{"redirect spoof allowed", func(l *ListenerConfig) {
			l.Transparent, l.SpoofSource = "redirect", true
			l.AllowedDestinations = []netip.Prefix{pfx("10.0.0.0/8"), pfx("2001:db8::/32")}
		}, ""},
		{"original without transparent", func(l *ListenerConfig) { l.Transparent = "" }, "listeners[0].transparent"},
		{"transparent without original", func(l *ListenerConfig) { l.Upstream = "127.0.0.1:1" }, "listeners[0].transparent"},
		{"bad transparent", func(l *ListenerConfig) { l.Transparent = "nat" }, "listeners[0].transparent"},
		{"original quic", func(l *ListenerConfig) { l.Protocol = "quic" }, "listeners[0].upstream"},
		{"spoof without transparent", func(l *ListenerConfig) { l.Upstream, l.Transparent, l.SpoofSource = "127.0.0.1:1", "", true }, "listeners[0].spoof_source"},
		{"allowed without original", func(l *ListenerConfig) {
			l.Upstream, l.Transparent, l.AllowedDestinations = "127.0.0.1:1", "", []netip.Prefix{pfx("10.0.0.0/8")}
		}, "listeners[0].allowed_destinations"},
		{"invalid allowed", func(l *ListenerConfig) { l.AllowedDestinations = []netip.Prefix{{}} }, "listeners[0].allowed_destinations[0]"},
		{"other protocols block", func(l *ListenerConfig) { l.OtherProtocols = "block" }, ""},
		{"bad other protocols", func(l *ListenerConfig) { l.OtherProtocols = "drop" }, "listeners[0].other_protocols"},
		{"other protocols on tls", func(l *ListenerConfig) { l.Protocol, l.OtherProtocols = "tls", "pass" }, "listeners[0].other_protocols"},
		{"negative sniff timeout", func(l *ListenerConfig) { l.SniffTimeout = -1 }, "listeners[0].sniff_timeout"},
		{"sniff timeout on http", func(l *ListenerConfig) { l.Protocol, l.SniffTimeout = "http", time.Second }, "listeners[0].sniff_timeout"},
		{"proxy protocol", func(l *ListenerConfig) {
			l.ProxyProtocol = ProxyProtocol{AcceptFrom: []netip.Prefix{pfx("10.0.0.0/8")}, Send: "v2"}
		}, ""},
		{"bad accept_from", func(l *ListenerConfig) { l.ProxyProtocol.AcceptFrom = []netip.Prefix{{}} }, "listeners[0].proxy_protocol.accept_from[0]"},
		{"bad send", func(l *ListenerConfig) { l.ProxyProtocol.Send = "v3" }, "listeners[0].proxy_protocol.send"},
		{"proxy protocol on quic", func(l *ListenerConfig) {
			l.Protocol, l.Upstream, l.Transparent, l.ProxyProtocol.Send = "quic", "127.0.0.1:1", "", "v1"
		}, "listeners[0].proxy_protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := base
			tt.f(&l)
			_, err := NewServer(Config{Listeners: []ListenerConfig{l}}, mapDecider{}, nil, nil)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("got %v, want an ErrInvalidConfig naming %q", err, tt.field)
			}
		})
	}
}

// TestTransparentLoopGuard: a direct connection to a transparent listener
// (nothing intercepted it) must not be passed "on" to the listener itself.
func TestTransparentLoopGuard(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: tproxy listeners are IP_TRANSPARENT (CAP_NET_ADMIN)")
	}
	for _, mode := range []string{transparentTPROXY, transparentRedirect} {
		t.Run(mode, func(t *testing.T) {
			g := startGateway(t, Config{Listeners: []ListenerConfig{{Name: "t", Protocol: "auto", Address: "127.0.0.1:0",
				Upstream: UpstreamOriginal, Transparent: mode}}}, filedDecider)
			c := dialRaw(t, g.addr("t"))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
			if got := readClosed(t, c); got != "" {
				t.Errorf("got %q, want the connection refused", got)
			}
			var refused float64
			for _, r := range []string{refusedLoop, refusedNoOriginalDst} {
				refused += testutilCounter(g, "t", r)
			}
			if refused != 1 {
				t.Errorf("transparent refusals: got %v, want 1", refused)
			}
		})
	}
}

func testutilCounter(g *gateway, listener, reason string) float64 {
	return testutil.ToFloat64(g.m.Edge.TransparentRefused.WithLabelValues(listener, reason))
}

func TestIsLoop(t *testing.T) {
	e := &edgeRuntime{
		listenAddr: netip.MustParseAddrPort("10.0.0.1:15001"),
		local:      map[netip.Addr]struct{}{netip.MustParseAddr("192.0.2.1"): {}},
	}
	for _, tt := range []struct {
		dst  string
		loop bool
	}{
		{"127.0.0.1:80", true}, {"[::1]:80", true}, {"0.0.0.0:80", true}, {"224.0.0.1:80", true},
		{"10.0.0.1:15001", true}, {"192.0.2.1:443", true},
		{"10.0.0.1:80", false}, {"198.51.100.7:15001", false}, {"[2001:db8::1]:443", false},
	} {
		if got := e.isLoop(netip.MustParseAddrPort(tt.dst)); got != tt.loop {
			t.Errorf("isLoop(%s) = %v, want %v", tt.dst, got, tt.loop)
		}
	}
}

// The netns end-to-end test. Topology, per run (names carry a random tag):
//
//	client ns  c0 10.77.1.2 fd77:1::2 ──veth── g1 10.77.1.1 fd77:1::1  gateway ns
//	server ns  s0 10.77.2.10,.11 fd77:2::10,::11 ──veth── g2 10.77.2.1 fd77:2::1
//
// In the gateway ns, nftables TPROXYs TCP ports 80 and 443 of 10.77.2.10
// and fd77:2::10 to one dual-stack auto listener with spoof_source, and
// REDIRECTs those of 10.77.2.11 and fd77:2::11 to an IPv4 and an IPv6 auto
// listener without it. The gateway runs
// as a re-exec of this test binary under "ip netns exec"; the servers and
// the client run on OS threads of this process switched into their
// namespaces with setns.

const transparentHelperEnv = "ICPGATE_TRANSPARENT_HELPER"

// TestTransparentHelper is the gateway process of TestTransparentNetns; it
// does nothing unless started by it.
func TestTransparentHelper(t *testing.T) {
	cfgJSON := os.Getenv(transparentHelperEnv)
	if cfgJSON == "" {
		t.Skip("helper process of TestTransparentNetns")
	}
	var lns []ListenerConfig
	if err := json.Unmarshal([]byte(cfgJSON), &lns); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listeners: lns}
	srv, err := NewServer(cfg, filedDecider, nil, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin) // until the parent closes the pipe
	cancel()
	<-done
}

func TestTransparentNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables, IP_TRANSPARENT)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian packages iproute2 and nftables)", tool)
		}
	}
	tag := make([]byte, 3)
	rand.Read(tag)
	id := hex.EncodeToString(tag)
	cns, gns, sns := "icpg-"+id+"-c", "icpg-"+id+"-g", "icpg-"+id+"-s"
	for _, ns := range []string{cns, gns, sns} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "link", "add", "c0", "netns", cns, "type", "veth", "peer", "name", "g1", "netns", gns)
	run(t, "ip", "link", "add", "s0", "netns", sns, "type", "veth", "peer", "name", "g2", "netns", gns)
	for _, a := range []struct{ ns, dev, addr string }{
		{cns, "c0", "10.77.1.2/24"}, {cns, "c0", "fd77:1::2/64"},
		{gns, "g1", "10.77.1.1/24"}, {gns, "g1", "fd77:1::1/64"},
		{gns, "g2", "10.77.2.1/24"}, {gns, "g2", "fd77:2::1/64"},
		{sns, "s0", "10.77.2.10/24"}, {sns, "s0", "10.77.2.11/24"}, {sns, "s0", "fd77:2::10/64"}, {sns, "s0", "fd77:2::11/64"},
	} {
		args := []string{"-n", a.ns, "addr", "add", a.addr, "dev", a.dev}
		if strings.Contains(a.addr, ":") {
			args = append(args, "nodad")
		}
		run(t, "ip", args...)
	}
	for _, l := range []struct{ ns, dev string }{{cns, "c0"}, {gns, "g1"}, {gns, "g2"}, {sns, "s0"}} {
		run(t, "ip", "-n", l.ns, "link", "set", l.dev, "up")
	}
	run(t, "ip", "-n", cns, "route", "add", "default", "via", "10.77.1.1")
	run(t, "ip", "-n", cns, "-6", "route", "add", "default", "via", "fd77:1::1")
	run(t, "ip", "-n", sns, "route", "add", "default", "via", "10.77.2.1")
	run(t, "ip", "-n", sns, "-6", "route", "add", "default", "via", "fd77:2::1")
	// The gateway: forwarding, and the TPROXY policy routing of
	// docs/transparent.md (marked packets are delivered locally).
	run(t, "ip", "netns", "exec", gns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	run(t, "ip", "-n", gns, "rule", "add", "fwmark", "1", "lookup", "100")
	run(t, "ip", "-n", gns, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
	run(t, "ip", "-n", gns, "-6", "rule", "add", "fwmark", "1", "lookup", "100")
	run(t, "ip", "-n", gns, "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")
	nftRules := `
table inet icpgate {
	chain divert {
		type filter hook prerouting priority mangle; policy accept;
		meta l4proto tcp socket transparent 1 meta mark set 0x1 accept
		ip daddr 10.77.2.10 tcp dport { 80, 443 } tproxy ip to :15001 meta mark set 0x1 accept
		ip6 daddr fd77:2::10 tcp dport { 80, 443 } tproxy ip6 to :15001 meta mark set 0x1 accept
	}
	chain nat {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.77.2.11 tcp dport { 80, 443 } redirect to :15003
		ip6 daddr fd77:2::11 tcp dport { 80, 443 } redirect to :15004
	}
}
`
	nft := exec.Command("ip", "netns", "exec", gns, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(nftRules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}

	srv := startNetnsServers(t, sns)
	helperLog := startNetnsGateway(t, gns, []ListenerConfig{
		// One dual-stack listener takes the TPROXYed traffic of both families.
		{Name: "tproxy", Protocol: "auto", Address: "[::]:15001", Upstream: UpstreamOriginal, Transparent: "tproxy", SpoofSource: true,
			AllowedDestinations: []netip.Prefix{netip.MustParsePrefix("10.77.2.0/24"), netip.MustParsePrefix("fd77:2::/64")}},
		{Name: "redirect4", Protocol: "auto", Address: "0.0.0.0:15003", Upstream: UpstreamOriginal, Transparent: "redirect"},
		{Name: "redirect6", Protocol: "auto", Address: "[::]:15004", Upstream: UpstreamOriginal, Transparent: "redirect"},
	})
	defer func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", helperLog.String())
		}
	}()

	cases := []struct {
		name, server, client, seenFrom string
	}{
		{"tproxy ipv4 spoofed", "10.77.2.10", "10.77.1.2", "10.77.1.2"},
		{"tproxy ipv6 spoofed", "fd77:2::10", "fd77:1::2", "fd77:1::2"},
		{"redirect ipv4", "10.77.2.11", "10.77.1.2", "10.77.2.1"},
		{"redirect ipv6", "fd77:2::11", "fd77:1::2", "fd77:2::1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			httpAddr := net.JoinHostPort(tc.server, "80")
			tlsAddr := net.JoinHostPort(tc.server, "443")

			// Filed, HTTP: reaches the server the client dialled.
			c := netnsDial(t, cns, httpAddr)
			body, err := httpGet(c, bufio.NewReader(c), "www.filed.cn")
			c.Close()
			if err != nil || body != "http server at "+httpAddr {
				t.Fatalf("filed http: got %q, %v", body, err)
			}
			if got := srv.lastRemote(); got != tc.seenFrom {
				t.Errorf("server saw the connection from %s, want %s", got, tc.seenFrom)
			}
			// Filed, TLS on the same listener: passed through untouched.
			_, pool := testCert(t)
			tc2 := tls.Client(netnsDial(t, cns, tlsAddr), &tls.Config{ServerName: "filed.cn", RootCAs: pool})
			body, err = httpGet(tc2, bufio.NewReader(tc2), "filed.cn")
			tc2.Close()
			if err != nil || body != "tls server at "+tlsAddr {
				t.Fatalf("filed tls: got %q, %v", body, err)
			}
			if got := srv.lastRemote(); got != tc.seenFrom {
				t.Errorf("tls server saw the connection from %s, want %s", got, tc.seenFrom)
			}

			// Unfiled: blocked by the gateway, the server sees nothing.
			before := srv.accepted.Load()
			c = netnsDial(t, cns, httpAddr)
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err != nil || resp.StatusCode != 403 || resp.Header.Get("X-Icpgate-Reason") != "unfiled" {
				t.Fatalf("unfiled http: got %v, %v; want a 403 block", resp, err)
			}
			resp.Body.Close()
			tc3 := tls.Client(netnsDial(t, cns, tlsAddr), &tls.Config{ServerName: "unfiled.cn", RootCAs: pool})
			if err := tc3.Handshake(); err == nil || !strings.Contains(err.Error(), "access denied") {
				t.Errorf("unfiled tls: got %v, want access denied", err)
			}
			tc3.Close()
			if n := srv.accepted.Load(); n != before {
				t.Errorf("blocked connections reached the server: %d", n-before)
			}
		})
	}
	t.Run("direct connection to the listener", func(t *testing.T) {
		for _, addr := range []string{"10.77.1.1:15001", "[fd77:1::1]:15001", "10.77.1.1:15003", "[fd77:1::1]:15004"} {
			c := netnsDial(t, cns, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: filed.cn\r\n\r\n")
			if got := readClosed(t, c); got != "" {
				t.Errorf("%s: got %q, want the connection refused", addr, got)
			}
			c.Close()
		}
		waitFor(t, "four loop refusals in the gateway log", func() bool {
			n := 0
			for _, l := range helperLog.lines("transparent connection refused") {
				if l["reason"] == refusedLoop {
					n++
				}
			}
			return n == 4
		})
	})
}

// run runs a command and fails the test with its output on error.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// inNetns runs f on an OS thread switched into network namespace ns.
// Sockets f creates live in ns whichever thread uses them later. The
// thread is never handed back to the runtime: it exits with its goroutine.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no Unlock: the switched thread dies with this goroutine
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// netnsDial connects to addr from namespace ns.
func netnsDial(t *testing.T, ns, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	inNetns(t, ns, func() { c, err = net.DialTimeout("tcp", addr, 10*time.Second) })
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// netnsServers are the hosted servers: HTTP on port 80 and HTTPS on 443 of
// every address of the server namespace, answering with the address they
// were reached at and recording who connected.
type netnsServers struct {
	accepted atomic.Int64
	mu       sync.Mutex
	remote   string // IP of the last request's peer
}

func (s *netnsServers) lastRemote() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startNetnsServers(t *testing.T, ns string) *netnsServers {
	s := &netnsServers{}
	var ln80, ln443 net.Listener
	var err80, err443 error
	inNetns(t, ns, func() {
		ln80, err80 = net.Listen("tcp", "[::]:80")
		ln443, err443 = net.Listen("tcp", "[::]:443")
	})
	if err80 != nil || err443 != nil {
		t.Fatalf("server listeners: %v, %v", err80, err443)
	}
	handler := func(kind string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).(*net.TCPAddr).AddrPort()
			local = unmapAddrPort(local)
			remote, _ := netip.ParseAddrPort(r.RemoteAddr)
			s.mu.Lock()
			s.remote = remote.Addr().Unmap().String()
			s.mu.Unlock()
			io.WriteString(w, kind+" server at "+local.String())
		})
	}
	cert, _ := testCert(t)
	h80 := &http.Server{Handler: handler("http")}
	h443 := &http.Server{Handler: handler("tls")}
	go h80.Serve(countingListener{ln80, &s.accepted})
	go h443.Serve(tls.NewListener(countingListener{ln443, &s.accepted}, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() {
		h80.Close()
		h443.Close()
	})
	return s
}

// startNetnsGateway runs the gateway with listeners lns in namespace ns as
// a re-exec of the test binary, and returns its log.
func startNetnsGateway(t *testing.T, ns string, lns []ListenerConfig) *lockedBuffer {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(lns)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestTransparentHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), transparentHelperEnv+"="+string(cfg))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if sc.Text() == "READY" && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("gateway helper exited before READY:\n%s", log.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway helper not ready:\n%s", log.String())
	}
	return log
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
