package main

import (
	"testing"
)

// TestInstanceAddrs: the claimed addresses are the fixed ones, each once,
// in a form that does not depend on how the config spells them.
func TestInstanceAddrs(t *testing.T) {
	for _, tt := range []struct {
		name      string
		listeners []ListenerConfig
		admin     string
		want      []string
	}{
		{"fixed", []ListenerConfig{{Protocol: "http", Address: "127.0.0.1:8080"}, {Protocol: "tls", Address: "127.0.0.1:8443"}},
			"127.0.0.1:9090", []string{"@icpgate/tcp/127.0.0.1:8080", "@icpgate/tcp/127.0.0.1:8443", "@icpgate/tcp/127.0.0.1:9090"}},
		{"port 0 is not claimed", []ListenerConfig{{Protocol: "http", Address: "127.0.0.1:0"}, {Protocol: "tls", Address: ":0"}},
			"127.0.0.1:0", nil},
		{"any address, however spelt", []ListenerConfig{{Protocol: "http", Address: ":80"}, {Protocol: "http", Address: "0.0.0.0:80"}, {Protocol: "tls", Address: "[::]:443"}},
			"", []string{"@icpgate/tcp/*:80", "@icpgate/tcp/*:443"}},
		{"quic is udp", []ListenerConfig{{Protocol: "tls", Address: "192.0.2.1:443"}, {Protocol: "quic", Address: "192.0.2.1:443"}},
			"", []string{"@icpgate/tcp/192.0.2.1:443", "@icpgate/udp/192.0.2.1:443"}},
		{"IPv6 and v4-mapped", []ListenerConfig{{Protocol: "http", Address: "[::1]:80"}, {Protocol: "http", Address: "[::ffff:127.0.0.1]:81"}},
			"127.0.0.1:81", []string{"@icpgate/tcp/[::1]:80", "@icpgate/tcp/127.0.0.1:81"}},
		{"unresolvable is left to bind", []ListenerConfig{{Protocol: "http", Address: "nohost"}}, "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Listeners: tt.listeners, Admin: AdminConfig{Address: tt.admin}}
			got := instanceAddrs(cfg)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i, a := range got {
				if a.name() != tt.want[i] {
					t.Errorf("claim %d: got %q, want %q", i, a.name(), tt.want[i])
				}
				if b, ok := parseClaimName(a.name()); !ok || b != a {
					t.Errorf("parseClaimName(%q): got %v %v, want %v", a.name(), b, ok, a)
				}
			}
		})
	}
}

// TestInstanceOverlaps: an any-address claim overlaps every address on
// its port and network; two single addresses never overlap.
func TestInstanceOverlaps(t *testing.T) {
	any80 := claimAddr{"tcp", "*", 80}
	for _, tt := range []struct {
		a, b claimAddr
		want bool
	}{
		{any80, claimAddr{"tcp", "127.0.0.1", 80}, true},
		{claimAddr{"tcp", "::1", 80}, any80, true},
		{any80, any80, false}, // the same claim: the kernel refuses the second
		{any80, claimAddr{"tcp", "127.0.0.1", 81}, false},
		{any80, claimAddr{"udp", "127.0.0.1", 80}, false},
		{claimAddr{"tcp", "127.0.0.1", 80}, claimAddr{"tcp", "127.0.0.2", 80}, false},
	} {
		if got := tt.a.overlaps(tt.b); got != tt.want {
			t.Errorf("%v overlaps %v: got %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	for _, s := range []string{"@icpgate/sctp/*:80", "@icpgate/tcp/*:0", "@icpgate/tcp/x", "@other/tcp/*:80", "icpgate/tcp/*:80"} {
		if a, ok := parseClaimName(s); ok {
			t.Errorf("parseClaimName(%q): got %v, want not a claim", s, a)
		}
	}
}
