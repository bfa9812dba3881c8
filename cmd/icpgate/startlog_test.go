package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartLogBeforeFirstLoad: a gateway whose filing database is down at
// start (and has no local store yet) says its registry is not loaded yet,
// not "records":0, which would read as an empty registry.
func TestStartLogBeforeFirstLoad(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://icpgate@%s/icp?connect_timeout=1", closed.Addr())
	closed.Close() // nothing listens there now
	dir := t.TempDir()
	cfg := fmt.Sprintf(`registry:
  postgres: {dsn: %q}
  store: store.db
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: "127.0.0.1:18080"}
admin: {address: "127.0.0.1:0"}
log: {format: json}
`, dsn)
	path := filepath.Join(dir, "icpgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", path}, &stderr, &stderr) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), `"msg":"icpgate started"`); {
		if time.Now().After(deadline) {
			t.Fatalf("no start line; log:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := stderr.String()
	if !strings.Contains(out, `"records":"not loaded yet"`) || strings.Contains(out, `"records":0`) {
		t.Fatalf("start line should say the registry is not loaded yet; log:\n%s", out)
	}
}
