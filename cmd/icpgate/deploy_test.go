package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/pebbletest"
	"go.yaml.in/yaml/v3"
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

// The container files: the image's config, the Compose example and the
// page that documents both.
const (
	dockerConfigPath  = "../../configs/docker/icpgate.yaml"
	dockerComposePath = "../../configs/docker/compose.yaml"
	dockerDocPath     = "../../docs/docker.md"
	// dockerConfigDir and dockerStateDir are the image's config mount and
	// state volume.
	dockerConfigDir = "/etc/icpgate"
	dockerStateDir  = "/var/lib/icpgate"
)

// dockerfileInstructions returns the Dockerfile's instructions, one per
// element, with continuation lines joined and comments dropped.
func dockerfileInstructions(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == "") {
			continue
		}
		if more, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur += more + " "
			continue
		}
		out = append(out, strings.Join(strings.Fields(cur+trimmed), " "))
		cur = ""
	}
	return out
}

// TestDockerfile checks the image's contract: the build, the user, the
// ports of the container config, the state volume, and a health check and
// entry point that both read the config the image installs.
func TestDockerfile(t *testing.T) {
	ins := dockerfileInstructions(t)
	df := strings.Join(ins, "\n")
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"CGO_ENABLED=0 go build -trimpath",
		"-X main.version=${VERSION}",
		"cp configs/docker/icpgate.yaml /out/etc/icpgate/icpgate.yaml",
		"cp configs/registry.sample.jsonl /out/etc/icpgate/registry.jsonl",
		"/out/icpgate serve -config /etc/icpgate/icpgate.yaml --check",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"COPY --from=build --chown=nonroot:nonroot /out/var/lib/icpgate /var/lib/icpgate",
		"USER nonroot:nonroot",
		"EXPOSE 8080 8443 9090",
		`VOLUME ["/var/lib/icpgate"]`,
		`HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["icpgate", "healthcheck", "-config", "/etc/icpgate/icpgate.yaml"]`,
		`ENTRYPOINT ["icpgate", "serve", "-config", "/etc/icpgate/icpgate.yaml"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: missing %q", want)
		}
	}

	// Every file the build takes from the context exists and is not left
	// out of it by .dockerignore.
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, in := range ins {
		f := strings.Fields(in)
		switch {
		case f[0] == "COPY" && !strings.HasPrefix(f[1], "--from="):
			used = append(used, f[1:len(f)-1]...)
		case f[0] == "RUN":
			for _, w := range f[1:] {
				if strings.HasPrefix(w, "configs/") || strings.HasPrefix(w, "./cmd/") {
					used = append(used, w)
				}
			}
		}
	}
	for _, want := range []string{"go.mod", "configs/docker/icpgate.yaml", "configs/registry.sample.jsonl", "./cmd/icpgate"} {
		if !slices.Contains(used, want) {
			t.Errorf("Dockerfile: got context files %q, want %s among them", used, want)
		}
	}
	for _, u := range used {
		if _, err := os.Stat(filepath.Join("../..", u)); err != nil {
			t.Errorf("Dockerfile uses %s: %v", u, err)
		}
		if p := dockerIgnored(string(ignore), filepath.Clean(u)); p != "" {
			t.Errorf("Dockerfile uses %s, which .dockerignore leaves out (%s)", u, p)
		}
	}
	// The matcher itself: testdata is left out everywhere.
	if dockerIgnored(string(ignore), "cmd/icpgate/testdata/registry.jsonl") == "" {
		t.Error("dockerIgnored: **/testdata does not match a nested testdata file")
	}
}

// dockerIgnored returns the .dockerignore pattern that leaves path (or a
// directory above it) out of the build context, or "". It knows the forms
// the file uses: plain paths, globs and a leading **/.
func dockerIgnored(ignore, path string) string {
	parts := strings.Split(path, "/")
	for _, p := range strings.Split(ignore, "\n") {
		p = strings.TrimSpace(p)
		if p == "" || p[0] == '#' || p[0] == '!' {
			continue
		}
		for i := 1; i <= len(parts); i++ {
			prefix := strings.Join(parts[:i], "/")
			if ok, _ := filepath.Match(strings.TrimSuffix(p, "/"), prefix); ok {
				return p
			}
			if rest, ok := strings.CutPrefix(p, "**/"); ok {
				if m, _ := filepath.Match(rest, parts[i-1]); m {
					return p
				}
			}
		}
	}
	return ""
}

// dockerConfig writes the container config into a temporary root, with
// /etc/icpgate and /var/lib/icpgate moved under it, the demo registry in
// place as the Dockerfile puts it, and the addresses changed by replace
// (old, new pairs). It returns the config's path and the state directory.
func dockerConfig(t *testing.T, replace ...string) (path, state string) {
	t.Helper()
	b, err := os.ReadFile(dockerConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	etc, state := filepath.Join(root, "etc"), filepath.Join(root, "state")
	for _, d := range []string{etc, state} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := os.ReadFile("../../configs/registry.sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "registry.jsonl"), reg, 0o644); err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(append([]string{dockerConfigDir + "/", etc + "/", dockerStateDir + "/", state + "/"}, replace...)...).Replace(string(b))
	path = filepath.Join(etc, "icpgate.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, state
}

// TestDockerConfig loads the image's config as the image has it and checks
// that everything listens on all interfaces and everything written lands
// on the state volume; then `serve --check` passes on it (paths moved to a
// temporary directory), as the image build runs it.
func TestDockerConfig(t *testing.T) {
	cfg, err := LoadConfig(dockerConfigPath)
	if err != nil {
		t.Fatalf("container config: %v", err)
	}
	got := []string{cfg.Admin.Address}
	for _, l := range cfg.Listeners {
		got = append(got, l.Address)
	}
	if want := []string{"0.0.0.0:9090", "0.0.0.0:8080", "0.0.0.0:8443"}; !slices.Equal(got, want) {
		t.Errorf("listen addresses: got %q, want %q", got, want)
	}
	if got, want := cfg.Registry.File, dockerConfigDir+"/registry.jsonl"; got != want {
		t.Errorf("registry.file: got %q, want %q (where the Dockerfile puts the registry)", got, want)
	}
	for _, f := range []struct{ key, path string }{
		{"registry.store", cfg.Registry.Store},
		{"admin.state", cfg.Admin.State},
		{"admin.tokens_file", cfg.Admin.TokensFile},
		{"report.file", cfg.Report.File},
		{"policy.tls_page.storage_dir", cfg.Policy.TLSPage.StorageDir},
	} {
		if !strings.HasPrefix(f.path, dockerStateDir+"/") {
			t.Errorf("%s: got %q, want a path on the state volume %s (the config mount is read-only)", f.key, f.path, dockerStateDir)
		}
	}
	if cfg.Log.Format != "json" {
		t.Errorf("log.format: got %q, want json", cfg.Log.Format)
	}

	path, _ := dockerConfig(t)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"serve", "-config", path, "--check"}, &out, &errb); code != exitOK {
		t.Errorf("serve --check on the container config: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestDockerHealthcheck runs the gateway on the container config (state in
// a temporary directory, free ports) and probes it as the image's
// HEALTHCHECK does, with the config alone; a token made as docs/docker.md
// says lands on the state volume.
func TestDockerHealthcheck(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := ln.Addr().String()
	ln.Close()
	path, state := dockerConfig(t,
		`"0.0.0.0:9090"`, strconv.Quote(admin),
		`"0.0.0.0:8080"`, `"127.0.0.1:0"`,
		`"0.0.0.0:8443"`, `"127.0.0.1:0"`)
	g := runServe(t, path)
	if got := g.AdminAddr().String(); got != admin {
		t.Fatalf("admin listens on %s, want %s", got, admin)
	}

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"healthcheck", "-config", path}, &out, &errb); code != exitOK {
		t.Errorf("healthcheck -config: exit %d: %s%s", code, out.String(), errb.String())
	}
	t.Setenv("ICPGATE_CONFIG", path)
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"healthcheck"}, &out, &errb); code != exitOK || errb.Len() != 0 {
		t.Errorf("healthcheck with ICPGATE_CONFIG: exit %d, stderr %q, want 0 and nothing", code, errb.String())
	}

	newToken(t, path, "admin")
	if _, err := os.Stat(filepath.Join(state, "tokens.jsonl")); err != nil {
		t.Errorf("token create -config: %v, want the token file on the state volume", err)
	}
}

// TestHealthcheck covers the probe's choice of URL and its answers: the
// config's admin address (on loopback for an any-address listener, HTTPS
// under the first tls_names name), -url, and the failures.
func TestHealthcheck(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ admin, want string }{
		{`address: "0.0.0.0:9191"`, "http://127.0.0.1:9191/healthz"},
		{`address: "[::]:9191"`, "http://[::1]:9191/healthz"},
		{`address: "10.1.2.3:9191"`, "http://10.1.2.3:9191/healthz"},
		{"address: \"127.0.0.1:9443\"\n  tls_names: [gw.example.cn]", "https://gw.example.cn:9443/healthz"},
	} {
		path := filepath.Join(dir, "c.yaml")
		cfg := "registry: {file: r.jsonl}\nlisteners:\n  - {name: w, protocol: http, address: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}\nadmin:\n  " + tt.admin + "\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		got, _, err := healthProbe(path, "")
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q %v, want %q", tt.admin, got, err, tt.want)
		}
	}
	if got, _, _ := healthProbe("", "http://192.0.2.1:1/x"); got != "http://192.0.2.1:1/x" {
		t.Errorf("-url: got %q, want it as given", got)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	down := filepath.Join(dir, "down.yaml")
	if err := os.WriteFile(down, fmt.Appendf(nil, "registry: {file: r.jsonl}\nlisteners:\n  - {name: w, protocol: http, address: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}\nadmin:\n  address: %q\n", closed), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-config", down}, exitBlocked, "connection refused"},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, exitError, "missing.yaml"},
		{[]string{"-config", down, "-url", "http://" + closed}, exitError, "give one of them"},
		{[]string{"extra"}, exitError, "unexpected argument"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"healthcheck"}, tt.args...), &out, &errb)
		if code != tt.code || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("healthcheck %q: got exit %d %q, want %d containing %q", tt.args, code, errb.String(), tt.code, tt.want)
		}
	}
}

// TestHealthcheckHTTPS probes an admin listener serving HTTPS under
// admin.tls_names with a certificate from a real ACME CA (pebble), whose
// root the probe's system roots do not hold.
func TestHealthcheckHTTPS(t *testing.T) {
	port := pebbletest.FreePorts(t, 1)[0]
	ca := pebbletest.Start(t, port)
	o := startOrigin(t)
	path := writeConfig(t, t.TempDir(), o, fmt.Sprintf("policy:\n  tls_page:\n    acme_directory: %q\n    ca_roots_file: %q\n", ca.Directory, ca.TLSRootsFile))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`address: "127.0.0.1:0"`+"\n  tokens_file"),
		fmt.Appendf(nil, "address: \"127.0.0.1:%d\"\n  tls_names: [admin.example.cn]\n  tokens_file", port), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runServe(t, path)
	// The certificate is issued after the start: wait for it.
	var errb bytes.Buffer
	for deadline := time.Now().Add(30 * time.Second); ; {
		errb.Reset()
		if run(context.Background(), []string{"healthcheck", "-config", path}, io.Discard, &errb) == exitOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck over HTTPS: %s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDockerDoc checks that the examples of docs/docker.md work as
// written against the repository: the Compose file is the one shipped and
// parses with a state volume; docker run and Compose publish the ports the
// container config listens on, mount the config read-only and the state
// on a volume; the files the page copies exist.
func TestDockerDoc(t *testing.T) {
	b, err := os.ReadFile(dockerDocPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	compose, err := os.ReadFile(dockerComposePath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc, "```yaml\n"+string(compose)+"```\n") {
		t.Errorf("%s: the Compose example is not %s verbatim", dockerDocPath, dockerComposePath)
	}
	cfg, err := LoadConfig(dockerConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// Container ports a deployment must publish: every listener and the
	// admin listener.
	var ports []string
	for _, a := range append([]string{cfg.Admin.Address}, listenerAddresses(cfg)...) {
		_, p, _ := net.SplitHostPort(a)
		ports = append(ports, p)
	}
	checkRun := func(what string, published, volumes []string) {
		t.Helper()
		for _, p := range ports {
			if !slices.ContainsFunc(published, func(s string) bool { return strings.HasSuffix(s, ":"+p) }) {
				t.Errorf("%s: publishes %q, not container port %s", what, published, p)
			}
		}
		for _, p := range published {
			if strings.HasSuffix(p, ":9090") && !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: publishes the admin listener as %q, want it on the host's loopback", what, p)
			}
		}
		var etc, state bool
		for _, v := range volumes {
			parts := strings.Split(v, ":")
			switch {
			case len(parts) == 3 && parts[1] == dockerConfigDir && parts[2] == "ro":
				etc = true
			case len(parts) == 2 && parts[1] == dockerStateDir && !strings.HasPrefix(parts[0], "/") && !strings.HasPrefix(parts[0], "."):
				state = true // a named volume
			}
		}
		if !etc || !state {
			t.Errorf("%s: volumes %q, want %s mounted read-only and a named volume on %s", what, volumes, dockerConfigDir, dockerStateDir)
		}
	}

	// docker run: the shell block that runs it.
	var block string
	for _, blk := range strings.Split(doc, "```sh\n")[1:] {
		blk, _, _ = strings.Cut(blk, "```")
		if strings.Contains(blk, "docker run -d") {
			block = blk
		}
	}
	if block == "" {
		t.Fatalf("%s: no sh block with docker run -d", dockerDocPath)
	}
	block = strings.ReplaceAll(block, "\\\n", " ")
	ran := false
	for _, line := range strings.Split(block, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "cp" {
			if _, err := os.Stat(filepath.Join("../..", f[1])); err != nil {
				t.Errorf("docs/docker.md copies %s: %v", f[1], err)
			}
			if !strings.HasPrefix(f[2], "/srv/icpgate/") {
				t.Errorf("docs/docker.md copies %s to %s, want the mounted /srv/icpgate", f[1], f[2])
			}
			if f[1] == "configs/docker/icpgate.yaml" && f[2] != "/srv/icpgate/icpgate.yaml" {
				t.Errorf("docs/docker.md copies the config to %s, want /srv/icpgate/icpgate.yaml", f[2])
			}
			if f[1] == "configs/registry.sample.jsonl" && f[2] != "/srv/icpgate/"+filepath.Base(cfg.Registry.File) {
				t.Errorf("docs/docker.md copies the registry to %s, want the registry.file of the config", f[2])
			}
		}
		if len(f) < 3 || f[0] != "docker" || f[1] != "run" || f[2] != "-d" {
			continue
		}
		var published, volumes []string
		for i := 3; i < len(f)-1; i++ {
			switch f[i] {
			case "-p":
				published = append(published, f[i+1])
			case "-v":
				volumes = append(volumes, f[i+1])
			}
		}
		ran = true
		if f[len(f)-1] != "icpgate" {
			t.Errorf("docker run: got image %q, want icpgate (the tag of docker build)", f[len(f)-1])
		}
		checkRun("docker run", published, volumes)
	}
	if !ran {
		t.Errorf("%s: no docker run -d line in %q", dockerDocPath, block)
	}
	if !strings.Contains(doc, "docker build --build-arg VERSION=$(git describe --always --dirty) -t icpgate .") {
		t.Errorf("%s: no docker build -t icpgate", dockerDocPath)
	}

	// Compose.
	var c struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Ports   []string `yaml:"ports"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(compose, &c); err != nil {
		t.Fatalf("%s: %v", dockerComposePath, err)
	}
	svc, ok := c.Services["icpgate"]
	if !ok {
		t.Fatalf("%s: no service icpgate", dockerComposePath)
	}
	if svc.Image != "icpgate" {
		t.Errorf("compose: got image %q, want icpgate", svc.Image)
	}
	checkRun("compose", svc.Ports, svc.Volumes)
	for _, v := range svc.Volumes {
		if name, rest, _ := strings.Cut(v, ":"); rest == dockerStateDir {
			if _, ok := c.Volumes[name]; !ok {
				t.Errorf("compose: volume %q is not declared under volumes", name)
			}
		}
	}
}

// listenerAddresses returns the listen addresses of cfg's listeners.
func listenerAddresses(cfg *Config) []string {
	var out []string
	for _, l := range cfg.Listeners {
		out = append(out, l.Address)
	}
	return out
}
