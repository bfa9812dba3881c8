package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// tcpPair returns the two ends of a real loopback TCP connection.
func tcpPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- res{c, err}
	}()
	d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { d.Close(); r.c.Close() })
	return d, r.c
}

// relayFixture is client <-> [gwClient relay gwUp] <-> upstream over four
// real sockets.
type relayFixture struct {
	client, gwClient, gwUp, upstream *net.TCPConn
	up, down                         prometheus.Counter
	done                             chan error
	nUp, nDown                       int64
}

func newRelayFixture(t *testing.T) *relayFixture {
	f := &relayFixture{done: make(chan error, 1)}
	f.client, f.gwClient = tcpPair(t)
	f.gwUp, f.upstream = tcpPair(t)
	f.up = prometheus.NewCounter(prometheus.CounterOpts{Name: "up"})
	f.down = prometheus.NewCounter(prometheus.CounterOpts{Name: "down"})
	go func() {
		var err error
		f.nUp, f.nDown, err = relay(new(splicerCache), f.gwClient, f.gwUp, f.up, f.down)
		f.gwClient.Close()
		f.gwUp.Close()
		f.done <- err
	}()
	return f
}

func (f *relayFixture) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not return")
		return nil
	}
}

func TestRelayHalfClose(t *testing.T) {
	f := newRelayFixture(t)
	const req, resp = "request bytes", "response after the client's FIN"
	if _, err := f.client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	if err := f.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The upstream reads to EOF (the relay half-closed it) and can still
	// answer.
	got, err := io.ReadAll(f.upstream)
	if err != nil {
		t.Fatalf("upstream read: %v", err)
	}
	if string(got) != req {
		t.Fatalf("upstream got %q, want %q", got, req)
	}
	if _, err := f.upstream.Write([]byte(resp)); err != nil {
		t.Fatalf("upstream write after EOF: %v", err)
	}
	f.upstream.CloseWrite()
	got, err = io.ReadAll(f.client)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if string(got) != resp {
		t.Fatalf("client got %q, want %q", got, resp)
	}
	if err := f.wait(t); err != nil {
		t.Fatalf("relay: %v", err)
	}
	for _, c := range []struct {
		name      string
		n         int64
		counter   prometheus.Counter
		wantBytes int
	}{{"upstream", f.nUp, f.up, len(req)}, {"downstream", f.nDown, f.down, len(resp)}} {
		if c.n != int64(c.wantBytes) {
			t.Errorf("%s: relay returned %d bytes, want %d", c.name, c.n, c.wantBytes)
		}
		if got := testutil.ToFloat64(c.counter); got != float64(c.wantBytes) {
			t.Errorf("%s: counter %v, want %d", c.name, got, c.wantBytes)
		}
	}
}

func TestRelayLargeBothWays(t *testing.T) {
	f := newRelayFixture(t)
	const size = 3*relayChunk + 12345 // several splice runs
	upData, downData := make([]byte, size), make([]byte, size)
	rand.Read(upData)
	rand.Read(downData)
	var wg sync.WaitGroup
	var gotUp, gotDown []byte
	var errUp, errDown error
	wg.Add(4)
	go func() { defer wg.Done(); f.client.Write(upData); f.client.CloseWrite() }()
	go func() { defer wg.Done(); f.upstream.Write(downData); f.upstream.CloseWrite() }()
	go func() { defer wg.Done(); gotUp, errUp = io.ReadAll(f.upstream) }()
	go func() { defer wg.Done(); gotDown, errDown = io.ReadAll(f.client) }()
	wg.Wait()
	if errUp != nil || errDown != nil {
		t.Fatalf("reads: %v, %v", errUp, errDown)
	}
	if !bytes.Equal(gotUp, upData) {
		t.Errorf("upstream got %d bytes, want the %d sent", len(gotUp), size)
	}
	if !bytes.Equal(gotDown, downData) {
		t.Errorf("client got %d bytes, want the %d sent", len(gotDown), size)
	}
	if err := f.wait(t); err != nil {
		t.Fatalf("relay: %v", err)
	}
	if got := testutil.ToFloat64(f.up); got != size {
		t.Errorf("upstream counter %v, want %d", got, size)
	}
}

func TestRelayResetEndsBothDirections(t *testing.T) {
	f := newRelayFixture(t)
	// The client keeps its side open; a reset from the upstream must still
	// end the relay and close the client.
	f.upstream.SetLinger(0)
	f.upstream.Close()
	if err := f.wait(t); err == nil {
		t.Errorf("relay after upstream reset: got nil error, want one")
	}
	f.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := f.client.Read(make([]byte, 1)); err == nil {
		t.Errorf("client read after reset: got nil error, want EOF or reset")
	}
}

// TestIdleWatchdog checks the TCP_INFO idle check on real sockets: a quiet
// relay is closed, one with a trickle of traffic stays open.
func TestIdleWatchdog(t *testing.T) {
	const idle = 400 * time.Millisecond
	var set connSet
	quiet := newRelayFixture(t)
	busy := newRelayFixture(t)
	tq := &trackedConn{c: quiet.gwClient, tcp: quiet.gwClient}
	tb := &trackedConn{c: busy.gwClient, tcp: busy.gwClient}
	set.add(tq)
	set.add(tb)
	set.startRelay(tq, quiet.gwUp, idle)
	set.startRelay(tb, busy.gwUp, idle)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the watchdog, ticking as the Server's would
		defer wg.Done()
		var due []idleCheck
		for {
			select {
			case <-stop:
				return
			case <-time.After(idle / 8):
			}
			now := time.Now()
			due = set.due(now.UnixNano(), due[:0])
			set.checkIdle(now, due, nil)
		}
	}()
	go func() { // one byte every idle/8, each way alternately
		defer wg.Done()
		buf := make([]byte, 1)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(idle / 8):
			}
			src, dst := busy.client, busy.upstream
			if i%2 == 1 {
				src, dst = busy.upstream, busy.client
			}
			if _, err := src.Write([]byte{'x'}); err != nil {
				return
			}
			if _, err := io.ReadFull(dst, buf); err != nil {
				return
			}
		}
	}()

	// The quiet relay ends on its own.
	if err := quiet.wait(t); err == nil {
		t.Errorf("quiet relay: got nil error, want the close by the watchdog")
	}
	quiet.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := quiet.client.Read(make([]byte, 1)); err == nil {
		t.Errorf("quiet client read: got nil error, want EOF")
	}
	// By now the busy one has lived several idle periods; it must still be
	// open.
	time.Sleep(2 * idle)
	select {
	case err := <-busy.done:
		t.Errorf("busy relay closed while active: %v", err)
	default:
	}
	close(stop)
	wg.Wait()
	set.remove(tq)
	set.remove(tb)
	if n := set.len(); n != 0 {
		t.Errorf("set has %d connections after removal, want 0", n)
	}
}

// BenchmarkRelay measures splice throughput through the relay, 16 MiB per
// op one way. BenchmarkRelayDirect is the same transfer over one direct
// loopback connection: compare the two from one run, as a ratio.
func BenchmarkRelay(b *testing.B) {
	client, gwClient := tcpPair(b)
	gwUp, upstream := tcpPair(b)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	go relay(new(splicerCache), gwClient, gwUp, c, c)
	benchTransfer(b, client, upstream)
}

// BenchmarkRelayUserspace is the same hop copied through a 32 KiB
// user-space buffer (what a wrapped net.Conn falls back to), for
// comparison with splice.
func BenchmarkRelayUserspace(b *testing.B) {
	client, gwClient := tcpPair(b)
	gwUp, upstream := tcpPair(b)
	go func() {
		buf := make([]byte, 32<<10)
		io.CopyBuffer(struct{ io.Writer }{gwUp}, struct{ io.Reader }{gwClient}, buf)
	}()
	benchTransfer(b, client, upstream)
}

func BenchmarkRelayDirect(b *testing.B) {
	client, upstream := tcpPair(b)
	benchTransfer(b, client, upstream)
}

func benchTransfer(b *testing.B, src, dst *net.TCPConn) {
	const size = 16 << 20
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range b.N {
			if _, err := io.CopyN(io.Discard, dst, size); err != nil {
				return
			}
		}
	}()
	for range b.N {
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := src.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	<-done
}
