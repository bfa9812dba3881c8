package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/internal/pgtest"
)

// gatewayProc is a running `icpgate serve` process.
type gatewayProc struct {
	cmd      *exec.Cmd
	log      *logTail
	web, adm string
}

func startGateway(t *testing.T, bin, config string, waitMsg string) *gatewayProc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	g := &gatewayProc{cmd: cmd, log: tailLog(stderr)}
	if waitMsg != "" {
		g.log.wait(t, waitMsg, nil)
	}
	g.web = g.log.wait(t, "listening", func(m map[string]any) bool { return m["listener"] == "web" })["address"].(string)
	g.adm = g.log.wait(t, "icpgate started", nil)["admin"].(string)
	return g
}

// waitHTTP polls until host answers with the given X-Icpgate-Reason ("" for
// a pass to the origin) and returns how long that took.
func (g *gatewayProc) waitHTTP(t *testing.T, host, reason string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, got, _ := httpGet(t, g.web, host)
		if got == reason {
			return time.Since(start)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("%s via %s: got reason %q, want %q (waited 15 s)", host, g.web, got, reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (g *gatewayProc) readyz(t *testing.T) (int, readyResp) {
	t.Helper()
	resp, err := http.Get("http://" + g.adm + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readyResp
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

type readyResp struct {
	Ready  bool   `json:"ready"`
	Detail string `json:"detail"`
}

// TestBinaryPostgres runs two gateway processes on one filing database:
// both see a change; one is killed with SIGKILL and restarted with the
// database stopped, and serves its local store at once; when the database
// returns it catches up.
func TestBinaryPostgres(t *testing.T) {
	bin := buildBinary(t)
	srv := pgtest.New(t)
	dsn := srv.NewDB(t)
	if code, _, errOut := runCmd(t, dbCmd, "migrate", "-dsn", dsn); code != exitOK {
		t.Fatal(errOut)
	}
	if code, _, errOut := runCmd(t, importCmd, "-dsn", dsn, filepath.Join("testdata", "import.jsonl")); code != exitOK {
		t.Fatal(errOut)
	}
	o := startOrigin(t)
	config := func(name string) string {
		dir := t.TempDir()
		cfg := fmt.Sprintf(`node: %s
registry:
  postgres:
    dsn: %q
    poll_interval: 1s
  store: icpgate.db
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
log:
  level: info
  format: json
`, name, dsn, o.http.Addr().String())
		path := filepath.Join(dir, "icpgate.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ctx := context.Background()
	exec1 := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}

	cfgA, cfgB := config("edge-a"), config("edge-b")
	a := startGateway(t, bin, cfgA, "")
	b := startGateway(t, bin, cfgB, "")
	for _, g := range []*gatewayProc{a, b} {
		g.waitHTTP(t, "www.filed.cn", "")
		g.waitHTTP(t, "unfiled.cn", "unfiled")
	}
	exec1("UPDATE icpgate_records SET state = 'access_revoked' WHERE domain = 'filed.cn'")
	for i, g := range []*gatewayProc{a, b} {
		d := g.waitHTTP(t, "filed.cn", "access_revoked")
		t.Logf("gateway %d: change visible after %v", i, d)
	}
	if code, r := a.readyz(t); code != 200 || !strings.Contains(r.Detail, "in sync") {
		t.Errorf("readyz: got %d %+v, want 200 in sync", code, r)
	}

	// kill -9, database down, restart: the store serves at once.
	a.cmd.Process.Kill()
	a.cmd.Wait()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	a = startGateway(t, bin, cfgA, "registry restored from the local store")
	if _, reason, _ := httpGet(t, a.web, "filed.cn"); reason != "access_revoked" {
		t.Errorf("restarted from the store: got reason %q, want access_revoked", reason)
	}
	if _, reason, _ := httpGet(t, a.web, "www.rectifying.com.cn"); reason == "unfiled" {
		t.Errorf("restarted from the store: rectifying.com.cn got %q, want its record", reason)
	}
	if code, r := a.readyz(t); code != 200 || !r.Ready || !strings.Contains(r.Detail, "local store") {
		t.Errorf("readyz from the store with the database down: got %d %+v, want 200 and the store named", code, r)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exec1("UPDATE icpgate_records SET state = 'filed' WHERE domain = 'filed.cn'")
	a.waitHTTP(t, "filed.cn", "")
	b.waitHTTP(t, "filed.cn", "")
}
