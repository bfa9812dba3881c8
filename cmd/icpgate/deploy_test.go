package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnit checks the unit's sandboxing and signals, and has
// systemd-analyze verify it when available.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../configs/icpgate.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/icpgate serve -config /etc/icpgate/icpgate.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"Type=notify\n",
		"NotifyAccess=main\n",
		"DynamicUser=yes",
		"ProtectSystem=strict",
		"NoNewPrivileges=yes",
		"PrivateTmp=yes",
		"ReadWritePaths=/var/lib/icpgate",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
		"LimitNOFILE=",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("icpgate.service: missing %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	bin := buildBinary(t)
	path := filepath.Join(t.TempDir(), "icpgate.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/icpgate", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDockerfile checks the image's contract and that the config the
// Dockerfile derives from configs/icpgate.yaml loads and listens on every
// interface.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"CGO_ENABLED=0 go build -trimpath",
		"-X main.version=${VERSION}",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER nonroot",
		"EXPOSE 8080 8443 9090",
		`VOLUME ["/etc/icpgate", "/var/lib/icpgate"]`,
		`CMD ["icpgate", "healthcheck", "-url", "http://127.0.0.1:9090/healthz"]`,
		`ENTRYPOINT ["icpgate", "serve", "-config", "/etc/icpgate/icpgate.yaml"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: missing %q", want)
		}
	}
	m := regexp.MustCompile(`sed -e '([^']+)' configs/icpgate\.yaml`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile: no sed rewriting configs/icpgate.yaml")
	}
	sed, err := exec.LookPath("sed")
	if err != nil {
		t.Skip("sed not installed")
	}
	out, err := exec.Command(sed, "-e", m[1], "../../configs/icpgate.yaml").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	reg, err := os.ReadFile("../../configs/registry.sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "registry.sample.jsonl"), reg, 0o644)
	path := filepath.Join(dir, "icpgate.yaml")
	os.WriteFile(path, out, 0o644)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("image config: %v", err)
	}
	got := []string{cfg.Admin.Address}
	for _, l := range cfg.Listeners {
		got = append(got, l.Address)
	}
	if want := []string{"0.0.0.0:9090", "0.0.0.0:8080", "0.0.0.0:8443"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("image listen addresses: got %q, want %q", got, want)
	}
	if got, want := cfg.Policy.TLSPage.StorageDir, "/var/lib/icpgate/certmagic"; got != want {
		t.Errorf("image tls_page.storage_dir: got %q, want %q (the config volume is read-only)", got, want)
	}
	if strings.Count(string(out), "0.0.0.0") != 3 {
		t.Errorf("image config: got %d rewritten addresses, want 3 (comments untouched)", strings.Count(string(out), "0.0.0.0"))
	}
}
