package main

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/proxy"
)

const edgeConfig = `
registry:
  file: reg.jsonl
listeners:
  - name: edge
    protocol: auto
    address: "0.0.0.0:15001"
    upstream: original
    transparent: tproxy
    spoof_source: true
    allowed_destinations: ["203.0.113.0/24", "2001:db8:100::/48", "198.51.100.7"]
    other_protocols: block
    sniff_timeout: 150ms
    proxy_protocol: {accept_from: ["10.0.0.0/8", "fd00::1"], send: v2}
  - name: lb
    protocol: http
    address: "127.0.0.1:0"
    upstream: "127.0.0.1:18080"
    proxy_protocol: {accept_from: ["10.1.2.3/32"]}
`

func loadYAML(t *testing.T, y string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "icpgate.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadConfig(path)
}

// TestEdgeListenerConfig: the edge keys reach the data plane parsed, with
// their defaults, and the sniffing keys only on auto listeners.
func TestEdgeListenerConfig(t *testing.T) {
	c, err := loadYAML(t, edgeConfig)
	if err != nil {
		t.Fatal(err)
	}
	pc := c.ProxyConfig()
	p := netip.MustParsePrefix
	want := []proxy.ListenerConfig{{
		Name: "edge", Protocol: "auto", Address: "0.0.0.0:15001", Upstream: "original", ForwardedProto: "http",
		Transparent: "tproxy", SpoofSource: true,
		AllowedDestinations: []netip.Prefix{p("203.0.113.0/24"), p("2001:db8:100::/48"), p("198.51.100.7/32")},
		OtherProtocols:      "block", SniffTimeout: 150 * time.Millisecond,
		ProxyProtocol: proxy.ProxyProtocol{AcceptFrom: []netip.Prefix{p("10.0.0.0/8"), p("fd00::1/128")}, Send: "v2"},
	}, {
		Name: "lb", Protocol: "http", Address: "127.0.0.1:0", Upstream: "127.0.0.1:18080", ForwardedProto: "http",
		ProxyProtocol: proxy.ProxyProtocol{AcceptFrom: []netip.Prefix{p("10.1.2.3/32")}},
	}}
	if !reflect.DeepEqual(pc.Listeners, want) {
		t.Errorf("got  %+v\nwant %+v", pc.Listeners, want)
	}
	// The data plane accepts what the config produced.
	if _, err := proxy.NewServer(pc, edgeDecider{}, nil, nil); err != nil {
		t.Errorf("proxy.NewServer: %v", err)
	}
	// Defaults of an auto listener.
	c, err = loadYAML(t, strings.Replace(minimal, "protocol: http", "protocol: auto", 1))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.ProxyConfig().Listeners[0]; l.OtherProtocols != "pass" || l.SniffTimeout != 300*time.Millisecond {
		t.Errorf("auto defaults: got other_protocols %q sniff_timeout %v, want pass 300ms", l.OtherProtocols, l.SniffTimeout)
	}
}

type edgeDecider struct{}

func (edgeDecider) Decide(string) proxy.Decision { return proxy.Decision{Reason: "unfiled"} }

func TestEdgeListenerErrors(t *testing.T) {
	edge := func(old, new string) string { return strings.Replace(edgeConfig, old, new, 1) }
	tests := []struct {
		name, yaml, want string
	}{
		{"bad transparent", edge("transparent: tproxy", "transparent: nat"), "listeners[0].transparent: must be tproxy or redirect"},
		{"original without transparent", edge("transparent: tproxy", `transparent: ""`), "listeners[0].transparent: required"},
		{"transparent without original", edge("upstream: original", `upstream: "10.0.0.1:80"`), "listeners[0].transparent"},
		{"spoof without original", strings.Replace(minimal, "upstream:", "spoof_source: true, upstream:", 1), "listeners[0].spoof_source"},
		{"bad allowed", edge(`"203.0.113.0/24"`, `"203.0.113.0/33"`), "listeners[0].allowed_destinations[0]: must be a CIDR"},
		{"allowed host name", edge(`"198.51.100.7"`, `"example.cn"`), "listeners[0].allowed_destinations[2]"},
		{"other_protocols", edge("other_protocols: block", "other_protocols: drop"), "listeners[0].other_protocols: must be pass or block"},
		{"sniff_timeout", edge("sniff_timeout: 150ms", "sniff_timeout: -1s"), "listeners[0].sniff_timeout: must not be negative"},
		{"accept_from", edge(`"fd00::1"`, `"fd00::1%eth0"`), "listeners[0].proxy_protocol.accept_from[1]"},
		{"send", edge("send: v2", "send: v3"), "listeners[0].proxy_protocol.send: must be v1 or v2"},
		{"original quic", strings.Replace(strings.Replace(edgeConfig, "protocol: auto", "protocol: quic", 1), "    other_protocols: block\n    sniff_timeout: 150ms\n", "", 1),
			"listeners[0].upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
