package registry_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/internal/syncbuf"
	"github.com/icpgate/icpgate/registry"
)

// TestPostgresReconnectLogged: when the filing database's session is cut,
// the warning that it ended is followed, once a new session is up, by one
// line saying the connection is back and how long it was down; a first
// connection that never failed logs no such line.
func TestPostgresReconnectLogged(t *testing.T) {
	db := newFilingDB(t, pgtest.Shared(t))
	var logs syncbuf.Buffer
	reg := registry.New(registry.Options{})
	src := newSource(t, reg, db.dsn, func(o *registry.PostgresOptions) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	run(t, src)
	waitReason(t, reg, "filed1.cn", "filed")
	if strings.Contains(logs.String(), "connection restored") {
		t.Fatalf("restored logged on the first connection:\n%s", logs.String())
	}
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for killed := false; !killed; {
		if time.Now().After(deadline) {
			t.Fatal("the source's session was never found to cut")
		}
		err := db.conn.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
			WHERE application_name = 'icpgate' AND datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed)
		if err != nil {
			t.Fatal(err)
		}
		if !killed {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for !strings.Contains(logs.String(), `"msg":"filing database connection restored"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no restored line after the cut:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if i, j := strings.Index(out, "session ended"), strings.Index(out, "connection restored"); i < 0 || j < i {
		t.Fatalf("want the session-ended warning before the restored line:\n%s", out)
	}
	if !strings.Contains(out[strings.Index(out, "connection restored"):], `"down_seconds":`) {
		t.Fatalf("the restored line does not say how long the database was down:\n%s", out)
	}
}
