package proxy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
)

// TestTLSWithoutSNIPolicy: policy.tls_without_sni decides hellos that
// name no server (no SNI, or an IP, for which Go sends none) on both TLS
// paths, over the Decider's ip_access verdict, and counts them by
// listener and verdict; hellos with a name are neither affected nor
// counted.
func TestTLSWithoutSNIPolicy(t *testing.T) {
	for _, policy := range []string{"pass", "block"} {
		t.Run(policy, func(t *testing.T) {
			up := newTLSUpstream(t, "A", nil)
			cfg := retryListeners(up.addr())
			cfg.Policy.TLSWithoutSNI = policy
			d := filedOnly
			d.ipAccess = policy == "block" // the opposite: the policy wins
			g := startGateway(t, cfg, d)
			servedByEngines(t, g)
			for _, ln := range []string{"tls", "auto"} {
				for _, lab := range []string{"pass", "block"} {
					if n := testutil.ToFloat64(g.m.TLSWithoutSNI.WithLabelValues(ln, "tls", lab)); n != 0 {
						t.Fatalf("%s: %s counted %v before any hello", ln, lab, n)
					}
				}
				for _, name := range []string{"", "127.0.0.1"} {
					c, err := dialTLS(g.addr(ln), name)
					if policy == "pass" {
						if err != nil {
							t.Fatalf("%s, %q: handshake: %v", ln, name, err)
						}
						c.Close()
					} else if err == nil || !strings.Contains(err.Error(), "access denied") {
						if c != nil {
							c.Close()
						}
						t.Fatalf("%s, %q: got %v, want access denied", ln, name, err)
					}
				}
				c, err := dialTLS(g.addr(ln), "filed.cn")
				if err != nil {
					t.Fatalf("%s: a named hello: %v", ln, err)
				}
				c.Close()
				if n := testutil.ToFloat64(g.m.TLSWithoutSNI.WithLabelValues(ln, "tls", policy)); n != 2 {
					t.Errorf("tls_without_sni_total{%s,tls,%s}: got %v, want 2", ln, policy, n)
				}
			}
		})
	}
}

// TestQUICWithoutSNIPolicy: the same on a quic listener, with a quic-go
// HTTP/3 client asking for an IP (so its Initial carries no SNI).
func TestQUICWithoutSNIPolicy(t *testing.T) {
	for _, policy := range []string{"pass", "block"} {
		t.Run(policy, func(t *testing.T) {
			up := newH3Upstream(t)
			_, m, addr := startQUICGateway(t, up.pc.LocalAddr().String(), Policy{TLSWithoutSNI: policy}, Limits{})
			body, err := h3Get(t, addr, "127.0.0.1", 20*time.Second)
			if policy == "pass" {
				if err != nil || !strings.HasPrefix(body, "hello ") {
					t.Fatalf("GET: got %q, %v (%s)", body, err, quicDropSummary(m))
				}
			} else {
				var te *quic.TransportError
				if !errors.As(err, &te) || te.ErrorCode != 0x131 {
					t.Fatalf("got %v, want the access_denied close", err)
				}
			}
			if n := testutil.ToFloat64(m.TLSWithoutSNI.WithLabelValues("quic", "quic", policy)); n != 1 {
				t.Errorf("tls_without_sni_total{quic,quic,%s}: got %v, want 1", policy, n)
			}
		})
	}
}

func TestTLSWithoutSNIValidation(t *testing.T) {
	cfg := tlsListener("127.0.0.1:1")
	cfg.Policy.TLSWithoutSNI = "allow"
	if _, err := NewServer(cfg, filedOnly, nil, nil); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "policy.tls_without_sni") {
		t.Errorf("got %v, want an invalid config naming policy.tls_without_sni", err)
	}
}
