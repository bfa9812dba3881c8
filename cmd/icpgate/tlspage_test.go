package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/pebbletest"
	"github.com/icpgate/icpgate/proxy"
)

// TestTLSPageConfig checks policy.tls_page's YAML keys reach the data
// plane, with relative paths resolved against the config's directory.
func TestTLSPageConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, yaml string
		want       proxy.TLSPage
	}{
		{"defaults", "", proxy.TLSPage{StorageDir: filepath.Join(dir, "data/certmagic")}},
		{"every key", `policy:
  tls_block: page
  tls_page:
    acme_directory: https://ca.example/dir
    email: ops@example.cn
    storage_dir: /var/lib/icpgate/certs
    ca_roots_file: roots.pem
    issue_per_minute: 5
    max_names_per_hour: 50
    timeout: 3s
`, proxy.TLSPage{ACMEDirectory: "https://ca.example/dir", Email: "ops@example.cn", StorageDir: "/var/lib/icpgate/certs",
			CARootsFile: filepath.Join(dir, "roots.pem"), IssuePerMinute: 5, MaxNamesPerHour: 50, Timeout: 3 * time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "icpgate.yaml")
			if err := os.WriteFile(path, []byte(minimal+tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ProxyConfig().Policy.TLSPage; got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestServeTLSPage runs `icpgate serve` with tls_block: page against a real
// ACME server (pebble): an unfiled name gets a certificate and the block
// page over HTTPS, and the origin never sees it.
func TestServeTLSPage(t *testing.T) {
	ca := pebbletest.Start(t, 0)
	o := startOrigin(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, o, fmt.Sprintf(`policy:
  tls_block: page
  tls_page:
    acme_directory: %q
    ca_roots_file: %q
    storage_dir: certs
`, ca.Directory, ca.TLSRootsFile))
	g := runServe(t, path)

	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.ProxyAddr("tls").String(),
		&tls.Config{ServerName: "www.unfiled.cn", RootCAs: ca.Roots})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: www.unfiled.cn\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusForbidden; got != want {
		t.Errorf("status: got %d, want %d", got, want)
	}
	if got, want := resp.Header.Get("X-Icpgate-Reason"), "unfiled"; got != want {
		t.Errorf("X-Icpgate-Reason: got %q, want %q", got, want)
	}
	if n := o.seen()["tls:www.unfiled.cn"]; n != 0 {
		t.Errorf("origin saw the blocked name %d times, want 0", n)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "certs", "certificates", "*", "www.unfiled.cn", "www.unfiled.cn.crt")); len(m) != 1 {
		t.Errorf("stored certificate under %s: got %q, want one", filepath.Join(dir, "certs"), m)
	}
}

// TestServeAdminTLS runs `icpgate serve` with admin.tls_names: the admin
// console is served over HTTPS with a certificate pebble issues after
// validating TLS-ALPN-01 against the admin listener itself.
func TestServeAdminTLS(t *testing.T) {
	port := pebbletest.FreePorts(t, 1)[0]
	ca := pebbletest.Start(t, port)
	o := startOrigin(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, o, fmt.Sprintf(`policy:
  tls_page:
    acme_directory: %q
    ca_roots_file: %q
`, ca.Directory, ca.TLSRootsFile))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), `address: "127.0.0.1:0"`+"\n",
		fmt.Sprintf("address: \"127.0.0.1:%d\"\n  tls_names: [admin.example.cn]\n", port), 1))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runServe(t, path)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: "admin.example.cn", RootCAs: ca.Roots},
	}}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if got, want := resp.StatusCode, http.StatusOK; got != want {
				t.Errorf("/healthz over HTTPS: got %d, want %d", got, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz over HTTPS: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
