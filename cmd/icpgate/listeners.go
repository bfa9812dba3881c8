package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/icpgate/icpgate/proxy"
)

// ProxyProtocolConfig is a listener's PROXY protocol (v1 and v2) setup.
type ProxyProtocolConfig struct {
	// AcceptFrom are the CIDRs (or single IPs) of the load balancers whose
	// connections must start with a PROXY header; the client it carries is
	// used for limits, logs, reports and X-Forwarded-For. Their connections
	// without a valid header, and PROXY headers from anyone else, are
	// refused (closed). Default []: PROXY headers are not accepted.
	AcceptFrom []string `yaml:"accept_from"`
	// Send is "v1" or "v2" to send a PROXY header to every upstream
	// connection. Default "": none.
	Send string `yaml:"send"`
}

// Defaults of the edge-deployment listener keys, used only by
// setListenerDefaults.
const (
	defaultOtherProtocols = "pass"
	defaultSniffTimeout   = 300 * time.Millisecond
)

// setListenerDefaults applies the defaults of listener l.
func (l *ListenerConfig) setListenerDefaults() {
	if l.ForwardedProto == "" && (l.Protocol == "http" || l.Protocol == "auto") {
		l.ForwardedProto = defaultForwardedProto
	}
	orDefault(&l.OtherProtocols, defaultOtherProtocols)
	orDefault(&l.SniffTimeout, defaultSniffTimeout)
}

// validateEdge checks the transparent-mode, sniffing and PROXY protocol
// keys of listener l (named field, e.g. "listeners[0]") and keeps the
// parsed prefixes for ProxyConfig.
func (l *ListenerConfig) validateEdge(field string) error {
	original := l.Upstream == proxy.UpstreamOriginal
	switch l.Transparent {
	case "":
		if original {
			return fmt.Errorf("%s.transparent: required with upstream \"original\": tproxy or redirect", field)
		}
	case "tproxy", "redirect":
		if !original {
			return fmt.Errorf("%s.transparent: %q needs upstream \"original\"", field, l.Transparent)
		}
	default:
		return fmt.Errorf("%s.transparent: must be tproxy or redirect, got %q", field, l.Transparent)
	}
	if original && l.Protocol == "quic" {
		return fmt.Errorf("%s.upstream: \"original\" needs a tcp listener (http, tls or auto), not quic", field)
	}
	if l.SpoofSource && !original {
		return fmt.Errorf("%s.spoof_source: needs upstream \"original\" and transparent: tproxy or redirect", field)
	}
	var err error
	if l.allowed, err = parsePrefixes(l.AllowedDestinations, field+".allowed_destinations"); err != nil {
		return err
	}
	if len(l.allowed) > 0 && !original {
		return fmt.Errorf("%s.allowed_destinations: only applies with upstream \"original\"", field)
	}
	switch l.OtherProtocols {
	case "pass", "block":
	default:
		return fmt.Errorf("%s.other_protocols: must be pass or block, got %q", field, l.OtherProtocols)
	}
	if l.SniffTimeout < 0 {
		return fmt.Errorf("%s.sniff_timeout: must not be negative, got %s", field, l.SniffTimeout)
	}
	if l.acceptFrom, err = parsePrefixes(l.ProxyProtocol.AcceptFrom, field+".proxy_protocol.accept_from"); err != nil {
		return err
	}
	switch l.ProxyProtocol.Send {
	case "", "v1", "v2":
	default:
		return fmt.Errorf("%s.proxy_protocol.send: must be v1 or v2, got %q", field, l.ProxyProtocol.Send)
	}
	if l.Protocol == "quic" && (len(l.acceptFrom) > 0 || l.ProxyProtocol.Send != "") {
		return fmt.Errorf("%s.proxy_protocol: not supported on quic listeners", field)
	}
	return nil
}

// parsePrefixes parses CIDRs ("10.0.0.0/8", "2001:db8::/32") and single
// IPs (taken as /32 or /128), naming the bad entry.
func parsePrefixes(ss []string, field string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range ss {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil && a.Zone() == "" {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || !p.IsValid() {
			return nil, fmt.Errorf("%s[%d]: must be a CIDR or an IP address, got %q", field, i, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// proxyListener converts l (validated) into the data plane's listener.
// The sniffing keys only reach auto listeners (others ignore them).
func (l *ListenerConfig) proxyListener() proxy.ListenerConfig {
	pl := proxy.ListenerConfig{
		Name:                l.Name,
		Protocol:            l.Protocol,
		Address:             l.Address,
		Upstream:            l.Upstream,
		ForwardedProto:      l.ForwardedProto,
		Transparent:         l.Transparent,
		SpoofSource:         l.SpoofSource,
		AllowedDestinations: l.allowed,
		ProxyProtocol:       proxy.ProxyProtocol{AcceptFrom: l.acceptFrom, Send: l.ProxyProtocol.Send},
	}
	if l.Protocol == "auto" {
		pl.OtherProtocols, pl.SniffTimeout = l.OtherProtocols, l.SniffTimeout
	}
	return pl
}
