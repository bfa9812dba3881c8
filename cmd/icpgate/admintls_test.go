package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/pebbletest"
)

// TestAdminTLSPebble serves a handler over HTTPS with the admin listener's
// certmagic config and lets a real ACME server (pebble) issue the
// certificate, validating TLS-ALPN-01 against that very listener.
func TestAdminTLSPebble(t *testing.T) {
	port := pebbletest.FreePorts(t, 1)[0]
	ca := pebbletest.Start(t, port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	storage := t.TempDir()
	a, err := newAdminTLS([]string{"admin.example.cn"}, TLSPageConfig{ACMEDirectory: ca.Directory, CARootsFile: ca.TLSRootsFile, StorageDir: storage}, addr, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "admin ok") }),
		ErrorLog: log.New(io.Discard, "", 0), // handshakes fail until the certificate is issued
	}
	go srv.Serve(tls.NewListener(ln, a.tlsConfig()))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.manage(ctx); err != nil {
		t.Fatal(err)
	}

	get := func() (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "admin.example.cn", RootCAs: ca.Roots})
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: admin.example.cn\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	var got string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got, err = get(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := "admin ok"; got != want || err != nil {
		t.Fatalf("GET over HTTPS: got %q, %v, want %q", got, err, want)
	}
	matches, _ := filepath.Glob(filepath.Join(storage, "certificates", "*", "admin.example.cn", "admin.example.cn.crt"))
	if len(matches) != 1 {
		t.Errorf("stored certificate: got %q, want one file", matches)
	}
}

func TestAdminTLSConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		names   []string
		address string
		want    string
	}{
		{nil, "127.0.0.1:9443", "admin.tls_names"},
		{[]string{"localhost"}, "127.0.0.1:9443", "admin.tls_names"},
		{[]string{"192.0.2.1"}, "127.0.0.1:9443", "admin.tls_names"},
		{[]string{"bad name.cn"}, "127.0.0.1:9443", "admin.tls_names"},
		{[]string{"admin.example.cn"}, "127.0.0.1:0", "admin.address"},
		{[]string{"admin.example.cn"}, "127.0.0.1", "admin.address"},
	} {
		t.Run(strings.Join(tt.names, ",")+" "+tt.address, func(t *testing.T) {
			_, err := newAdminTLS(tt.names, TLSPageConfig{StorageDir: t.TempDir()}, tt.address, slog.New(slog.DiscardHandler))
			if err == nil || !errors.Is(err, errAdminTLS) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an errAdminTLS naming %q", err, tt.want)
			}
		})
	}
}
