package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nginxRecipe returns the nginx recipe of docs/security.md: the nginx
// code block after its "recipe: nginx" marker. The test runs exactly
// that text, so the doc and what is tested cannot drift apart.
func nginxRecipe(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "<!-- recipe: nginx -->\n```nginx\n")
	if !ok {
		t.Fatal("docs/security.md has no nginx recipe block after <!-- recipe: nginx -->")
	}
	recipe, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("docs/security.md: the nginx recipe block does not end")
	}
	return recipe
}

// writeSelfSigned writes a self-signed certificate for names and its key
// as PEM files in dir.
func writeSelfSigned(t *testing.T, dir string, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startNginx runs nginx with two name-based TLS sites, filed-demo.cn
// (the default server) and unfiled-demo.cn, each answering its own name,
// on two ports: with recipe in every server block on the first, without
// it on the second. It returns the two addresses.
func startNginx(t *testing.T, nginx, recipe string) (withRecipe, without string) {
	t.Helper()
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir, "filed-demo.cn", "unfiled-demo.cn")
	withRecipe, without = freePort(t), freePort(t)
	var servers strings.Builder
	for _, site := range []struct{ addr, check string }{{withRecipe, recipe}, {without, ""}} {
		for i, name := range []string{"filed-demo.cn", "unfiled-demo.cn"} {
			def := ""
			if i == 0 {
				def = " default_server"
			}
			fmt.Fprintf(&servers, `  server {
    listen %s ssl%s;
    server_name %s;
    ssl_certificate %s;
    ssl_certificate_key %s;
%s
    location / { return 200 "site %s\n"; }
  }
`, site.addr, def, name, cert, key, site.check, name)
		}
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
%[2]s}
`, dir, servers.String())
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range []string{withRecipe, without} {
		for {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				t.Fatalf("nginx exited: %s\n%s", out.String(), log)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx does not listen on %s", a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return withRecipe, without
}

// TestSecurityNginxRecipe runs docs/security.md's nginx recipe behind a
// real `icpgate serve` and shows the SNI/Host gap it closes: curl with a
// filed SNI and an unfiled Host reaches the unfiled site without the
// recipe and gets 421 with it, while a matching Host gets its page; a
// client without SNI (passed by policy.tls_without_sni) gets 421 too.
func TestSecurityNginxRecipe(t *testing.T) {
	nginx := needTool(t, "nginx")
	curl := needTool(t, "curl")
	withRecipe, without := startNginx(t, nginx, nginxRecipe(t))

	dir := t.TempDir()
	reg := `{"domain":"filed-demo.cn","state":"filed","filing_number":"京ICP备10206937号-1","subject":"北京测试科技有限公司","subject_type":"enterprise","province":"京","updated_at":"2026-11-01T08:00:00Z"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "registry.jsonl"), []byte(reg), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`node: security
registry:
  file: registry.jsonl
listeners:
  - {name: recipe, protocol: tls, address: "127.0.0.1:0", upstream: %q}
  - {name: plain, protocol: tls, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
policy:
  tls_without_sni: pass
log:
  level: error
`, withRecipe, without)
	path := filepath.Join(dir, "icpgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	g := runServe(t, path)

	tests := []struct {
		listener, url, host string
		want                string // status and body
	}{
		{"plain", "https://filed-demo.cn:%s/", "unfiled-demo.cn", "200 site unfiled-demo.cn"}, // the gap
		{"plain", "https://filed-demo.cn:%s/", "", "200 site filed-demo.cn"},
		{"recipe", "https://filed-demo.cn:%s/", "unfiled-demo.cn", "421 "},
		{"recipe", "https://filed-demo.cn:%s/", "", "200 site filed-demo.cn"},
		{"recipe", "https://filed-demo.cn:%s/", "FILED-DEMO.CN", "200 site filed-demo.cn"},
		{"recipe", "https://127.0.0.1:%s/", "unfiled-demo.cn", "421 "}, // no SNI
		{"recipe", "https://unfiled-demo.cn:%s/", "", "000 "},          // blocked by the gateway
	}
	for _, tt := range tests {
		_, port, _ := net.SplitHostPort(g.ProxyAddr(tt.listener).String())
		args := []string{"-sk", "--http1.1", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}",
			"--resolve", "filed-demo.cn:" + port + ":127.0.0.1", "--resolve", "unfiled-demo.cn:" + port + ":127.0.0.1"}
		if tt.host != "" {
			args = append(args, "-H", "Host: "+tt.host)
		}
		args = append(args, fmt.Sprintf(tt.url, port))
		out, _ := exec.Command(curl, args...).Output() // a refused handshake exits non-zero
		// The body, then the status on a line of its own (000: no response).
		text := strings.TrimRight(string(out), "\n")
		i := strings.LastIndexByte(text, '\n')
		body, code := strings.TrimSpace(text[:max(i, 0)]), text[i+1:]
		if strings.HasPrefix(body, "<") {
			body = "" // nginx's own error page: the status says it
		}
		if got := code + " " + body; strings.TrimSpace(got) != strings.TrimSpace(tt.want) {
			t.Errorf("%s %s Host %q: got %q, want %q", tt.listener, tt.url, tt.host, got, tt.want)
		}
	}
}

// TestConfigTLSWithoutSNI: policy.tls_without_sni defaults to ip_access's
// verdict and refuses other values, naming the field.
func TestConfigTLSWithoutSNI(t *testing.T) {
	base := "registry:\n  file: r.jsonl\nlisteners:\n  - {name: tls, protocol: tls, address: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}\n"
	tests := []struct {
		policy, want, wantErr string
	}{
		{"", "pass", ""},
		{"policy:\n  ip_access: block\n", "block", ""},
		{"policy:\n  ip_access: block\n  tls_without_sni: pass\n", "pass", ""},
		{"policy:\n  tls_without_sni: block\n", "block", ""},
		{"policy:\n  tls_without_sni: allow\n", "", "policy.tls_without_sni"},
	}
	for _, tt := range tests {
		c, err := parseConfig([]byte(base+tt.policy), ".", "test.yaml")
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: got %v, want an error naming %s", tt.policy, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.policy, err)
		case c.Policy.TLSWithoutSNI != tt.want || c.ProxyConfig().Policy.TLSWithoutSNI != tt.want:
			t.Errorf("%q: got %q, want %q", tt.policy, c.Policy.TLSWithoutSNI, tt.want)
		}
	}
}
