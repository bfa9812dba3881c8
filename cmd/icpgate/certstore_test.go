package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/icpgate/icpgate/internal/pebbletest"
	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/proxy"
)

// TestPGCertStorage runs the certificate storage against a real
// PostgreSQL (one server, a database per subtest).
func TestPGCertStorage(t *testing.T) {
	srv := pgtest.New(t)
	t.Run("semantics", func(t *testing.T) { testPGCertStorageSemantics(t, srv.NewDB(t)) })
	t.Run("shared by nodes", func(t *testing.T) { testPGCertStorageSharedByNodes(t, srv.NewDB(t)) })
}

// testPGCertStorageSemantics checks the storage semantics certmagic relies
// on.
func testPGCertStorageSemantics(t *testing.T, dsn string) {
	ctx := context.Background()
	s, err := newPGCertStorage(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := newPGCertStorage("postgres://bad dsn"); err == nil {
		t.Error("a malformed DSN: got nil, want an error")
	}
	for _, k := range []string{"certificates/ca/a.cn/a.cn.crt", "certificates/ca/a.cn/a.cn.key", "certificates/ca/b_c.cn/b_c.cn.crt", "acme/ca/users/x.json"} {
		if err := s.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Store(ctx, "certificates/ca/a.cn/a.cn.crt", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "certificates/ca/a.cn/a.cn.crt"); string(got) != "new" || err != nil {
		t.Errorf("Load after overwrite: got %q, %v, want %q", got, err, "new")
	}
	if _, err := s.Load(ctx, "certificates/ca/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing key: got %v, want fs.ErrNotExist", err)
	}
	for _, tt := range []struct {
		key  string
		want bool
	}{
		{"certificates/ca/a.cn/a.cn.key", true},
		{"certificates/ca/a.cn", true}, // a directory
		{"certificates", true},
		{"certificates/ca/a", false}, // not a component prefix
		{"certificates/ca/b%c.cn", false},
		{"certificates/ca/bxc.cn", false}, // '_' is no wildcard
	} {
		if got := s.Exists(ctx, tt.key); got != tt.want {
			t.Errorf("Exists(%q): got %v, want %v", tt.key, got, tt.want)
		}
	}
	for _, tt := range []struct {
		path      string
		recursive bool
		want      string
	}{
		{"certificates/ca", false, "certificates/ca/a.cn certificates/ca/b_c.cn"},
		{"certificates/ca", true, "certificates/ca/a.cn/a.cn.crt certificates/ca/a.cn/a.cn.key certificates/ca/b_c.cn/b_c.cn.crt"},
		{"certificates/ca/a.cn", false, "certificates/ca/a.cn/a.cn.crt certificates/ca/a.cn/a.cn.key"},
	} {
		got, err := s.List(ctx, tt.path, tt.recursive)
		if strings.Join(got, " ") != tt.want || err != nil {
			t.Errorf("List(%q, %v): got %q, %v, want %q", tt.path, tt.recursive, got, err, tt.want)
		}
	}
	if ki, err := s.Stat(ctx, "certificates/ca/a.cn/a.cn.crt"); err != nil || !ki.IsTerminal || ki.Size != 3 || ki.Modified.IsZero() {
		t.Errorf("Stat of a value: got %+v, %v", ki, err)
	}
	if ki, err := s.Stat(ctx, "certificates/ca/a.cn"); err != nil || ki.IsTerminal {
		t.Errorf("Stat of a directory: got %+v, %v", ki, err)
	}
	if err := s.Delete(ctx, "certificates/ca/a.cn"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/a.cn/a.cn.key") || !s.Exists(ctx, "certificates/ca/b_c.cn/b_c.cn.crt") {
		t.Errorf("Delete of a directory removed the wrong keys")
	}

	// Locks exclude across nodes (another pool stands for another node).
	other, err := newPGCertStorage(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.Lock(ctx, "issue_cert_a.cn"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = other.Lock(wctx, "issue_cert_a.cn")
	cancel()
	if err == nil {
		t.Fatal("a second node took a held lock")
	}
	if err := other.Lock(ctx, "issue_cert_b.cn"); err != nil {
		t.Errorf("another name's lock: %v", err)
	}
	if err := s.Unlock(ctx, "issue_cert_a.cn"); err != nil {
		t.Fatal(err)
	}
	if err := other.Lock(ctx, "issue_cert_a.cn"); err != nil {
		t.Errorf("lock after unlock: %v", err)
	}
	if err := s.Unlock(ctx, "never_locked"); err == nil {
		t.Error("Unlock of a lock not held: got nil, want an error")
	}
}

// blockAll is a Decider blocking every name as unfiled, with the last two
// labels as its registrable domain.
type blockAll struct{}

func (blockAll) Decide(host string) proxy.Decision {
	h := strings.ToLower(host)
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return proxy.Decision{Reason: "invalid_host"}
	}
	return proxy.Decision{Reason: "unfiled", Host: h, Domain: strings.Join(labels[len(labels)-2:], ".")}
}

// testPGCertStorageSharedByNodes runs two data planes (two nodes) with the
// page certificates in one PostgreSQL database: a certificate node A
// obtained from pebble is served by node B without a second order.
func testPGCertStorageSharedByNodes(t *testing.T, dsn string) {
	ca := pebbletest.Start(t, 0)
	ctx := context.Background()
	node := func(name string) (string, *proxy.Metrics) {
		st, err := newPGCertStorage(dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		m := proxy.NewMetrics(prometheus.NewRegistry())
		cfg := proxy.Config{Node: name,
			Listeners: []proxy.ListenerConfig{{Name: "tls", Protocol: "tls", Address: "127.0.0.1:0", Upstream: "127.0.0.1:1"}},
			Policy: proxy.Policy{TLSBlock: "page", ShowNode: true, TLSPage: proxy.TLSPage{
				ACMEDirectory: ca.Directory, CARootsFile: ca.TLSRootsFile, Storage: st, Timeout: 30 * time.Second}}}
		srv, err := proxy.NewServer(cfg, blockAll{}, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(sctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return srv.Addr("tls").String(), m
	}
	get := func(addr string) (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "www.shared.cn", RootCAs: ca.Roots})
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: www.shared.cn\r\nAccept: application/json\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	addrA, mA := node("node-a")
	addrB, mB := node("node-b")
	for _, tt := range []struct {
		node, addr, wantNode string
		m                    *proxy.Metrics
		check                string
	}{
		{"A", addrA, "node-a", mA, "allowed"},
		{"B", addrB, "node-b", mB, "stored"},
	} {
		body, err := get(tt.addr)
		if err != nil || !strings.Contains(body, `"node":"`+tt.wantNode+`"`) {
			t.Fatalf("node %s: got %q, %v, want its block page", tt.node, body, err)
		}
		if got := testutil.ToFloat64(tt.m.TLSPage.CertificateRequests.WithLabelValues(tt.check)); got != 1 {
			t.Errorf("node %s: issuance checks %q: got %v, want 1", tt.node, tt.check, got)
		}
	}
	if got := testutil.ToFloat64(mB.TLSPage.CertificateRequests.WithLabelValues("allowed")); got != 0 {
		t.Errorf("node B ordered its own certificate (%v orders)", got)
	}
}

// TestPGCertStorageDown: with the database unreachable the storage is
// still created (the gateway starts), and every call fails without
// claiming a key is missing.
func TestPGCertStorageDown(t *testing.T) {
	s, err := newPGCertStorage("postgres://icpgate@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Load(ctx, "k"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load: got %v, want a connection error", err)
	}
	if s.Exists(ctx, "k") {
		t.Error("Exists: got true, want false")
	}
	if err := s.Lock(ctx, "k"); err == nil {
		t.Error("Lock: got nil, want a connection error")
	}
}
