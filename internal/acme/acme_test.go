package acme

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/certmagic"
)

// TestNew checks what New makes of a Config without reaching a CA: the
// defaults, the storage directory and the fields its errors name.
func TestNew(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "roots.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("defaults", func(t *testing.T) {
		storage := filepath.Join(t.TempDir(), "a", "certs")
		m, err := New(Config{StorageDir: storage})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop()
		if got, want := m.Issuer.CA, certmagic.LetsEncryptProductionCA; got != want {
			t.Errorf("directory: got %q, want %q", got, want)
		}
		if fs, ok := m.Magic.Storage.(*certmagic.FileStorage); !ok || fs.Path != storage {
			t.Errorf("storage: got %#v, want a FileStorage in %s", m.Magic.Storage, storage)
		}
		if fi, err := os.Stat(storage); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("storage directory: got %v, %v, want mode 0700", fi, err)
		}
		if m.Magic.OnDemand != nil || !m.Magic.OCSP.DisableStapling || !m.Issuer.DisableHTTPChallenge {
			t.Errorf("got on-demand %v, stapling off %v, HTTP-01 off %v, want nil, true, true",
				m.Magic.OnDemand, m.Magic.OCSP.DisableStapling, m.Issuer.DisableHTTPChallenge)
		}
	})
	t.Run("given", func(t *testing.T) {
		errNo := errors.New("no")
		storage := &certmagic.FileStorage{Path: t.TempDir()}
		m, err := New(Config{
			Directory: "https://ca.example/dir", Email: "ops@example.cn", Storage: storage,
			OnDemand:      func(context.Context, string) error { return errNo },
			ChallengeHost: "127.0.0.1", ChallengePort: 8443,
			OnEvent: func(context.Context, string, map[string]any) error { return nil },
			Events:  []string{"cert_obtained"},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop()
		if m.Magic.Storage != storage || m.Issuer.CA != "https://ca.example/dir" || m.Issuer.Email != "ops@example.cn" ||
			m.Issuer.ListenHost != "127.0.0.1" || m.Issuer.AltTLSALPNPort != 8443 {
			t.Errorf("got storage %v, CA %q, email %q, challenge %s:%d", m.Magic.Storage, m.Issuer.CA, m.Issuer.Email,
				m.Issuer.ListenHost, m.Issuer.AltTLSALPNPort)
		}
		if m.Magic.OnDemand == nil || m.Magic.OnDemand.DecisionFunc(context.Background(), "a.cn") != errNo {
			t.Error("on-demand: got no decision or not the one given")
		}
		if !m.Magic.ShouldEmitFunc("cert_obtained") || m.Magic.ShouldEmitFunc("cert_failed") {
			t.Error("events: got a filter other than the names given")
		}
	})
	for _, tt := range []struct {
		name string
		c    Config
		want string
	}{
		{"no storage", Config{}, "storage_dir"},
		{"storage dir is a file", Config{StorageDir: notPEM}, "storage_dir"},
		{"roots missing", Config{StorageDir: dir, CARootsFile: notPEM + ".missing"}, "ca_roots_file"},
		{"roots not PEM", Config{StorageDir: dir, CARootsFile: notPEM}, "ca_roots_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.c); err == nil || !strings.HasPrefix(err.Error(), tt.want+": ") {
				t.Errorf("got %v, want an error starting %q", err, tt.want+": ")
			}
		})
	}
}
