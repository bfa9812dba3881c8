package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// complianceOrigin is a loopback origin serving a compliant home page for
// okshop.cn and one without the link for nolink.cn.
func complianceOrigin(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.Host {
		case "okshop.cn":
			fmt.Fprint(w, `<html><body><footer><a href="https://beian.miit.gov.cn/">京ICP备09051301号-1</a></footer></body></html>`)
		case "nolink.cn":
			fmt.Fprint(w, `<html><body><footer>京ICP备09051302号-1</footer></body></html>`)
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestComplianceCheckCommand(t *testing.T) {
	origin := complianceOrigin(t)
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.jsonl")
	if err := os.WriteFile(reg, []byte(`{"domain":"okshop.cn","state":"filed","filing_number":"京ICP备09051301号-1"}
{"domain":"nolink.cn","state":"filed","filing_number":"京ICP备09051302号-1"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(compliance string) string {
		path := filepath.Join(t.TempDir(), "icpgate.yaml")
		cfg := fmt.Sprintf(`registry:
  file: %q
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
%s`, reg, origin, compliance)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := writeConfig("compliance:\n  provider_networks: [10.0.0.0/8]\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout
		wantErr  string   // substring of stderr
	}{
		{"compliant", []string{"check", "-config", good, "--json", "okshop.cn"}, exitOK,
			[]string{`"domain":"okshop.cn","footer":"ok","footer_found":"京ICP备09051301号-1","link":true`, `"access":"skipped","addresses":[]`}, ""},
		{"missing link", []string{"check", "-config", good, "okshop.cn", "--json", "nolink.cn"}, exitBlocked,
			[]string{`"domain":"okshop.cn","footer":"ok"`, `"domain":"nolink.cn","footer":"missing_link","footer_found":"京ICP备09051302号-1","link":false`}, ""},
		{"table", []string{"check", "-config", good, "nolink.cn"}, exitBlocked,
			[]string{"DOMAIN", "nolink.cn  missing_link  京ICP备09051302号-1  no    skipped", "evidence:"}, ""},
		{"no record", []string{"check", "-config", good, "--json", "other.cn"}, exitBlocked,
			[]string{`"footer":"unreachable"`, "no record in the registry"}, ""},
		{"no domain", []string{"check", "-config", good}, exitError, nil, "Usage: icpgate compliance check"},
		{"not a domain", []string{"check", "-config", good, "a..b"}, exitError, nil, `"a..b"`},
		{"no subcommand", []string{"-config", good, "okshop.cn"}, exitError, nil, "Usage: icpgate compliance check"},
		{"bad network", []string{"check", "-config", writeConfig("compliance:\n  provider_networks: [10.0.0.0/8, 10.0.0.300/24]\n"), "okshop.cn"},
			exitError, nil, "compliance.provider_networks[1]: must be a CIDR"},
		{"bad resolver", []string{"check", "-config", writeConfig("compliance:\n  resolver: 127.0.0.1\n"), "okshop.cn"},
			exitError, nil, "compliance.resolver: must be host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), append([]string{"compliance"}, tt.args...), &out, &errOut)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out.String(), errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout:\n%s\nwant it to contain %q", out.String(), w)
				}
			}
			if !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errOut.String(), tt.wantErr)
			}
			if strings.Contains(strings.Join(tt.args, " "), "--json") && code != exitError {
				for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Errorf("line %q: %v", line, err)
					}
					for _, k := range []string{"domain", "footer", "footer_found", "link", "access", "addresses"} {
						if _, ok := m[k]; !ok {
							t.Errorf("line %q has no %s", line, k)
						}
					}
				}
			}
		})
	}
}
