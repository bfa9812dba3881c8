package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/blockid"
)

// TestBlockIDOnPage: a blocked request's ID, on the page and in
// X-Request-Id, reads back as this node, the reason and the host as
// decided (normalised, port dropped) at the time of the block.
func TestBlockIDOnPage(t *testing.T) {
	up := httpRawUpstream(t)
	g := startHTTPGateway(t, httpBaseConfig(up), httpTestDecider())
	before := time.Now().Truncate(time.Second)
	c, br := httpDialRaw(t, g.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: Shop.Black.CN:8080\r\n\r\n")
	resp, body := httpReadResp(t, br, "GET")
	after := time.Now()
	text := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != 403 || len(text) != blockIDLen || !strings.Contains(body, text) {
		t.Fatalf("got %d, X-Request-Id %q, page has it: %v", resp.StatusCode, text, strings.Contains(body, text))
	}
	id, err := blockid.Parse(text)
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	if id.Node != blockid.NodeTag("edge-test") {
		t.Errorf("node tag %04x, want edge-test's %04x", id.Node, blockid.NodeTag("edge-test"))
	}
	if r, _ := blockid.ReasonOf(id.Reason); r != "blacklisted" {
		t.Errorf("reason %q, want blacklisted", r)
	}
	if id.HostTag != blockid.HostTag("shop.black.cn", "black.cn") {
		t.Errorf("host tag %06x, want shop.black.cn's %06x", id.HostTag, blockid.HostTag("shop.black.cn", "black.cn"))
	}
	if tm := id.Time(); tm.Before(before) || tm.After(after) {
		t.Errorf("time %v, want between %v and %v", tm, before, after)
	}
}

// TestBlockIDReasons: the data plane's own reasons have tags.
func TestBlockIDReasons(t *testing.T) {
	for _, r := range []string{reasonRetryMismatch, reasonIPAccess} {
		if blockid.ReasonTag(r) == 0 {
			t.Errorf("reason %s has no tag in blockid.Reasons", r)
		}
	}
}

// TestBlockLogRequestID: the block log line carries the request ID.
func TestBlockLogRequestID(t *testing.T) {
	var buf bytes.Buffer
	b := newBlockLog(slog.New(slog.NewTextHandler(&buf, nil)), 10, 1)
	b.LogID("http", "http", "x.cn", "unfiled", []byte("DCBRFKE-CEG50ZZ-7YR7ARC"), netip.MustParseAddrPort("192.0.2.1:5"))
	if !strings.Contains(buf.String(), "request_id=DCBRFKE-CEG50ZZ-7YR7ARC") {
		t.Errorf("got %q, want request_id", buf.String())
	}
}
