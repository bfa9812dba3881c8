package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/icpgate/icpgate/proxy"
)

func TestBlockPageCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"blockpage"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stdout.String() != proxy.BlockPageTemplate() || !strings.Contains(stdout.String(), "<!DOCTYPE html>") {
		t.Fatalf("got %q, want the built-in template", stdout.String())
	}
	// What it prints is a valid policy.block_page.
	dir := t.TempDir()
	page := filepath.Join(dir, "page.html")
	if err := os.WriteFile(page, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.NewBlockPage(proxy.Policy{BlockPage: page}); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"blockpage", "extra"}, &stdout, &stderr); code != exitError || stdout.Len() != 0 {
		t.Fatalf("with an argument: exit %d, stdout %q", code, stdout.String())
	}
}

// TestBlockPageConfig: the block page keys reach the data plane, whose
// page accepts them.
func TestBlockPageConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "icpgate.yaml")
	yaml := minimal + `policy:
  provider:
    name: "示例云 Example Cloud"
    support_contact: "400-000-0000"
    support_url: "https://support.example.com/"
    filing_url: "http://beian.example.com/start"
  time_zone: Asia/Urumqi
  show_node: true
`
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	got := c.ProxyConfig().Policy
	want := proxy.Provider{Name: "示例云 Example Cloud", SupportContact: "400-000-0000",
		SupportURL: "https://support.example.com/", FilingURL: "http://beian.example.com/start"}
	if got.Provider != want || got.TimeZone != "Asia/Urumqi" || !got.ShowNode {
		t.Fatalf("got %+v, want provider %+v, Asia/Urumqi, show_node", got, want)
	}
	if _, err := proxy.NewBlockPage(got); err != nil {
		t.Fatal(err)
	}
}
