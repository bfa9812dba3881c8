package main

// The evasion suite: every input known to have broken proxies like this
// one, sent to a real `icpgate serve` (real
// registry file, real listeners) in front of origins that record what
// reached them. Each case asserts the outcome a client sees and what the
// upstream received: nothing at all for a blocked or refused input, the
// exact bytes for a passing TLS hello, and for HTTP a one-to-one match
// between the responses the client got from the origin and the requests
// the origin handled (a desync shows up as an origin request nobody saw
// an answer to, or an answer to a request nobody sent).
//
// The control-plane inputs of that list are covered in admin and registry
// (see the map in the H7 report); QUIC reordering and flow limits in proxy.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// evRequest is one request the HTTP origin handled to its end.
type evRequest struct {
	method, uri, host, body string
	header                  http.Header
}

// summary is what the origin answers, so a response names its request.
func (r evRequest) summary() string {
	return fmt.Sprintf("saw %s %s %s %d", r.method, r.uri, r.host, len(r.body))
}

// evOrigin is the suite's upstream: a net/http origin recording every
// request it handled completely, and a raw TCP origin recording the bytes
// of every connection (what a passing TLS hello must arrive as).
type evOrigin struct {
	httpLn, rawLn net.Listener
	srv           *http.Server
	wg            sync.WaitGroup

	mu       sync.Mutex
	reqs     []evRequest // guarded by mu
	rawConns int         // guarded by mu; connections accepted by the raw origin
	raw      [][]byte    // guarded by mu; bytes of each finished raw connection
}

// rawReady is what the raw origin sends as soon as it accepts, as a TLS
// server answers a hello at once: the gateway holds the client's later
// bytes (its FIN included) until the server's first bytes show they are
// not a HelloRetryRequest. rawAck is what it sends once the client's
// stream ended.
const (
	rawReady = "raw origin ready\n"
	rawAck   = "raw origin ack"
)

func startEvOrigin(t *testing.T) *evOrigin {
	t.Helper()
	o := &evOrigin{}
	var err error
	if o.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if o.rawLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	o.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			// The gateway cut a body it found malformed: this request was
			// never handled, so it is not recorded.
			return
		}
		req := evRequest{r.Method, r.RequestURI, r.Host, string(body), r.Header.Clone()}
		o.mu.Lock()
		o.reqs = append(o.reqs, req)
		o.mu.Unlock()
		io.WriteString(w, req.summary())
	})}
	o.wg.Add(2)
	go func() { defer o.wg.Done(); o.srv.Serve(o.httpLn) }()
	go func() {
		defer o.wg.Done()
		for {
			c, err := o.rawLn.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.rawConns++
			o.mu.Unlock()
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				io.WriteString(c, rawReady)
				b, _ := io.ReadAll(c)
				o.mu.Lock()
				o.raw = append(o.raw, b)
				o.mu.Unlock()
				io.WriteString(c, rawAck)
			}()
		}
	}()
	t.Cleanup(func() {
		o.srv.Close()
		o.rawLn.Close()
		o.wg.Wait()
	})
	return o
}

// requests returns the HTTP requests handled so far.
func (o *evOrigin) requests() []evRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]evRequest(nil), o.reqs...)
}

// rawState returns the raw origin's connection count and finished streams.
func (o *evOrigin) rawState() (int, [][]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rawConns, append([][]byte(nil), o.raw...)
}

// evHelloTimeout is the suite gateway's timeouts.hello: long enough for
// the slowest fragmented delivery on a loaded CI machine, short enough
// for the slow-client cases to end quickly.
const evHelloTimeout = 3 * time.Second

// startEvGateway runs `icpgate serve` with the evasion registry: an http
// listener in front of the recording HTTP origin and a tls listener in
// front of the raw origin.
func startEvGateway(t *testing.T, o *evOrigin) (web, tlsAddr string) {
	t.Helper()
	g := serveWithRegistry(t, filepath.Join("testdata", "evasion", "registry.jsonl"), fmt.Sprintf(`node: evasion
registry:
  file: registry.jsonl
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
  - {name: tls, protocol: tls, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
timeouts:
  hello: %s
  idle: 2s
  drain: 2s
log:
  level: error
  format: json
`, o.httpLn.Addr().String(), o.rawLn.Addr().String(), evHelloTimeout))
	return g.ProxyAddr("web").String(), g.ProxyAddr("tls").String()
}

// ---- TLS: captured hellos, rewritten and re-framed ----

// tlsExt is one extension of a ClientHello.
type tlsExt struct {
	typ  uint16
	data []byte
}

// capturedHello returns the handshake message of a ClientHello captured
// from a real client (sni/testdata) and its first record's version.
func capturedHello(t *testing.T, name string) (msg []byte, recordVersion uint16) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "sni", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	recordVersion = uint16(b[1])<<8 | uint16(b[2])
	for len(b) >= 5 {
		n := int(b[3])<<8 | int(b[4])
		if b[0] != 22 || len(b) < 5+n {
			t.Fatalf("%s: not a sequence of handshake records", name)
		}
		msg = append(msg, b[5:5+n]...)
		b = b[5+n:]
	}
	if len(msg) < 4 || msg[0] != 1 {
		t.Fatalf("%s: no ClientHello", name)
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	return msg[:4+n], recordVersion
}

// splitHello cuts a ClientHello message into the part before the
// extensions and the extensions.
func splitHello(t *testing.T, msg []byte) (prefix []byte, exts []tlsExt) {
	t.Helper()
	body := msg[4:]
	p := 2 + 32
	p += 1 + int(body[p])                       // session id
	p += 2 + (int(body[p])<<8 | int(body[p+1])) // cipher suites
	p += 1 + int(body[p])                       // compression methods
	n := int(body[p])<<8 | int(body[p+1])
	prefix, rest := body[:p], body[p+2:p+2+n]
	for len(rest) >= 4 {
		typ, l := uint16(rest[0])<<8|uint16(rest[1]), int(rest[2])<<8|int(rest[3])
		exts = append(exts, tlsExt{typ, rest[4 : 4+l]})
		rest = rest[4+l:]
	}
	if len(rest) != 0 {
		t.Fatal("trailing bytes after the extensions")
	}
	return prefix, exts
}

// joinHello builds a ClientHello message from splitHello's parts.
func joinHello(prefix []byte, exts []tlsExt) []byte {
	var e []byte
	for _, x := range exts {
		e = append(e, byte(x.typ>>8), byte(x.typ), byte(len(x.data)>>8), byte(len(x.data)))
		e = append(e, x.data...)
	}
	body := append(append(append([]byte(nil), prefix...), byte(len(e)>>8), byte(len(e))), e...)
	return append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// sniData is a server_name extension body listing names as host_names.
func sniData(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, 0, byte(len(n)>>8), byte(len(n)))
		list = append(list, n...)
	}
	return append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
}

// editHello returns msg with its extensions passed through edit.
func editHello(t *testing.T, msg []byte, edit func([]tlsExt) []tlsExt) []byte {
	t.Helper()
	prefix, exts := splitHello(t, msg)
	return joinHello(prefix, edit(exts))
}

// setSNI replaces the server_name extension's body (adding the extension
// first when the hello has none).
func setSNI(data []byte) func([]tlsExt) []tlsExt {
	return func(exts []tlsExt) []tlsExt {
		for i := range exts {
			if exts[i].typ == 0 {
				exts[i].data = data
				return exts
			}
		}
		return append([]tlsExt{{0, data}}, exts...)
	}
}

// padHello pads msg to total bytes with a padding extension.
func padHello(t *testing.T, msg []byte, total int) []byte {
	t.Helper()
	grow := total - len(msg) - 4 // the padding extension's own header
	if grow < 0 {
		t.Fatalf("hello of %d bytes is already over %d", len(msg), total)
	}
	out := editHello(t, msg, func(exts []tlsExt) []tlsExt {
		return append([]tlsExt{{21, make([]byte, grow)}}, exts...)
	})
	if len(out) != total {
		t.Fatalf("padded hello: got %d bytes, want %d", len(out), total)
	}
	return out
}

// records frames msg as handshake records of at most size bytes each.
func records(msg []byte, size int, version uint16) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 22, byte(version>>8), byte(version), byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// tlsOutcome is what a client sees of a TLS connection through the gateway.
type tlsOutcome string

const (
	tlsPassed tlsOutcome = "passed to the upstream" // the raw origin's ack came back
	tlsAlert  tlsOutcome = "access_denied alert"    // a fatal alert, then close
	tlsClosed tlsOutcome = "closed without a word"  // refused before any decision
)

// delivery writes a client's bytes in some segmentation.
type delivery struct {
	name  string
	write func(c net.Conn, b []byte) error
}

var (
	oneWrite = delivery{"one write", func(c net.Conn, b []byte) error {
		_, err := c.Write(b)
		return err
	}}
	// byteWrites sends one byte per write (one TCP segment each: Go sets
	// TCP_NODELAY), pausing every 16 bytes so the gateway reads the hello
	// in many partial reads.
	byteWrites = delivery{"1-byte TCP writes", func(c net.Conn, b []byte) error {
		for i := range b {
			if _, err := c.Write(b[i : i+1]); err != nil {
				return err
			}
			if i%16 == 15 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	}}
)

// chunkWrites sends n bytes per write, pausing 1 ms between writes.
func chunkWrites(n int) delivery {
	return delivery{fmt.Sprintf("%d-byte writes", n), func(c net.Conn, b []byte) error {
		for len(b) > 0 {
			k := min(n, len(b))
			if _, err := c.Write(b[:k]); err != nil {
				return err
			}
			b = b[k:]
			time.Sleep(time.Millisecond)
		}
		return nil
	}}
}

// sendTLS sends b through the gateway's tls listener and returns what came
// back and the outcome it means. After the bytes the client half-closes, so
// a passing connection ends with the raw origin's ack.
func sendTLS(t *testing.T, addr string, b []byte, d delivery) (tlsOutcome, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := d.write(c, b); err == nil {
		c.(*net.TCPConn).CloseWrite()
	}
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading: %v (got %q)", err, got)
	}
	switch {
	case string(got) == rawReady+rawAck:
		return tlsPassed, got
	case len(got) == 7 && got[0] == 21 && got[3] == 0 && got[4] == 2 && got[5] == 2 && got[6] == 49:
		return tlsAlert, got
	case len(got) == 0:
		return tlsClosed, got
	}
	t.Fatalf("unexpected answer % x", got)
	return "", nil
}

// TestEvasionTLS: real clients' hellos, rewritten to carry each kind of
// server name that has broken peers, framed each way, through `icpgate serve`.
// A passing hello reaches the upstream byte for byte; anything else never
// opens an upstream connection.
func TestEvasionTLS(t *testing.T) {
	o := startEvOrigin(t)
	_, addr := startEvGateway(t, o)
	base, ver := capturedHello(t, "go-tls13-mlkem.bin")
	named := func(name string) []byte { return editHello(t, base, setSNI(sniData(name))) }
	ech, echVer := capturedHello(t, "go-ech.bin")

	type tcase struct {
		name string
		raw  []byte // bytes on the wire
		d    delivery
		want tlsOutcome
	}
	var cases []tcase
	// Every captured client, filed and unfiled, framed every way.
	for _, capture := range []string{"curl.bin", "openssl.bin", "go-tls12.bin", "go-tls13-mlkem.bin", "go-ech.bin"} {
		msg, v := capturedHello(t, capture)
		for _, host := range []struct {
			name string
			want tlsOutcome
		}{{"www.filed.cn", tlsPassed}, {"unfiled.cn", tlsAlert}} {
			m := editHello(t, msg, setSNI(sniData(host.name)))
			for _, f := range []struct {
				name string
				raw  []byte
			}{
				{"as captured", records(m, 16384, v)},
				{"1-byte records", records(m, 1, v)},
				{"7-byte records", records(m, 7, v)},
			} {
				for _, d := range []delivery{oneWrite, byteWrites} {
					if f.name == "7-byte records" && d.name != oneWrite.name {
						continue
					}
					cases = append(cases, tcase{fmt.Sprintf("%s %s %s %s", capture, host.name, f.name, d.name), f.raw, d, host.want})
				}
			}
		}
	}
	// The server names that have broken peers, in Go's TLS 1.3 hello.
	for _, n := range []struct {
		name string
		data []byte
		want tlsOutcome
	}{
		{"upper case", sniData("WWW.FILED.CN"), tlsPassed},
		// RFC 6066 names have no trailing dot; crypto/tls refuses one too.
		{"trailing dot", sniData("www.filed.cn."), tlsClosed},
		{"IDN A-label", sniData("www.xn--fsqu00a.xn--fiqs8s"), tlsPassed},
		{"IPv4 literal (ip_access passes)", sniData("127.0.0.1"), tlsPassed},
		{"unfiled upper case", sniData("UNFILED.CN"), tlsAlert},
		{"unfiled trailing dot", sniData("unfiled.cn."), tlsClosed},
		{"cancelled", sniData("www.cancelled.cn"), tlsAlert},
		{"filed label with NUL", sniData("filed.cn\x00.unfiled.cn"), tlsAlert},
		{"NUL after filed", sniData("www.filed.cn\x00"), tlsAlert},
		{"label of 64 bytes", sniData(strings.Repeat("a", 64) + ".filed.cn"), tlsAlert},
		{"name of 300 bytes", sniData(strings.Repeat("abcdefghi.", 29) + "filed.cn"), tlsAlert},
		{"percent-encoded dot", sniData("filed%2ecn"), tlsAlert},
		{"two dots", sniData("www..filed.cn"), tlsAlert},
		{"empty host_name", sniData(""), tlsClosed},
		{"zero-length extension", []byte{}, tlsClosed},
		{"empty name list", []byte{0, 0}, tlsClosed},
		{"two names (filed first)", sniData("filed.cn", "unfiled.cn"), tlsClosed},
		{"list length lies", []byte{0, 40, 0, 0, 8, 'f', 'i', 'l', 'e', 'd', '.', 'c', 'n'}, tlsClosed},
	} {
		cases = append(cases, tcase{"sni " + n.name, records(editHello(t, base, setSNI(n.data)), 16384, ver), oneWrite, n.want})
	}
	dupSNI := editHello(t, base, func(exts []tlsExt) []tlsExt {
		exts = setSNI(sniData("filed.cn"))(exts)
		return append(exts, tlsExt{0, sniData("unfiled.cn")})
	})
	noSNI, noSNIVer := capturedHello(t, "openssl-nosni.bin")
	ccs := []byte{20, 3, 3, 0, 1, 1}
	cases = append(cases,
		tcase{"duplicate server_name extension", records(dupSNI, 16384, ver), oneWrite, tlsClosed},
		tcase{"no SNI (openssl -noservername, ip_access)", records(noSNI, 16384, noSNIVer), oneWrite, tlsPassed},
		tcase{"ECH, outer name filed", records(editHello(t, ech, setSNI(sniData("public.filed.cn"))), 16384, echVer), oneWrite, tlsPassed},
		tcase{"ECH, outer name unfiled (as captured)", records(ech, 16384, echVer), oneWrite, tlsAlert},
		tcase{"first record change_cipher_spec", append(ccs, records(named("www.filed.cn"), 16384, ver)...), oneWrite, tlsClosed},
		tcase{"first record alert", append([]byte{21, 3, 1, 0, 2, 1, 0}, records(named("www.filed.cn"), 16384, ver)...), oneWrite, tlsClosed},
		tcase{"first record application data", append([]byte{23, 3, 3, 0, 1, 0}, records(named("www.filed.cn"), 16384, ver)...), oneWrite, tlsClosed},
		tcase{"empty handshake record first", append([]byte{22, 3, 1, 0, 0}, records(named("www.filed.cn"), 16384, ver)...), oneWrite, tlsClosed},
		tcase{"SSLv2-compatible hello", []byte{0x80, 0x2e, 1, 3, 1, 0, 0x15, 0, 0, 0, 0x10}, oneWrite, tlsClosed},
		tcase{"plain HTTP on the tls port", []byte("GET / HTTP/1.1\r\nHost: www.filed.cn\r\n\r\n"), oneWrite, tlsClosed},
		tcase{"padded to 60 KiB, filed, 16 KiB records", records(padHello(t, named("www.filed.cn"), 60<<10), 16384, ver), oneWrite, tlsPassed},
		tcase{"padded to 60 KiB, unfiled, 16 KiB records", records(padHello(t, named("unfiled.cn"), 60<<10), 16384, ver), oneWrite, tlsAlert},
		tcase{"padded to 60 KiB, filed, 1 KiB records in 100-byte writes", records(padHello(t, named("www.filed.cn"), 60<<10), 1024, ver), chunkWrites(100), tlsPassed},
		tcase{"padded past 64 KiB", records(padHello(t, named("www.filed.cn"), 64<<10), 16384, ver), oneWrite, tlsClosed},
		tcase{"1-byte records in 1-byte writes", records(named("www.filed.cn"), 1, ver), byteWrites, tlsPassed},
		tcase{"truncated hello then FIN", records(named("www.filed.cn"), 16384, ver)[:200], oneWrite, tlsClosed},
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conns, before := o.rawState()
			got, _ := sendTLS(t, addr, tc.raw, tc.d)
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			nConns, after := o.rawState()
			if tc.want != tlsPassed {
				if nConns != conns {
					t.Fatalf("upstream accepted %d connections, want none", nConns-conns)
				}
				return
			}
			if len(after) != len(before)+1 || !bytes.Equal(after[len(after)-1], tc.raw) {
				t.Fatalf("upstream did not receive the hello byte for byte")
			}
		})
	}
}

// TestEvasionTLSSlowClients: a client that sends nothing, or a hello at one
// byte per 100 ms, is closed at timeouts.hello without reaching the
// upstream.
func TestEvasionTLSSlowClients(t *testing.T) {
	o := startEvOrigin(t)
	web, addr := startEvGateway(t, o)
	hello, ver := capturedHello(t, "curl.bin")
	raw := records(editHello(t, hello, setSNI(sniData("www.filed.cn"))), 16384, ver)
	trickle := func(c net.Conn, b []byte) {
		for i := range b {
			if _, err := c.Write(b[i : i+1]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, tc := range []struct {
		name, addr string
		send       func(net.Conn)
	}{
		{"tls silent", addr, func(net.Conn) {}},
		{"tls 1 byte per 100 ms", addr, func(c net.Conn) { trickle(c, raw) }},
		{"http silent", web, func(net.Conn) {}},
		{"http slowloris, 1 byte per 100 ms", web, func(c net.Conn) {
			trickle(c, []byte("GET / HTTP/1.1\r\nHost: www.filed.cn\r\nX-Slow: "+strings.Repeat("a", 100)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			go tc.send(c)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read: %v, want the gateway to close the connection", err)
			}
			if took := time.Since(start); took < evHelloTimeout {
				t.Errorf("closed after %v, before timeouts.hello (%v)", took, evHelloTimeout)
			}
			if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
				t.Errorf("got %q, want nothing or a 408", got)
			}
		})
	}
	t.Cleanup(func() {
		if conns, _ := o.rawState(); conns != 0 {
			t.Errorf("raw upstream accepted %d connections, want 0", conns)
		}
		if reqs := o.requests(); len(reqs) != 0 {
			t.Errorf("http upstream handled %v, want nothing", reqs)
		}
	})
}

// ---- HTTP ----

// evResponse is one response the client read.
type evResponse struct {
	status int
	reason string // X-Icpgate-Reason
	body   string
}

// exchangeHTTP writes raw to the http listener (from a goroutine, so a
// gateway that answers early is read) and reads responses until the
// connection ends.
func exchangeHTTP(t *testing.T, addr, raw string) []evResponse {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go io.WriteString(c, raw)
	br := bufio.NewReader(c)
	var out []evResponse
	for len(out) < 10 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			break
		}
		if resp.StatusCode == 100 {
			continue
		}
		out = append(out, evResponse{resp.StatusCode, resp.Header.Get("X-Icpgate-Reason"), string(b)})
	}
	return out
}

// briefResponses describes responses for a failure message.
func briefResponses(resps []evResponse) string {
	var b strings.Builder
	for _, r := range resps {
		body := r.body
		if !strings.HasPrefix(body, "saw ") {
			body = fmt.Sprintf("(%d bytes)", len(body))
		}
		fmt.Fprintf(&b, "[%d %s %s] ", r.status, r.reason, body)
	}
	return b.String()
}

// checkNoDesync compares what the client got with what the origin handled
// during one exchange: the origin's answers the client read must be exactly
// the requests the origin handled, in order, and no request for an unfiled
// name or the smuggled path may have reached the origin.
func checkNoDesync(t *testing.T, resps []evResponse, handled []evRequest) {
	t.Helper()
	var answered []string
	for _, r := range resps {
		if strings.HasPrefix(r.body, "saw ") {
			answered = append(answered, r.body)
		}
	}
	var reached []string
	for _, r := range handled {
		reached = append(reached, r.summary())
		h := strings.ToLower(r.host)
		if strings.Contains(r.uri, "smuggled") || strings.Contains(h, "unfiled") || strings.Contains(h, "cancelled") {
			t.Errorf("the origin handled %s %s for host %q", r.method, r.uri, r.host)
		}
	}
	if strings.Join(answered, "\n") != strings.Join(reached, "\n") {
		t.Errorf("desync: the client read answers to\n\t%q\nbut the origin handled\n\t%q", answered, reached)
	}
}

// evHTTPCase is one request (or request sequence) and the statuses the
// client must read, in order. Unless behind is set, a filed request for
// /behind follows on the same connection: it is answered only when the
// gateway kept the connection in sync.
type evHTTPCase struct {
	name   string
	raw    string
	behind string // default behindFiled; "-" for none
	want   []int
	reason string                                      // X-Icpgate-Reason of the first response, when set
	check  func(*testing.T, []evRequest, []evResponse) // extra checks
}

const (
	behindFiled   = "GET /behind HTTP/1.1\r\nHost: www.filed.cn\r\nConnection: close\r\n\r\n"
	behindUnfiled = "GET /behind HTTP/1.1\r\nHost: www.unfiled.cn\r\n\r\n"
)

func runHTTPCases(t *testing.T, addr string, o *evOrigin, cases []evHTTPCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(o.requests())
			behind := tc.behind
			switch behind {
			case "":
				behind = behindFiled
			case "-":
				behind = ""
			}
			resps := exchangeHTTP(t, addr, tc.raw+behind)
			// The origin records a request before answering it, so every
			// answer read is recorded by now; wait briefly for requests
			// it may still be handling (there should be none).
			time.Sleep(10 * time.Millisecond)
			handled := o.requests()[before:]
			var got []int
			for _, r := range resps {
				got = append(got, r.status)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("statuses: got %v, want %v (responses %s)", got, tc.want, briefResponses(resps))
			}
			if tc.reason != "" && (len(resps) == 0 || resps[0].reason != tc.reason) {
				t.Errorf("reason: got %s, want %q", briefResponses(resps), tc.reason)
			}
			checkNoDesync(t, resps, handled)
			if tc.check != nil {
				tc.check(t, handled, resps)
			}
		})
	}
}

// TestEvasionHTTP: the HTTP inputs that broke peers, against `icpgate serve`.
func TestEvasionHTTP(t *testing.T) {
	o := startEvOrigin(t)
	web, _ := startEvGateway(t, o)
	runHTTPCases(t, web, o, evasionHTTPCases())
}

// evasionHTTPCases are TestEvasionHTTP's inputs (the differential
// harness replays them too).
func evasionHTTPCases() []evHTTPCase {
	get := func(host string) string { return "GET /first HTTP/1.1\r\nHost: " + host + "\r\n\r\n" }
	upstreamHost := func(want string) func(*testing.T, []evRequest, []evResponse) {
		return func(t *testing.T, reqs []evRequest, _ []evResponse) {
			if len(reqs) == 0 || reqs[0].host != want {
				t.Errorf("origin saw %v, want the first request with Host %q", reqs, want)
			}
		}
	}
	ws := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	return []evHTTPCase{
		{name: "filed", raw: get("www.filed.cn"), want: []int{200, 200}},
		{name: "unfiled", raw: get("www.unfiled.cn"), want: []int{403}, reason: "unfiled"},
		// Absolute-form targets: the authority is the name decided and sent.
		{name: "absolute-form unfiled, Host filed", raw: "GET http://unfiled.cn/a HTTP/1.1\r\nHost: www.filed.cn\r\n\r\n", want: []int{403}, reason: "unfiled"},
		{name: "absolute-form filed, Host unfiled", raw: "GET http://www.filed.cn/a HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n", want: []int{200, 200}, check: upstreamHost("www.filed.cn")},
		{name: "absolute-form https upper case scheme", raw: "GET HTTPS://UNFILED.CN:443/a HTTP/1.1\r\nHost: www.filed.cn\r\n\r\n", want: []int{403}, reason: "unfiled"},
		{name: "absolute-form filed userinfo unfiled host", raw: "GET http://filed.cn@unfiled.cn/ HTTP/1.1\r\nHost: filed.cn\r\n\r\n", want: []int{400}},
		{name: "absolute-form unfiled userinfo filed host", raw: "GET http://unfiled.cn@filed.cn/ HTTP/1.1\r\nHost: filed.cn\r\n\r\n", want: []int{400}},
		// Host variants.
		{name: "duplicate Host filed first", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nHost: unfiled.cn\r\n\r\n", want: []int{400}},
		{name: "duplicate Host unfiled first", raw: "GET / HTTP/1.1\r\nHost: unfiled.cn\r\nHost: filed.cn\r\n\r\n", want: []int{400}},
		{name: "duplicate identical Host", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nHost: filed.cn\r\n\r\n", want: []int{400}},
		{name: "empty Host", raw: "GET / HTTP/1.1\r\nHost:\r\n\r\n", want: []int{400}},
		{name: "missing Host", raw: "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", want: []int{400}},
		{name: "HTTP/1.0 without Host (ip_access)", raw: "GET /first HTTP/1.0\r\n\r\n", want: []int{200}},
		{name: "Host with port", raw: get("www.filed.cn:8080"), want: []int{200, 200}, check: upstreamHost("www.filed.cn:8080")},
		{name: "unfiled Host with port", raw: get("unfiled.cn:80"), want: []int{403}, reason: "unfiled"},
		{name: "Host trailing dot", raw: get("www.filed.cn."), want: []int{200, 200}},
		{name: "unfiled Host trailing dot", raw: get("unfiled.cn."), want: []int{403}, reason: "unfiled"},
		{name: "Host upper case", raw: get("WWW.FILED.CN"), want: []int{200, 200}},
		{name: "unfiled Host upper case", raw: get("WWW.UNFILED.CN"), want: []int{403}, reason: "unfiled"},
		{name: "Host IDN A-label", raw: get("www.xn--fsqu00a.xn--fiqs8s"), want: []int{200, 200}},
		{name: "Host IP literal (ip_access)", raw: get("127.0.0.1"), want: []int{200, 200}},
		{name: "Host %2e", raw: get("filed%2ecn"), want: []int{403}, reason: "invalid_host"},
		{name: "Host full-width letters", raw: get("ｆｉｌｅｄ.cn"), want: []int{400}},
		{name: "Host ideographic full stop", raw: get("filed。cn"), want: []int{400}},
		{name: "Host raw UTF-8 IDN", raw: get("www.例子.中国"), want: []int{400}},
		{name: "Host cancelled", raw: get("cancelled.cn"), want: []int{403}, reason: "cancelled"},
		{name: "Host blacklisted subdomain", raw: get("a.b.blacklisted.cn"), want: []int{403}, reason: "blacklisted"},
		{name: "Host label of 64 bytes", raw: get(strings.Repeat("a", 64) + ".filed.cn"), want: []int{403}, reason: "invalid_host"},
		// Header syntax.
		{name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nX-A: b\r\n c\r\n\r\n", want: []int{400}},
		{name: "obs-fold continuing Host", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\n .unfiled.cn\r\n\r\n", want: []int{400}},
		{name: "whitespace before colon", raw: "GET / HTTP/1.1\r\nHost : unfiled.cn\r\nHost: filed.cn\r\n\r\n", want: []int{400}},
		{name: "whitespace before first field", raw: "GET / HTTP/1.1\r\n Host: unfiled.cn\r\nHost: filed.cn\r\n\r\n", want: []int{400}},
		{name: "tab and spaces around Host value", raw: "GET /first HTTP/1.1\r\nHost:\t www.filed.cn \t\r\n\r\n", want: []int{200, 200}},
		{name: "NUL in Host", raw: get("filed.cn\x00.unfiled.cn"), want: []int{400}},
		{name: "NUL in a header", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nX-A: a\x00b\r\n\r\n", want: []int{400}},
		{name: "CR in a header", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nX-A: a\rHost: unfiled.cn\r\n\r\n", want: []int{400}},
		{name: "bare LF hiding a second Host", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nX-A: b\nHost: unfiled.cn\r\n\r\n", want: []int{400}},
		{name: "bare LF line endings", raw: "GET / HTTP/1.1\nHost: filed.cn\n\n", want: []int{400}},
		// Pipelining and keep-alive: every request is decided.
		{name: "pipelined second request unfiled", raw: get("www.filed.cn") + get("unfiled.cn"), want: []int{200, 403}, reason: ""},
		{name: "pipelined three, last unfiled", raw: get("www.filed.cn") + get("filed.cn") + get("cancelled.cn"), want: []int{200, 200, 403}},
		{name: "keep-alive after a 404-style path", raw: "GET /nothing/here HTTP/1.1\r\nHost: filed.cn\r\n\r\n", behind: behindUnfiled, want: []int{200, 403}},
		// Upgrades: a tunnel only after a real 101 (the origin does not
		// upgrade, so the next request is parsed and decided).
		{name: "Upgrade h2c", raw: "GET /first HTTP/1.1\r\nHost: filed.cn\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
			behind: behindUnfiled, want: []int{200, 403}, check: func(t *testing.T, reqs []evRequest, _ []evResponse) {
				if len(reqs) == 1 && (reqs[0].header.Get("Upgrade") != "" || reqs[0].header.Get("Http2-Settings") != "") {
					t.Errorf("h2c upgrade forwarded: %v", reqs[0].header)
				}
			}},
		{name: "WebSocket upgrade refused by the origin", raw: "GET /ws HTTP/1.1\r\nHost: filed.cn\r\n" + ws, behind: behindUnfiled, want: []int{200, 403}},
		{name: "WebSocket upgrade to unfiled", raw: "GET /ws HTTP/1.1\r\nHost: unfiled.cn\r\n" + ws, want: []int{403}},
		{name: "PRI * HTTP/2.0 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: []int{505}},
		{name: "CONNECT", raw: "CONNECT unfiled.cn:443 HTTP/1.1\r\nHost: unfiled.cn:443\r\n\r\n", want: []int{405}},
		{name: "CONNECT to filed", raw: "CONNECT filed.cn:443 HTTP/1.1\r\nHost: filed.cn:443\r\n\r\n", want: []int{405}},
		// Client-supplied forwarding headers are replaced, never trusted.
		{name: "client X-Forwarded-*", raw: "GET /first HTTP/1.1\r\nHost: filed.cn\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: unfiled.cn\r\nX-Forwarded-Proto: https\r\n\r\n",
			want: []int{200, 200}, check: func(t *testing.T, reqs []evRequest, _ []evResponse) {
				if len(reqs) == 0 {
					return
				}
				h := reqs[0].header
				if xff := h.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
					t.Errorf("X-Forwarded-For: got %q, want [127.0.0.1]", xff)
				}
				if v := h.Values("X-Forwarded-Host"); len(v) != 0 {
					t.Errorf("X-Forwarded-Host forwarded: %q", v)
				}
				if v := h.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "http" {
					t.Errorf("X-Forwarded-Proto: got %q, want [http]", v)
				}
			}},
		// The block page escapes what it echoes.
		{name: "block page escapes", raw: "GET /%3Cscript%3Ealert(1)%3C/script%3E?q=%22%3E%3Cscript%3E HTTP/1.1\r\nHost: www.unfiled.cn\r\nUser-Agent: <script>alert(2)</script>\r\nReferer: \"><script>alert(3)</script>\r\n\r\n",
			want: []int{403}, check: func(t *testing.T, _ []evRequest, resps []evResponse) {
				if len(resps) == 1 && strings.Contains(strings.ToLower(resps[0].body), "<script") {
					t.Errorf("block page echoes markup unescaped: %q", resps[0].body)
				}
			}},
		// Oversized heads.
		{name: "1 MiB of headers", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\nCookie: " + strings.Repeat("a", 1<<20) + "\r\n\r\n", want: []int{431}},
		{name: "101 header fields", raw: "GET / HTTP/1.1\r\nHost: filed.cn\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n", want: []int{431}},
	}
}

// smuggled is a request hidden in a body: if any parser on the path
// disagreed with the gateway about where the body ends, the origin would
// handle it (for an unfiled name, without a decision).
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: unfiled.cn\r\n\r\n"

// TestEvasionSmuggling: request-smuggling mutations of the body framing
// against the http listener, each followed by a filed request on the same
// connection. Each is refused, or framed one way by the gateway and the
// origin alike; never a desync (checkNoDesync).
func TestEvasionSmuggling(t *testing.T) {
	o := startEvOrigin(t)
	web, _ := startEvGateway(t, o)
	runHTTPCases(t, web, o, evasionSmugglingCases())
}

// evasionSmugglingCases are TestEvasionSmuggling's inputs (the
// differential harness replays them too).
func evasionSmugglingCases() []evHTTPCase {
	chunked := "0\r\n\r\n" + smuggled                                            // a last chunk, then the smuggled request
	smugChunk := strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled // smuggled as a chunk's data
	cl := strconv.Itoa(len(chunked))
	post := func(fields, body string) string {
		return "POST /m HTTP/1.1\r\nHost: www.filed.cn\r\n" + fields + "\r\n" + body
	}
	refused, accepted := []int{400}, []int{200, 200}
	return []evHTTPCase{
		// CL.TE / TE.CL.
		{name: "Content-Length then Transfer-Encoding", raw: post("Content-Length: "+cl+"\r\nTransfer-Encoding: chunked\r\n", chunked), want: refused},
		{name: "Transfer-Encoding then Content-Length", raw: post("Transfer-Encoding: chunked\r\nContent-Length: "+cl+"\r\n", chunked), want: refused},
		{name: "Content-Length 4 with chunked", raw: post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", smugChunk+"\r\n0\r\n\r\n"), want: refused},
		// Transfer-Encoding obfuscations.
		{name: "TE xchunked", raw: post("Transfer-Encoding: xchunked\r\nContent-Length: "+cl+"\r\n", chunked), want: refused},
		{name: "TE chunked-false", raw: post("Transfer-Encoding: chunked-false\r\n", chunked), want: refused},
		{name: "TE gzip, chunked", raw: post("Transfer-Encoding: gzip, chunked\r\n", chunked), want: refused},
		{name: "TE chunked, identity", raw: post("Transfer-Encoding: chunked, identity\r\n", chunked), want: refused},
		{name: "TE identity, chunked", raw: post("Transfer-Encoding: identity, chunked\r\n", chunked), want: refused},
		{name: "TE identity with Content-Length", raw: post("Transfer-Encoding: identity\r\nContent-Length: "+cl+"\r\n", chunked), want: refused},
		{name: "two TE fields", raw: post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", chunked), want: refused},
		{name: "TE chunked and TE identity", raw: post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", chunked), want: refused},
		{name: "TE quoted", raw: post("Transfer-Encoding: \"chunked\"\r\n", chunked), want: refused},
		{name: "TE with space before colon", raw: post("Transfer-Encoding : chunked\r\nContent-Length: "+cl+"\r\n", chunked), want: refused},
		{name: "TE obs-folded", raw: post("Transfer-Encoding:\r\n chunked\r\nContent-Length: "+cl+"\r\n", chunked), want: refused},
		{name: "TE with vertical tab", raw: post("Transfer-Encoding: chunked\x0b\r\n", chunked), want: refused},
		{name: "TE with NUL", raw: post("Transfer-Encoding: chunked\x00\r\n", chunked), want: refused},
		{name: "TE in HTTP/1.0", raw: "POST /m HTTP/1.0\r\nHost: www.filed.cn\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, want: refused},
		// Framings both sides read alike: accepted, the smuggled bytes are
		// body (or a pipelined request that is decided).
		{name: "TE Chunked (case-insensitive coding)", raw: post("Transfer-Encoding: Chunked\r\n", smugChunk+"\r\n0\r\n\r\n"), want: accepted},
		{name: "TE chunked with trailing OWS", raw: post("Transfer-Encoding: chunked \t\r\n", smugChunk+"\r\n0\r\n\r\n"), want: accepted},
		{name: "Transfer_Encoding (underscore) is just a field", raw: post("Transfer_Encoding: chunked\r\nContent-Length: "+cl+"\r\n", chunked), want: accepted},
		{name: "Content-Length body holding a request", raw: post("Content-Length: "+strconv.Itoa(len(smuggled))+"\r\n", smuggled), want: accepted},
		{name: "GET with a Content-Length body", raw: "GET /g HTTP/1.1\r\nHost: www.filed.cn\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled, want: accepted},
		{name: "GET with Content-Length 0, request behind", raw: "GET /g HTTP/1.1\r\nHost: www.filed.cn\r\nContent-Length: 0\r\n\r\n" + smuggled, want: []int{200, 403}},
		{name: "Content-Length with leading zeros", raw: post("Content-Length: 0005\r\n", "hello"), want: accepted},
		{name: "chunk extension", raw: post("Transfer-Encoding: chunked\r\n", "5;a=b;c=\"d\"\r\nhello\r\n0\r\n\r\n"), want: accepted},
		{name: "trailer with Host unfiled", raw: post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nHost: unfiled.cn\r\n\r\n"), want: accepted},
		{name: "Expect 100-continue", raw: post("Content-Length: 5\r\nExpect: 100-continue\r\n", "hello"), want: accepted},
		// Content-Length obfuscations.
		{name: "two differing Content-Length", raw: post("Content-Length: 0\r\nContent-Length: "+cl+"\r\n", chunked), want: refused},
		{name: "Content-Length list", raw: post("Content-Length: "+cl+", 0\r\n", chunked), want: refused},
		{name: "Content-Length +2", raw: post("Content-Length: +"+cl+"\r\n", chunked), want: refused},
		{name: "Content-Length 0x", raw: post("Content-Length: 0x"+strconv.FormatInt(int64(len(chunked)), 16)+"\r\n", chunked), want: refused},
		{name: "Content-Length negative", raw: post("Content-Length: -1\r\n", chunked), want: refused},
		{name: "Content-Length exponent", raw: post("Content-Length: 5e1\r\n", chunked), want: refused},
		{name: "Content-Length overflow", raw: post("Content-Length: 18446744073709551621\r\n", chunked), want: refused},
		{name: "Content-Length empty", raw: post("Content-Length:\r\n", chunked), want: refused},
		{name: "Content-Length with space inside", raw: post("Content-Length: 4 9\r\n", chunked), want: refused},
		// Chunk-line obfuscations.
		{name: "chunk size +2", raw: post("Transfer-Encoding: chunked\r\n", "+2\r\nhi\r\n"+chunked), want: refused},
		{name: "chunk size 0x2", raw: post("Transfer-Encoding: chunked\r\n", "0x2\r\nhi\r\n"+chunked), want: refused},
		{name: "chunk size -0", raw: post("Transfer-Encoding: chunked\r\n", "-0\r\n\r\n"+smuggled), want: refused},
		{name: "chunk size with trailing space", raw: post("Transfer-Encoding: chunked\r\n", "2 \r\nhi\r\n"+chunked), want: refused},
		{name: "chunk size overflow", raw: post("Transfer-Encoding: chunked\r\n", "10000000000000002\r\nhi\r\n"+chunked), want: refused},
		{name: "bare LF after chunk size", raw: post("Transfer-Encoding: chunked\r\n", "2\nhi\r\n"+chunked), want: refused},
		{name: "bare LF after chunk data", raw: post("Transfer-Encoding: chunked\r\n", "2\r\nhi\n"+chunked), want: refused},
		{name: "bare LF last chunk", raw: post("Transfer-Encoding: chunked\r\n", "0\n\n"+smuggled), want: refused},
		{name: "chunk data longer than its size", raw: post("Transfer-Encoding: chunked\r\n", "2\r\nhiX\r\n"+chunked), want: refused},
		{name: "bare CR in chunk extension", raw: post("Transfer-Encoding: chunked\r\n", "2;a\rb\r\nhi\r\n"+chunked), want: refused},
		{name: "bare LF in trailer", raw: post("Transfer-Encoding: chunked\r\n", "0\r\nX: a\nHost: unfiled.cn\r\n\r\n"), want: refused},
	}
}

// TestEvasionQUICv2: QUIC version 2 (RFC 9369) Initials, split over two
// datagrams by a post-quantum hello, are decided like version 1: a filed
// name reaches the HTTP/3 origin, an unfiled one is refused with
// CRYPTO_ERROR access_denied in a v2 Initial and never reaches it.
func TestEvasionQUICv2(t *testing.T) {
	q := startQUICGateway(t, []quic.Version{quic.Version2, quic.Version1})
	pc := q.origin
	get := func(host string) (string, error) { return q.get(host, 10*time.Second, []quic.Version{quic.Version2}) }
	body, err := get("www.filed.cn")
	if err != nil {
		t.Fatalf("filed over QUIC v2: %v", err)
	}
	if want := "origin saw www.filed.cn over HTTP/3.0"; body != want {
		t.Errorf("filed: got %q, want %q", body, want)
	}
	before := pc.n.Load()
	_, err = get("unfiled.cn")
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != 0x131 || !te.Remote {
		t.Fatalf("unfiled over QUIC v2: got %v, want CONNECTION_CLOSE 0x131 from the gateway", err)
	}
	if got := pc.n.Load(); got != before {
		t.Errorf("the origin saw %d new flows during the unfiled attempt, want 0", got-before)
	}
}
