package proxy

// Resource bounds at scale: 10,000 idle client connections held by a
// running Server, in the hello phase and as idle passthrough tunnels, fit
// in a memory budget per connection, and the global and per-IP caps hold
// exactly at that scale. The clients and the upstream live in helper
// processes (this binary re-run as TestIdleHelper), so the test process
// holds only the gateway's sockets and the figures are the gateway's own.

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	idleConns = 10000
	// idleBudget is the Go memory (heap and goroutine stacks) one idle
	// connection may cost, test clients and upstream sockets included: a
	// generous resource bound, not a measurement of speed.
	idleBudget = 64 << 10
)

// goMemory is the Go memory in use after a collection: heap and stacks.
func goMemory() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// rssBytes is the process's resident set size (VmRSS).
func rssBytes(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// nofileLimit is the soft descriptor limit after trying to raise it to
// want (root may raise the hard limit too; a container may forbid it).
func nofileLimit(t *testing.T, want uint64) uint64 {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur >= want {
		return old.Cur
	}
	for _, r := range []syscall.Rlimit{{Cur: want, Max: max(old.Max, want)}, {Cur: min(want, old.Max), Max: old.Max}} {
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r) == nil {
			t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: old.Cur, Max: r.Max}) })
			return r.Cur
		}
	}
	return old.Cur
}

// idleHelper is this test binary re-run as TestIdleHelper: it holds the
// idle clients or the upstream in a process of its own, so that only the
// gateway's descriptors and memory are in the test process.
type idleHelper struct {
	stdin io.WriteCloser
	lines chan string
	wait  func() error
	once  sync.Once
}

// startIdleHelper runs the helper with env and returns once it printed a
// line starting with ready (which it returns).
func startIdleHelper(t *testing.T, ready string, env ...string) (*idleHelper, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &idleHelper{stdin: stdin, lines: make(chan string, 16), wait: cmd.Wait}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(h.close)
	timeout := time.After(120 * time.Second)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before %q", ready)
			}
			if v, found := strings.CutPrefix(l, ready); found {
				return h, strings.TrimSpace(v)
			}
			t.Logf("helper: %s", l)
		case <-timeout:
			t.Fatalf("helper did not print %q", ready)
		}
	}
}

// closeLast makes a clients helper close its newest connection.
func (h *idleHelper) closeLast(t *testing.T) {
	t.Helper()
	io.WriteString(h.stdin, "close-last\n")
	for l := range h.lines {
		if l == "CLOSED" {
			return
		}
	}
	t.Fatal("helper exited before closing a connection")
}

// close ends the helper (it closes what it holds and exits).
func (h *idleHelper) close() {
	h.once.Do(func() {
		h.stdin.Close()
		for range h.lines {
		}
		h.wait()
	})
}

// TestIdleHelper is not a test: TestIdleConnectionsMemory runs the test
// binary with it selected to hold idle clients (ICPGATE_IDLE_HELPER=clients)
// or an upstream that accepts and holds connections (=upstream) in their
// own process. It serves until its stdin closes.
func TestIdleHelper(t *testing.T) {
	mode := os.Getenv("ICPGATE_IDLE_HELPER")
	if mode == "" {
		t.Skip("helper process for TestIdleConnectionsMemory")
	}
	nofileLimit(t, 1<<20)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	switch mode {
	case "upstream":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
		fmt.Println("ADDR", ln.Addr())
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
	case "clients":
		n, _ := strconv.Atoi(os.Getenv("ICPGATE_IDLE_N"))
		perIP, _ := strconv.Atoi(os.Getenv("ICPGATE_IDLE_PER_IP"))
		hello, err := hex.DecodeString(os.Getenv("ICPGATE_IDLE_HELLO"))
		if err != nil || n <= 0 || perIP <= 0 {
			t.Fatalf("bad helper environment: n %d, per IP %d, hello %v", n, perIP, err)
		}
		addr := os.Getenv("ICPGATE_IDLE_ADDR")
		for i := range n {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i/perIP))}, Timeout: 10 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			held = append(held, c)
			if len(hello) > 0 {
				if _, err := c.Write(hello); err != nil {
					t.Fatalf("hello %d: %v", i, err)
				}
			}
		}
		fmt.Println("READY", len(held))
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "close-last" && len(held) > 0 {
				held[len(held)-1].Close()
				held = held[:len(held)-1]
				fmt.Println("CLOSED")
			}
		}
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// waitForLong is waitFor with room for 10,000 connections on a loaded
// machine.
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleConnectionsMemory holds 10,000 idle connections open through a
// Server, from four client addresses at the per-IP cap with the global cap
// at their total: in the hello phase (the clients sent a record header,
// then nothing: a client that sends nothing at all stays in the kernel,
// the listener being TCP_DEFER_ACCEPT) and as passthrough tunnels (a filed
// hello went through, then silence). It logs
// the Go memory (heap and stacks) and RSS per connection and requires the
// Go memory to stay under idleBudget. Then one more connection from a
// fifth address is refused by the global cap and, after one closes, one
// more from a full address by the per-IP cap.
//
// An idle tunnel holds two descriptors in the gateway, its two sockets (the
// passthrough engine takes a splice pipe only while a direction moves bulk
// data); where the descriptor limit cannot be raised to 25,000 and more (a
// container without CAP_SYS_RESOURCE) the tunnel case holds as many as
// fit, and says so.
func TestIdleConnectionsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	limit := nofileLimit(t, 2*idleConns+4096)
	hello := clientHello(t, "www.filed.cn")
	for _, tc := range []struct {
		name   string
		tunnel bool
	}{{"hello phase", false}, {"idle tunnels", true}} {
		t.Run(tc.name, func(t *testing.T) {
			n := idleConns
			if fit := (int(limit) - 1024) / 2; tc.tunnel && fit < n {
				n = fit - fit%4
				t.Logf("descriptor limit %d: holding %d tunnels, not %d", limit, n, idleConns)
			}
			perIP := n / 4
			upAddr := "127.0.0.1:1"
			var upstream *idleHelper
			if tc.tunnel {
				upstream, upAddr = startIdleHelper(t, "ADDR", "ICPGATE_IDLE_HELPER=upstream")
			}
			cfg := tlsListener(upAddr)
			cfg.Timeouts.Hello = 5 * time.Minute // idle clients stay in the hello phase
			cfg.Limits = Limits{MaxConns: n, MaxConnsPerIP: perIP}
			g := startGateway(t, cfg, filedOnly)
			addr := g.addr("tls")
			active := func() float64 { return testutil.ToFloat64(g.m.ActiveConnections.WithLabelValues("tls")) }
			rejects := func(l string) float64 { return testutil.ToFloat64(g.m.LimitRejects.WithLabelValues(l)) }

			memBefore, rssBefore := goMemory(), rssBytes(t)
			env := []string{"ICPGATE_IDLE_HELPER=clients", "ICPGATE_IDLE_ADDR=" + addr,
				"ICPGATE_IDLE_N=" + strconv.Itoa(n), "ICPGATE_IDLE_PER_IP=" + strconv.Itoa(perIP)}
			first := hello[:5] // a record header: the hello phase waits for the record
			if tc.tunnel {
				first = hello
			}
			env = append(env, "ICPGATE_IDLE_HELLO="+hex.EncodeToString(first))
			clients, _ := startIdleHelper(t, "READY", env...)
			waitForLong(t, "every connection admitted", func() bool { return active() == float64(n) })
			if tc.tunnel {
				waitForLong(t, "every tunnel relaying", func() bool { return g.srv.openConns() == n && relaying(g.srv) == n })
			}
			memAfter, rssAfter := goMemory(), rssBytes(t)
			perConn := (int64(memAfter) - int64(memBefore)) / int64(n)
			rssPerConn := (int64(rssAfter) - int64(rssBefore)) / int64(n)
			t.Logf("%d idle connections (%s): Go heap+stacks %d B/conn, RSS %d B/conn, goroutines %d",
				n, tc.name, perConn, rssPerConn, runtime.NumGoroutine())
			if perConn > idleBudget {
				t.Errorf("Go memory per idle connection: %d B, budget %d B", perConn, idleBudget)
			}

			// Every slot is taken: a new address hits the global cap.
			refused := func(src string) bool {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					t.Fatalf("dial from %s: %v", src, err)
				}
				defer c.Close()
				c.Write(hello[:1]) // accepted now, not after the kernel's deferral
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Read(make([]byte, 1))
				return err == io.EOF || errors.Is(err, syscall.ECONNRESET)
			}
			if !refused("127.0.0.5") {
				t.Fatal("a connection over the global cap was not closed")
			}
			if got := rejects(limitGlobal); got != 1 {
				t.Errorf("global rejects: got %v, want 1", got)
			}
			if !tc.tunnel {
				// One slot frees up (a client of 127.0.0.4 leaves); 127.0.0.1
				// is still at its cap.
				clients.closeLast(t)
				waitForLong(t, "slot freed", func() bool { return active() == float64(n-1) })
				if !refused("127.0.0.1") {
					t.Fatal("a connection over the per-IP cap was not closed")
				}
				if got := rejects(limitPerIP); got != 1 {
					t.Errorf("per_ip rejects: got %v, want 1", got)
				}
			}
			clients.close()
			if upstream != nil {
				upstream.close() // else the half-closed tunnels wait for it
			}
			waitForLong(t, "every connection released", func() bool { return active() == 0 })
		})
	}
}

// relaying counts the connections of s whose relay has started.
func relaying(s *Server) int {
	n := 0
	s.mu.Lock()
	for _, e := range s.engines {
		e.call(func() {
			for _, c := range e.slots {
				if c.rt != nil && c.state == stRelay {
					n++
				}
			}
		})
	}
	s.mu.Unlock()
	for i := range s.conns.shards {
		sh := &s.conns.shards[i]
		sh.mu.Lock()
		for tc := sh.head; tc != nil; tc = tc.next {
			if tc.up != nil {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}
