package compliance

import (
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

	"github.com/icpgate/icpgate/internal/testtool"
)

// startProcess starts cmd, stops it when the test ends and waits until
// ready returns nil.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, ready func() error) {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := ready(); err == nil {
			return
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("%s exited before it was ready (%v):\n%s", name, err, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("%s not ready after 15s:\n%s", name, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nginxConf serves each Host from sites/<host> (a catch-all root), with
// the special behaviour of some fixture hosts, over HTTP and over HTTPS
// with a self-signed certificate.
const nginxConf = `{{ROOT}}worker_processes 1;
daemon off;
master_process on;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path {{DIR}}/tmp/body;
    proxy_temp_path {{DIR}}/tmp/proxy;
    fastcgi_temp_path {{DIR}}/tmp/fastcgi;
    uwsgi_temp_path {{DIR}}/tmp/uwsgi;
    scgi_temp_path {{DIR}}/tmp/scgi;
    types { text/html html; text/plain txt; application/json json; }
    default_type text/html;
    server {
        listen 127.0.0.1:{{HTTP}} default_server;
        listen 127.0.0.1:{{HTTPS}} ssl default_server;
        ssl_certificate {{DIR}}/cert.pem;
        ssl_certificate_key {{DIR}}/key.pem;
        root {{DIR}}/sites/$host;
        index index.html;
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name ~^fleet[0-9]+[.]test$;
        root {{DIR}}/fleet;
        gzip on;
        gzip_types text/html;
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name gzip.test;
        root {{DIR}}/sites/gzip.test;
        gzip on;
        gzip_min_length 0;
        gzip_types text/html;
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name redirect.test;
        root {{DIR}}/sites/redirect.test;
        absolute_redirect off;
        location = / { return 302 /index.html; }
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name offsite.test;
        location / { return 302 http://elsewhere.test/; }
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name apex.test;
        location / { return 302 http://www.apex.test/; }
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name loop.test;
        absolute_redirect off;
        location / { return 302 /again$request_uri; }
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name metadata.test;
        location / { return 302 http://169.254.169.254/latest/meta-data/; }
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name json.test;
        location / { default_type application/json; return 200 '{"icp":"none"}'; }
    }
    server {
        listen 127.0.0.1:{{HTTP}};
        server_name missing.test;
        location / { return 404; }
    }
}
`

// startNginx runs Debian's nginx on loopback serving dir/sites/<host>
// and returns its HTTP and HTTPS addresses.
func startNginx(t testing.TB, dir string) (httpAddr, httpsAddr string) {
	t.Helper()
	bin := testtool.Need(t, "/usr/sbin/nginx", "nginx")
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "tmp", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeSelfSigned(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	hp, sp := testtool.FreePort(t), testtool.FreePort(t)
	root := ""
	if os.Geteuid() == 0 {
		root = "user root;\n"
	}
	conf := nginxConf
	for k, v := range map[string]string{"{{ROOT}}": root, "{{DIR}}": dir, "{{HTTP}}": fmt.Sprint(hp), "{{HTTPS}}": fmt.Sprint(sp)} {
		conf = strings.ReplaceAll(conf, k, v)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr, httpsAddr = fmt.Sprintf("127.0.0.1:%d", hp), fmt.Sprintf("127.0.0.1:%d", sp)
	startProcess(t, "nginx", exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log")), func() error {
		for _, a := range []string{httpAddr, httpsAddr} {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
	return httpAddr, httpsAddr
}

// writeSelfSigned writes a self-signed certificate for nothing in
// particular: the footer check does not verify certificates.
func writeSelfSigned(t testing.TB, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "self-signed.invalid"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}
