package main

import (
	"os"
	"strings"
	"testing"
)

// tourCommands returns the command lines (curl, openssl, go run) of text.
func tourCommands(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		for _, p := range []string{"curl ", "openssl ", "go run ./cmd/icpgate "} {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
			}
		}
	}
	return out
}

// TestReadmeMatchesDemo keeps README.md's quick tour and the tour `icpgate
// demo` prints (and TestBinaryReadme runs) the same commands, and checks
// the README opens with the two commands for a fresh machine.
func TestReadmeMatchesDemo(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, afterTitle, _ := strings.Cut(readme, "```sh\n")
	first, _, _ := strings.Cut(afterTitle, "```")
	if got, want := first, "go run ./cmd/icpgate demo\ngo test -race ./...\n"; got != want {
		t.Errorf("README's first commands: got %q, want %q", got, want)
	}
	_, tourPart, ok := strings.Cut(readme, "## Quick tour")
	if !ok {
		t.Fatal("README has no Quick tour section")
	}
	tourPart, _, _ = strings.Cut(tourPart, "\n## ")
	inReadme := tourCommands(tourPart)
	tour := demoTour(demoAddrs{HTTP: "127.0.0.1:8080", TLS: "127.0.0.1:8443", Admin: "127.0.0.1:9090",
		OriginHTTP: "127.0.0.1:18080", OriginTLS: "127.0.0.1:18443", Token: "icpg_x"})
	inDemo := tourCommands(tour)
	if len(inDemo) < 20 {
		t.Fatalf("demo tour: got %d commands, want at least 20:\n%s", len(inDemo), tour)
	}
	if !strings.Contains(tour, "export ICPGATE_TOKEN=icpg_x\n") {
		t.Errorf("demo tour does not print the token to export:\n%s", tour)
	}
	has := func(list []string, s string) bool {
		for _, l := range list {
			if l == s {
				return true
			}
		}
		return false
	}
	for _, c := range inDemo {
		if !has(inReadme, c) {
			t.Errorf("demo prints %q, README's quick tour does not", c)
		}
	}
	for _, c := range inReadme {
		if !has(inDemo, c) {
			t.Errorf("README's quick tour has %q, the demo does not print it", c)
		}
	}
}
