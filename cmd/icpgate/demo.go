package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
)

// Demo host names; each is in configs/registry.sample.jsonl except
// demoUnfiled, which must not be.
const (
	demoFiled       = "filed-demo.cn"
	demoCancelled   = "cancelled-demo.cn"
	demoBlacklisted = "blacklisted-demo.cn"
	demoUnfiled     = "unfiled-demo.cn"
	// demoNoAccess is filed with another access provider: the tour
	// whitelists it, as support does while its access filing is under way.
	demoNoAccess = "no-access-demo.cn"
)

// cmdDemo runs the gateway on the embedded config with two built-in demo
// origins (plain HTTP and TLS with a self-signed certificate) and prints
// commands to try. The addresses are flags so tests can use port 0.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http", "127.0.0.1:8080", "gateway HTTP listener")
	tlsAddr := fs.String("tls", "127.0.0.1:8443", "gateway TLS listener")
	adminAddr := fs.String("admin", "127.0.0.1:9090", "admin listener")
	originHTTP := fs.String("origin-http", "127.0.0.1:18080", "demo HTTP origin")
	originTLS := fs.String("origin-tls", "127.0.0.1:18443", "demo TLS origin")
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "icpgate demo: unexpected argument %q\n", fs.Arg(0))
		return exitError
	}
	cfg, err := LoadConfig("")
	if err != nil {
		fmt.Fprintf(stderr, "icpgate demo: %v\n", err)
		return exitError
	}
	origins, err := startDemoOrigins(*originHTTP, *originTLS)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate demo: %v\n", err)
		return exitError
	}
	defer origins.close()
	cfg.Admin.Address = *adminAddr
	// A token file of the demo's own, with an admin token the tour prints,
	// so the console and the admin commands work at once. Overrides live
	// in a temporary state file (admin.state ""): both go at exit.
	tokDir, err := os.MkdirTemp("", "icpgate-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "icpgate demo: %v\n", err)
		return exitError
	}
	defer os.RemoveAll(tokDir)
	cfg.Admin.TokensFile = filepath.Join(tokDir, "tokens.jsonl")
	token, err := demoToken(ctx, cfg.Admin.TokensFile)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate demo: %v\n", err)
		return exitError
	}
	for i := range cfg.Listeners {
		switch cfg.Listeners[i].Protocol {
		case "http":
			cfg.Listeners[i].Address, cfg.Listeners[i].Upstream = *httpAddr, origins.http.Addr().String()
		case "tls":
			cfg.Listeners[i].Address, cfg.Listeners[i].Upstream = *tlsAddr, origins.tls.Addr().String()
		}
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "icpgate demo: %v\n", err)
		return exitError
	}
	prev, _ := ctx.Value(startedKey{}).(func(*Gateway))
	ctx = withStarted(ctx, func(g *Gateway) {
		printDemo(stdout, g, cfg, token)
		if prev != nil {
			prev(g)
		}
	})
	return serve(ctx, cfg, serveOptions{}, stderr)
}

// demoToken creates the demo's admin token in the token file at path and
// returns its secret.
func demoToken(ctx context.Context, path string) (string, error) {
	tf, err := adminstore.OpenTokenFile(path)
	if err != nil {
		return "", err
	}
	secret, t, err := admin.NewToken("demo", admin.RoleAdmin, time.Now())
	if err != nil {
		return "", err
	}
	if err := tf.Create(ctx, t); err != nil {
		return "", fmt.Errorf("demo token: %w", err)
	}
	return secret, nil
}

// demoOrigins are the demo's upstream servers.
type demoOrigins struct {
	http, tls net.Listener
	srv       *http.Server
}

func (o *demoOrigins) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	o.srv.Shutdown(ctx)
}

// startDemoOrigins serves a page naming the requested host on httpAddr
// (plain) and tlsAddr (TLS, self-signed certificate for the demo names).
func startDemoOrigins(httpAddr, tlsAddr string) (*demoOrigins, error) {
	cert, err := selfSigned([]string{demoFiled, "*." + demoFiled, demoCancelled, demoBlacklisted, demoUnfiled, "localhost"})
	if err != nil {
		return nil, fmt.Errorf("demo origin certificate: %w", err)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, fmt.Errorf("demo origin: %w", err)
	}
	tl, err := net.Listen("tcp", tlsAddr)
	if err != nil {
		hl.Close()
		return nil, fmt.Errorf("demo origin: %w", err)
	}
	o := &demoOrigins{http: hl, tls: tls.NewListener(tl, &tls.Config{Certificates: []tls.Certificate{cert}})}
	o.srv = &http.Server{
		Handler:           http.HandlerFunc(demoOriginHandler),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	go o.srv.Serve(o.http)
	go o.srv.Serve(o.tls)
	return o, nil
}

// demoOriginHandler is the hosted site: it says which host it served.
func demoOriginHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Demo-Origin", "1")
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	fmt.Fprintf(w, "hello from the demo origin: %s://%s%s reached the hosted server\n",
		scheme, html.EscapeString(r.Host), html.EscapeString(r.URL.Path))
}

// selfSigned makes an ECDSA certificate for names, valid for a day.
func selfSigned(names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"icpgate demo"}},
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

var demoText = template.Must(template.New("demo").Parse(`
icpgate demo is running (Ctrl-C to stop).
  gateway http  {{.HTTP}}  ->  demo origin {{.OriginHTTP}}
  gateway tls   {{.TLS}}  ->  demo origin {{.OriginTLS}} (self-signed)
  admin         http://{{.Admin}}
  console       http://{{.Admin}}/  (sign in with the demo's admin token)

The token also works for the API and the admin commands, until the demo stops:
  export ICPGATE_TOKEN={{.Token}}

Filed domain and its subdomains pass:
  curl -H 'Host: {{.Filed}}' http://{{.HTTP}}/
  curl -H 'Host: www.{{.Filed}}' http://{{.HTTP}}/
Unfiled, cancelled and blacklisted domains get a 403 block page (JSON on request):
  curl -i -H 'Host: {{.Unfiled}}' http://{{.HTTP}}/
  curl -i -H 'Host: {{.Cancelled}}' -H 'Accept: application/json' http://{{.HTTP}}/
  curl -i -H 'Host: {{.Blacklisted}}' http://{{.HTTP}}/
TLS is passed through untouched when filed, refused with an alert when not:
  curl -vk --resolve {{.Filed}}:{{.TLSPort}}:{{.TLSHost}} https://{{.Filed}}:{{.TLSPort}}/
  curl -vk --resolve {{.Unfiled}}:{{.TLSPort}}:{{.TLSHost}} https://{{.Unfiled}}:{{.TLSPort}}/
  openssl s_client -connect {{.TLS}} -servername {{.Filed}} </dev/null
  openssl s_client -connect {{.TLS}} -servername {{.Blacklisted}} </dev/null
Why is it blocked?
  curl --oauth2-bearer $ICPGATE_TOKEN 'http://{{.Admin}}/v1/explain?host=www.{{.Cancelled}}'
  go run ./cmd/icpgate check {{.Filed}} {{.Unfiled}} {{.Blacklisted}}
  go run ./cmd/icpgate check --json www.{{.Filed}}
Whitelist a domain while its access filing is under way, and see who did what:
  go run ./cmd/icpgate allow add {{.NoAccess}} --ticket SR-1 --reason 'access filing passed preliminary review' --ttl 24h{{.AdminFlag}}
  curl -H 'Host: {{.NoAccess}}' http://{{.HTTP}}/
  go run ./cmd/icpgate explain {{.NoAccess}}{{.AdminFlag}}
  go run ./cmd/icpgate allow ls{{.AdminFlag}}
  go run ./cmd/icpgate audit ls{{.AdminFlag}}
  go run ./cmd/icpgate report unfiled{{.AdminFlag}}
Metrics and health:
  curl -s http://{{.Admin}}/metrics | grep '^icpgate_'
  curl http://{{.Admin}}/readyz
`))

// printDemo prints the commands to try against the running gateway.
func printDemo(w io.Writer, g *Gateway, cfg *Config, token string) {
	a := demoAddrs{Token: token}
	a.Admin = g.AdminAddr().String()
	for _, l := range cfg.Listeners {
		addr := g.ProxyAddr(l.Name)
		if addr == nil {
			continue
		}
		switch l.Protocol {
		case "http":
			a.HTTP, a.OriginHTTP = addr.String(), l.Upstream
		case "tls":
			a.TLS, a.OriginTLS = addr.String(), l.Upstream
		}
	}
	io.WriteString(w, demoTour(a))
}

// demoAddrs are the addresses the tour names, and the demo's token.
type demoAddrs struct {
	HTTP, TLS, Admin, OriginHTTP, OriginTLS string
	Token                                   string
}

// demoTour renders the tour for a; README.md's quick tour is this text
// for the default addresses (a test keeps them in step).
func demoTour(a demoAddrs) string {
	tlsHost, tlsPort, _ := net.SplitHostPort(a.TLS)
	data := map[string]string{
		"HTTP": a.HTTP, "TLS": a.TLS, "Admin": a.Admin, "OriginHTTP": a.OriginHTTP, "OriginTLS": a.OriginTLS,
		"TLSHost": tlsHost, "TLSPort": tlsPort,
		"Filed": demoFiled, "Unfiled": demoUnfiled, "Cancelled": demoCancelled, "Blacklisted": demoBlacklisted,
		"NoAccess": demoNoAccess, "Token": a.Token, "AdminFlag": "",
	}
	if a.Admin != defaultAdminAddress {
		// The admin commands find 127.0.0.1:9090 in the embedded config;
		// elsewhere they must be told.
		data["AdminFlag"] = " --admin http://" + a.Admin
	}
	var b strings.Builder
	if err := demoText.Execute(&b, data); err != nil {
		// The template is fixed and its data complete: a failure is a bug.
		panic(errors.New("demo text: " + err.Error()))
	}
	return b.String()
}
