package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeCheck: `serve --check` loads everything serve would, serves
// nothing (it passes while another process holds the listener's port), and
// lists every problem with the key it comes from.
func TestServeCheck(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	good := `{"domain":"filed.cn","state":"filed","filing_number":"京ICP备10206937号-1"}` + "\n"
	tests := []struct {
		name, config, registry string
		code                   int
		want                   []string
	}{
		{name: "ok while the port is in use",
			config:   "listeners:\n  - {name: web, protocol: http, address: \"" + held.Addr().String() + "\", upstream: \"127.0.0.1:18080\"}\nregistry: {file: reg.jsonl}\nadmin: {address: \"127.0.0.1:0\"}\n",
			registry: good, code: exitOK,
			want: []string{"is ok", "reg.jsonl, 1 records", "1 listeners"}},
		{name: "every problem listed",
			config:   "listeners:\n  - {name: web, protocol: http, address: \"192.0.2.1:8080\", upstream: \"127.0.0.1:18080\"}\nregistry: {file: reg.jsonl}\npolicy: {block_page: missing.html}\nadmin: {address: \"127.0.0.1:0\"}\n",
			registry: good + `{"domain":"bad.cn","state":"filed","filing_number":"nonsense"}` + "\n", code: exitError,
			want: []string{"3 problems", "registry.file:", "reg.jsonl:2: invalid record: filing_number", "policy.block_page:", "listeners[0].address: 192.0.2.1 cannot be listened on here"}},
		{name: "config error",
			config: minimal + "limits: {max_conns: lots}\n", code: exitError,
			want: []string{"limits.max_conns: want a whole number"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "icpgate.yaml")
			if err := os.WriteFile(path, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "reg.jsonl"), []byte(tc.registry), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := cmdServe(t.Context(), []string{"-config", path, "--check"}, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			out := stdout.String() + stderr.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q, want it to contain %q", out, w)
				}
			}
		})
	}
}
