package compliance

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/icpgate/icpgate/internal/testtool"
)

// startDNS runs Debian's dnsmasq on a loopback port answering the names
// of hosts (a hosts file) and NXDOMAIN for anything else under .test, and
// returns its address.
func startDNS(t testing.TB, hosts string) string {
	t.Helper()
	bin := testtool.Need(t, "/usr/sbin/dnsmasq", "dnsmasq-base")
	dir := t.TempDir()
	file := filepath.Join(dir, "hosts")
	if err := os.WriteFile(file, []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testtool.FreePort(t)
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
		"--no-resolv", "--no-hosts", "--addn-hosts=" + file, "--local=/test/",
		"--listen-address=127.0.0.1", "--bind-interfaces", fmt.Sprintf("--port=%d", port),
		"--log-facility=-",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root") // keeps the temporary hosts file readable
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startProcess(t, "dnsmasq", exec.Command(bin, args...), func() error {
		_, err := lookup(context.Background(), addr, "ready.test")
		return err
	})
	return addr
}

func TestComplianceAccessDNSMasq(t *testing.T) {
	server := startDNS(t, `
10.1.0.5 inside.test
10.1.0.6 www.inside.test
2001:db8:1::5 inside.test
10.1.0.7 mixed.test
203.0.113.9 www.mixed.test
2001:db8:ffff::1 v6out.test
10.1.2.3 apexonly.test
10.1.2.3 ready.test
`)
	nets := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8:1::/48")}
	tests := []struct {
		domain, resolver string
		want             AccessStatus
		addrs, outside   string // space-separated
	}{
		{"inside.test", server, AccessOK, "10.1.0.5 10.1.0.6 2001:db8:1::5", ""},
		{"mixed.test", server, AccessOutside, "10.1.0.7 203.0.113.9", "203.0.113.9"},
		{"v6out.test", server, AccessOutside, "2001:db8:ffff::1", "2001:db8:ffff::1"},
		{"apexonly.test", server, AccessOK, "10.1.2.3", ""},
		{"none.test", server, AccessUnresolved, "", ""},
		{"inside.test", "", AccessSkipped, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.domain+"/"+string(tt.want), func(t *testing.T) {
			got := CheckAccess(context.Background(), tt.domain, AccessOptions{Resolver: tt.resolver, ProviderNetworks: nets})
			if got.Status != tt.want || join(got.Addresses) != tt.addrs || join(got.Outside) != tt.outside {
				t.Errorf("got %s %q outside %q (note %q), want %s %q outside %q",
					got.Status, join(got.Addresses), join(got.Outside), got.Note, tt.want, tt.addrs, tt.outside)
			}
		})
	}
}

func join(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}
