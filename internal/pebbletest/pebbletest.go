// Package pebbletest runs a real ACME server for tests: Debian's pebble
// (package pebble), on loopback ports with a temporary config and its own
// HTTPS certificate, stopped on cleanup. Nothing is mocked: certmagic talks
// ACME to it exactly as to Let's Encrypt.
//
// Usage:
//
//	ca := pebbletest.Start(t, 0) // every authorization valid at once
//	iss := certmagic.ACMEIssuer{CA: ca.Directory, TrustedRoots: ca.TLSRoots, ...}
//	... a client verifies issued certificates with ca.Roots
//
// With a non-zero TLS-ALPN port pebble really validates TLS-ALPN-01
// (RFC 8737) by connecting to 127.0.0.1 on that port, every name resolved
// to 127.0.0.1 by pebble-challtestsrv's mock DNS (from the same package).
//
// In CI (CI=true) a missing pebble fails the test; elsewhere it skips with
// the command that installs it.
package pebbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/syncbuf"
)

// CA is a running pebble.
type CA struct {
	// Directory is the ACME directory URL.
	Directory string
	// TLSRootsFile is a PEM file with the root of pebble's own HTTPS
	// certificate, for an ACME client's trusted roots.
	TLSRootsFile string
	// TLSRoots is the same root as a pool.
	TLSRoots *x509.CertPool
	// Roots holds pebble's issuing root (from its management API,
	// /roots/0), to verify the certificates it issues.
	Roots *x509.CertPool
}

// Start runs pebble until the test ends, without artificial delays or
// nonce rejections. With tlsALPNPort 0 every authorization is valid
// without a challenge connection (PEBBLE_VA_ALWAYS_VALID); otherwise
// pebble validates TLS-ALPN-01 against 127.0.0.1:tlsALPNPort.
func Start(t testing.TB, tlsALPNPort int) *CA {
	t.Helper()
	bin := look(t, "pebble")
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := loopbackCert(t)
	ca := &CA{TLSRootsFile: filepath.Join(dir, "ca.pem"), TLSRoots: x509.NewCertPool()}
	ca.TLSRoots.AppendCertsFromPEM(caPEM)
	for name, b := range map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ports := FreePorts(t, 6)
	if tlsALPNPort != 0 {
		ports[3] = tlsALPNPort
	}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       ports[2],
		"tlsPort":                        ports[3],
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	cb, _ := json.Marshal(conf)
	confPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confPath, cb, 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	args := []string{"-config", confPath}
	env := append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	if tlsALPNPort == 0 {
		env = append(env, "PEBBLE_VA_ALWAYS_VALID=1")
	} else {
		dns := fmt.Sprintf("127.0.0.1:%d", ports[4])
		run(t, &out, nil, look(t, "pebble-challtestsrv"), "-dns01", dns, "-http01", "", "-https01", "",
			"-tlsalpn01", "", "-management", fmt.Sprintf("127.0.0.1:%d", ports[5]), "-defaultIPv6", "")
		args = append(args, "-dnsserver", dns)
	}
	run(t, &out, env, bin, args...)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.TLSRoots}}}
	defer client.CloseIdleConnections()
	ca.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", ports[0])
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(ca.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not come up: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", ports[1]))
	if err != nil {
		t.Fatalf("fetching pebble's root: %v", err)
	}
	root, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("fetching pebble's root: status %d, %v", resp.StatusCode, err)
	}
	ca.Roots = x509.NewCertPool()
	if !ca.Roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble's /roots/0 is not PEM: %q", root)
	}
	return ca
}

// look finds a binary of Debian's pebble package.
func look(t testing.TB, name string) string {
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (Debian package pebble): %v", name, err)
		}
		t.Skipf("%s not installed (apt-get install pebble): %v", name, err)
	}
	return bin
}

// run starts bin with args until the test ends, its output in out (logged
// when the test failed).
func run(t testing.TB, out *syncBuffer, env []string, bin string, args ...string) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
}

// syncBuffer is a bytes.Buffer safe for child processes' pipes.
type syncBuffer = syncbuf.Buffer

// loopbackCert makes a CA and a certificate for 127.0.0.1 and localhost
// signed by it (for pebble's own HTTPS listeners), as PEM.
func loopbackCert(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "icpgate test pebble CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago, for servers the test starts later (pebble, a gateway). They are
// drawn from 10000-19999, below the kernel's ephemeral range (32768 and up
// by default): a port from ":0" is ephemeral, and between its release and
// the server binding it any outgoing connection on the machine may take it.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for try := 0; len(ports) < n; try++ {
		if try == 1000 {
			t.Fatalf("no %d free ports in 10000-19999", n)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 10000+mrand.IntN(10000)))
		if err != nil {
			continue // taken; listeners held meanwhile keep the picks distinct
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
