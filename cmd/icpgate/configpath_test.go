package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindConfig: a command without -config takes $ICPGATE_CONFIG, then
// the installed config, and only then the embedded demo, saying so loudly.
func TestFindConfig(t *testing.T) {
	dir := t.TempDir()
	installed := filepath.Join(dir, "icpgate.yaml")
	saved := installedConfig
	t.Cleanup(func() { installedConfig = saved })
	installedConfig = installed

	tests := []struct {
		name, flag, env string
		installed       bool
		want, stderr    string
	}{
		{name: "flag wins", flag: "a.yaml", env: "b.yaml", installed: true, want: "a.yaml"},
		{name: "environment", env: "b.yaml", installed: true, want: "b.yaml"},
		{name: "installed", installed: true, want: installed, stderr: "using " + installed},
		{name: "demo", want: "", stderr: "WARNING: no -config, no ICPGATE_CONFIG and no " + installed + ": using the embedded DEMO config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ICPGATE_CONFIG", tc.env)
			os.Remove(installed)
			if tc.installed {
				if err := os.WriteFile(installed, []byte(minimal), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stderr bytes.Buffer
			if got := findConfig(tc.flag, "check", &stderr); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if tc.stderr == "" && stderr.Len() != 0 || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
		})
	}
}

// TestCheckDemoFallbackWarns: `icpgate check HOST` with no config anywhere
// still answers from the demo registry (the quick tour runs it so) and
// warns on stderr that it did.
func TestCheckDemoFallbackWarns(t *testing.T) {
	saved := installedConfig
	t.Cleanup(func() { installedConfig = saved })
	installedConfig = filepath.Join(t.TempDir(), "absent.yaml")
	t.Setenv("ICPGATE_CONFIG", "")
	var stdout, stderr bytes.Buffer
	if code := cmdCheck(t.Context(), []string{"filed-demo.cn"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "embedded DEMO config") {
		t.Fatalf("stderr %q, want the demo warning", stderr.String())
	}
}
