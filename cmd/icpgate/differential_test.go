package main

// The differential harness: "nothing undecided reaches an origin".
//
// The evasion suite checks what the gateway answers and its parser is
// checked against net/http; neither sees what the gateway sends. Request
// smuggling lives exactly there: a gateway that decides one request and
// writes bytes an origin reads as two lets the second through without a
// decision, and its answer then desynchronises the pooled upstream
// connection for whichever client takes it next. So the harness puts
// real origin servers behind a real `icpgate serve` (an http and an auto
// listener, the registry file of testdata/differential) and compares, for
// every request stream of a corpus, three readings of the same bytes:
//
//   - the client's: the requests the stream was built from, in order
//     (method, Host, target, decoded body length), and the responses it
//     read back — the gateway's own carry X-Icpgate-Reason and the
//     X-Request-Id it issued; an origin's carry X-Saw naming the request
//     it answered, with the X-Request-Id the gateway added to it;
//   - the gateway's: which requests it passed (an origin answered) and
//     which it blocked or refused, with their IDs;
//   - each origin's: the requests it parsed, from its own access log
//     (internal/origins: nginx, Apache httpd, Node.js, Go's net/http).
//
// The property: every request an origin parsed carries an X-Request-Id
// the gateway issued, no ID appears twice, its host is filed, its ID is
// not one the gateway answered with a block, and on each client
// connection the origin's sequence of requests equals the sequence of
// requests the gateway passed (same method, target, Host, body length);
// every response a client read names the request that client sent at
// that position. A request hidden in a body, a body byte read as a
// request line, a response handed to the wrong client: each breaks one
// of these, whatever the origin.
//
// The method follows HTTP Garden's (narfindustries/http-garden): replay
// one stream through a proxy to several servers and compare how each
// interpreted it, the servers reporting what they parsed rather than
// being guessed at; here the proxy's decisions are a fourth reading. The
// corpus follows PortSwigger's request-smuggling catalogue (CL.TE, TE.CL,
// TE.TE obfuscation, CL.0, hop-by-hop stripping of framing fields,
// pipelining and connection reuse) as generated mutations of framing and
// hop-by-hop fields, plus every input of the evasion suite's HTTP tests.
// Each stream runs alone on one connection and again followed by victim
// connections that take the gateway's pooled upstream connections and
// must each get their own answer.
//
// FuzzDifferential drives the same exchange against the in-process Go
// origin, with one gateway per fuzz process, checking the property that
// needs no model of the input: no origin entry without a gateway-issued
// X-Request-Id or for a host that is not filed, and the victim gets its
// own answer.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/origins"
)

// startDiffGateway runs `icpgate serve` with the differential registry: an
// http and an auto listener, both in front of upstream. Nameless requests
// are blocked (ip_access: block), so every request an origin may see has
// a filed name.
func startDiffGateway(t testing.TB, upstream string) (web, auto string) {
	t.Helper()
	g := serveWithRegistry(t, filepath.Join("testdata", "differential", "registry.jsonl"), fmt.Sprintf(`node: differential
registry:
  file: registry.jsonl
listeners:
  - {name: web, protocol: http, address: "127.0.0.1:0", upstream: %q}
  - {name: auto, protocol: auto, address: "127.0.0.1:0", upstream: %q}
admin:
  address: "127.0.0.1:0"
policy:
  ip_access: block
timeouts:
  hello: 3s
  idle: 3s
  drain: 2s
log:
  level: error
  format: json
`, upstream, upstream))
	return g.ProxyAddr("web").String(), g.ProxyAddr("auto").String()
}

// serveWithRegistry runs `icpgate serve` with config cfg in a temporary
// directory holding a copy of the registry file at registry (cfg names
// it registry.jsonl).
func serveWithRegistry(t testing.TB, registry, cfg string) *Gateway {
	t.Helper()
	dir := t.TempDir()
	reg, err := os.ReadFile(registry)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "registry.jsonl"), reg, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "icpgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return runServe(t, path)
}

// diffFiled are the registry's filed names; an origin may see these and
// their subdomains only.
var diffFiled = []string{"filed.cn", "filed-demo.cn", "xn--fsqu00a.xn--fiqs8s"}

// filedHost reports whether a Host value an origin logged names a filed
// domain (any case, port and trailing dot).
func filedHost(h string) bool {
	h = strings.ToLower(h)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for _, f := range diffFiled {
		if h == f || strings.HasSuffix(h, "."+f) {
			return true
		}
	}
	return false
}

// gatewayID matches the X-Request-Id values the gateway issues.
var gatewayID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// diffResp is one final response a client read.
type diffResp struct {
	status int
	reason string // X-Icpgate-Reason: the gateway answered itself
	id     string // X-Request-Id of a gateway response
	saw    origins.Saw
	hasSaw bool // an origin answered and named the request
}

func (r diffResp) String() string {
	switch {
	case r.reason != "":
		return fmt.Sprintf("%d from the gateway (%s, id %s)", r.status, r.reason, r.id)
	case r.hasSaw:
		return fmt.Sprintf("%d from %s for %s %s host %q id %q", r.status, r.saw.Origin, r.saw.Method, r.saw.Target, r.saw.Host, r.saw.RequestID)
	}
	return fmt.Sprintf("%d naming no request", r.status)
}

// diffConn is what one client connection sent and read.
type diffConn struct {
	raw   string
	reqs  []diffReq // the requests sent, in order; nil when not modelled
	resps []diffResp
	err   error // a response stream that was not HTTP, or no end
}

// exchange sends raw on a new connection to addr and reads responses until
// the connection ends. halfClose ends the client's side after raw (for a
// stream with no "Connection: close" request of its own).
func exchange(addr, raw string, reqs []diffReq, halfClose bool) diffConn {
	dc := diffConn{raw: raw, reqs: reqs}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		dc.err = err
		return dc
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	go func() {
		// From a goroutine: a gateway that answers before reading all of
		// a large stream is still read.
		if _, err := io.WriteString(c, raw); err == nil && halfClose {
			c.(*net.TCPConn).CloseWrite()
		}
	}()
	br := bufio.NewReader(c)
	for len(dc.resps) < 64 {
		method := "GET"
		if k := len(dc.resps); k < len(reqs) {
			method = reqs[k].method
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
				dc.err = fmt.Errorf("reading response %d: %w", len(dc.resps), err)
			}
			return dc
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
			continue // interim: the final response follows
		}
		r := diffResp{status: resp.StatusCode, reason: resp.Header.Get("X-Icpgate-Reason")}
		if r.reason != "" {
			r.id = resp.Header.Get("X-Request-Id")
		} else {
			r.saw, r.hasSaw = origins.ParseSaw(resp.Header.Get(origins.SawHeader))
		}
		dc.resps = append(dc.resps, r)
		if err != nil || resp.StatusCode == 101 {
			return dc // a cut body, or a tunnel: nothing more to parse
		}
	}
	return dc
}

// victimReq is an ordinary filed request from another client; n tells the
// victims apart.
func victimReq(n int) (string, diffReq) {
	target := fmt.Sprintf("/victim-%d", n)
	raw := "GET " + target + " HTTP/1.1\r\nHost: www.filed-demo.cn\r\nCookie: session=victim-" + fmt.Sprint(n) +
		"\r\nConnection: close\r\n\r\n"
	return raw, diffReq{method: "GET", host: "www.filed-demo.cn", target: target}
}

// diffRun is one stream's run: its connections, the stream's first.
type diffRun struct {
	stream *diffStream
	mode   string
	conns  []diffConn
	errs   []string
}

func (r *diffRun) errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// runStream runs s alone, or followed by victims on connections of their
// own that start once the stream's connection has ended (so they take the
// upstream connection it gave back to the pool).
func runStream(addr string, s *diffStream, victims int) *diffRun {
	run := &diffRun{stream: s, mode: "alone"}
	run.conns = append(run.conns, exchange(addr, s.raw, s.reqs, s.halfClose))
	if victims == 0 {
		return run
	}
	run.mode = "then victims"
	vs := make([]diffConn, victims)
	var wg sync.WaitGroup
	for i := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, req := victimReq(i)
			vs[i] = exchange(addr, raw, []diffReq{req}, false)
		}()
	}
	wg.Wait()
	run.conns = append(run.conns, vs...)
	return run
}

// settledLog returns an origin's log once it stops growing: nginx, httpd
// and node write a line after the response it belongs to.
func settledLog(t *testing.T, o *origins.Origin) []origins.Entry {
	t.Helper()
	var last []origins.Entry
	stable := 0
	for deadline := time.Now().Add(10 * time.Second); stable < 3 && time.Now().Before(deadline); {
		time.Sleep(30 * time.Millisecond)
		got, err := o.Log()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == len(last) {
			stable++
		} else {
			stable = 0
		}
		last = got
	}
	return last
}

// respRef locates a response: run, connection, position.
type respRef struct {
	run     *diffRun
	conn, k int
}

// idRuns attributes gateway-issued IDs to runs: the gateway numbers its
// IDs from a random base per listener and runs are sequential, so an ID
// belongs to the run that issued the nearest lower ID a client saw.
type idRuns struct {
	ids  []uint64
	runs []*diffRun
}

func newIDRuns(byID map[string]respRef) *idRuns {
	ir := &idRuns{}
	type pair struct {
		id  uint64
		run *diffRun
	}
	var ps []pair
	for id, ref := range byID {
		if v, err := strconv.ParseUint(id, 16, 64); err == nil && gatewayID.MatchString(id) {
			ps = append(ps, pair{v, ref.run})
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].id < ps[j].id })
	for _, p := range ps {
		ir.ids, ir.runs = append(ir.ids, p.id), append(ir.runs, p.run)
	}
	return ir
}

// run returns the run that issued e's ID, or nil. The first IDs of a run
// may be ones no client saw (a request whose answer was the origin's own
// error), so the run after the nearest lower ID is taken when e is one of
// its requests and not one of that run's.
func (ir *idRuns) run(e origins.Entry) *diffRun {
	v, err := strconv.ParseUint(e.RequestID, 16, 64)
	if err != nil || !gatewayID.MatchString(e.RequestID) {
		return nil
	}
	i := sort.Search(len(ir.ids), func(i int) bool { return ir.ids[i] > v }) - 1
	if i < 0 || v-ir.ids[i] > 1<<20 {
		return nil
	}
	lower := ir.runs[i]
	if i+1 < len(ir.runs) && ir.ids[i+1]-v < 1<<20 {
		if higher := ir.runs[i+1]; higher.sent(e) && !lower.sent(e) {
			return higher
		}
	}
	return lower
}

// sent reports whether a connection of the run sent a request with e's
// method and target.
func (r *diffRun) sent(e origins.Entry) bool {
	for _, c := range r.conns {
		for _, q := range c.reqs {
			if q.method == e.Method && q.target == e.Target {
				return true
			}
		}
	}
	return false
}

// checkDifferential checks the property over every run against origin's
// log, recording each violation on the run it belongs to (an entry
// without an ID goes to the run of the entry before it, which is what the
// origin was reading when it parsed it).
func checkDifferential(origin string, runs []*diffRun, log []origins.Entry) {
	byID := map[string]respRef{}
	for _, run := range runs {
		for ci, c := range run.conns {
			for k, r := range c.resps {
				id := r.id
				if r.hasSaw {
					id = r.saw.RequestID
				}
				if id != "" {
					byID[id] = respRef{run, ci, k}
				}
			}
		}
	}
	issued := newIDRuns(byID)
	type connKey struct {
		run  *diffRun
		conn int
	}
	originSeq := map[connKey][]int{} // positions answered, in the origin's order
	seen := map[string]bool{}
	var current *diffRun
	if len(runs) > 0 {
		current = runs[0]
	}
	for _, e := range log {
		ref, ok := byID[e.RequestID]
		if ok {
			current = ref.run
		} else if r := issued.run(e); r != nil {
			current = r
		}
		run := current
		refused := slices.Contains(run.stream.refusedBy, origin)
		switch {
		case e.RequestID == "" && refused && e.Status >= 400:
			continue // the origin refused bytes of a request it could not parse
		case e.RequestID == "":
			run.errorf("origin parsed a request no decision covers (no X-Request-Id): %v", e)
		case !gatewayID.MatchString(e.RequestID):
			run.errorf("origin parsed a request whose X-Request-Id the gateway did not issue: %v", e)
		case seen[e.RequestID]:
			run.errorf("origin parsed X-Request-Id %s twice: %v", e.RequestID, e)
		}
		seen[e.RequestID] = true
		if !filedHost(e.Host) {
			run.errorf("origin parsed a request for a host that is not filed: %v", e)
		}
		if !ok {
			if e.RequestID != "" && !refused {
				run.errorf("origin parsed a request whose answer reached no client: %v", e)
			}
			continue
		}
		resp := ref.run.conns[ref.conn].resps[ref.k]
		if resp.reason != "" && resp.status == 403 {
			run.errorf("origin parsed request %d of connection %d, which the gateway blocked: %v", ref.k, ref.conn, e)
		}
		originSeq[connKey{ref.run, ref.conn}] = append(originSeq[connKey{ref.run, ref.conn}], ref.k)
		if c := ref.run.conns[ref.conn]; ref.k < len(c.reqs) {
			want := c.reqs[ref.k]
			if e.Method != want.method || e.Target != want.target || !strings.EqualFold(e.Host, want.host) ||
				(e.BodyLen >= 0 && e.BodyLen != want.body) {
				run.errorf("connection %d request %d: origin parsed %v, the client sent %s %s host %q body %d",
					ref.conn, ref.k, e, want.method, want.target, want.host, want.body)
			}
		}
	}
	for _, run := range runs {
		refused := slices.Contains(run.stream.refusedBy, origin)
		for ci, c := range run.conns {
			if c.err != nil {
				run.errorf("connection %d: %v", ci, c.err)
			}
			var passed []int
			for k, r := range c.resps {
				switch {
				case r.hasSaw:
					passed = append(passed, k)
					if !seen[r.saw.RequestID] {
						run.errorf("connection %d response %d: %v, which the origin did not log", ci, k, r)
					}
					if k < len(c.reqs) && (r.saw.Method != c.reqs[k].method || r.saw.Target != c.reqs[k].target) {
						run.errorf("connection %d response %d: %v, but the client sent %s %s there", ci, k, r, c.reqs[k].method, c.reqs[k].target)
					}
				case r.reason == "" && !refused:
					run.errorf("connection %d response %d: %v: the origin refused what the gateway sent it", ci, k, r)
				case r.reason != "" && seen[r.id]:
					passed = append(passed, k) // forwarded, then cut (502, 408)
				}
			}
			if ci > 0 && (len(c.resps) != 1 || !c.resps[0].hasSaw) {
				run.errorf("victim connection %d: got %v, want the origin's answer to its own request", ci, c.resps)
			}
			if got := originSeq[connKey{run, ci}]; fmt.Sprint(got) != fmt.Sprint(passed) {
				run.errorf("connection %d: the origin parsed the requests at positions %v, the gateway passed %v", ci, got, passed)
			}
		}
	}
}

// brief quotes raw for a failure message, shortened in the middle.
func brief(raw string) string {
	if len(raw) > 600 {
		raw = raw[:400] + fmt.Sprintf("...(%d bytes)...", len(raw)-600) + raw[len(raw)-200:]
	}
	return fmt.Sprintf("%q", raw)
}

// diffOrigins are the harness's origin servers.
var diffOrigins = []struct {
	name  string
	start func(testing.TB) *origins.Origin
}{
	{"go", origins.Go},
	{"nginx", origins.Nginx},
	{"apache", origins.Apache},
	{"node", origins.Node},
}

// TestDifferential runs the corpus through both listeners in front of
// each origin and checks the property of the file comment.
func TestDifferential(t *testing.T) {
	corpus := diffCorpus()
	for _, od := range diffOrigins {
		t.Run(od.name, func(t *testing.T) {
			o := od.start(t)
			web, auto := startDiffGateway(t, o.Addr)
			var runs []*diffRun
			for _, addr := range []struct{ name, addr string }{{"http", web}, {"auto", auto}} {
				for i := range corpus {
					for _, victims := range []int{0, 2} {
						run := runStream(addr.addr, &corpus[i], victims)
						run.mode = addr.name + " listener, " + run.mode
						runs = append(runs, run)
					}
				}
			}
			log := settledLog(t, o)
			checkDifferential(od.name, runs, log)
			failed := 0
			for _, run := range runs {
				if len(run.errs) == 0 {
					continue
				}
				failed++
				t.Errorf("%s (%s): stream %s\n\t%s", run.stream.name, run.mode, brief(run.stream.raw), strings.Join(run.errs, "\n\t"))
			}
			t.Logf("%d streams, %d runs, %d failed; the origin logged %d requests", len(corpus), len(runs), failed, len(log))
		})
	}
}

// FuzzDifferential sends each input on its own connection to the http
// listener in front of the in-process Go origin (one gateway per fuzz
// process), then a victim request on another. No origin entry may lack a
// gateway-issued X-Request-Id or name a host that is not filed, no ID may
// repeat, and the victim must get the origin's answer to its own request.
func FuzzDifferential(f *testing.F) {
	for _, s := range diffCorpus() {
		f.Add([]byte(s.raw))
	}
	o := origins.Go(f)
	web, _ := startDiffGateway(f, o.Addr)
	// A fuzz process runs one input at a time, so the log entries past
	// next are this input's (or late ones of the input before).
	next, ids := 0, map[string]bool{}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 16<<10 {
			return
		}
		att := exchange(web, string(raw), nil, true)
		vraw, vreq := victimReq(0)
		v := exchange(web, vraw, []diffReq{vreq}, false)
		if len(v.resps) != 1 || !v.resps[0].hasSaw || v.resps[0].saw.Target != vreq.target {
			t.Errorf("victim got %v (err %v), want the origin's answer to GET %s; the input's connection got %v", v.resps, v.err, vreq.target, att.resps)
		}
		log, _ := o.Log()
		for _, e := range log[next:] {
			switch {
			case !gatewayID.MatchString(e.RequestID):
				t.Errorf("origin parsed a request without a gateway-issued X-Request-Id: %v", e)
			case ids[e.RequestID]:
				t.Errorf("origin parsed X-Request-Id %s twice: %v", e.RequestID, e)
			case !filedHost(e.Host):
				t.Errorf("origin parsed a request for a host that is not filed: %v", e)
			}
			ids[e.RequestID] = true
		}
		next = len(log)
	})
}
