//go:build linux

package main

// The claims are abstract unix sockets, "@icpgate/tcp/127.0.0.1:8080":
// the kernel holds the name for as long as the process lives (kill -9
// included), scoped to the network namespace like the ports themselves,
// with no file to clean up and no directory to share. The holder listens
// on each and answers whoever connects with an instanceHello line, and an
// upgrade with the requests of instance.go.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of the handshake. None is a timing the handover relies on: each
// only keeps a stuck peer from holding a goroutine or a start for ever.
const (
	// claimIOTimeout bounds a hello and the reply to a request.
	claimIOTimeout = 5 * time.Second
	// claimRequestTimeout bounds the wait for a connection's first request
	// after the hello (a refused start reads the hello and goes).
	claimRequestTimeout = 10 * time.Second
	// upgradeReadyTimeout bounds the new instance's wait for its own
	// readiness (its registry loaded) before it tells the old one to drain.
	upgradeReadyTimeout = 2 * time.Minute
	// claimTakeoverMargin is added to timeouts.drain for the old instance
	// to give up its claims: it does so as its drain starts.
	claimTakeoverMargin = 10 * time.Second
	// claimRetryInterval paces the new instance's attempts at the claims.
	claimRetryInterval = 50 * time.Millisecond
	// maxClaimLine caps a hello, request or reply line.
	maxClaimLine = 4096
	// soAcceptCon is __SO_ACCEPTCON in /proc/net/unix's Flags column: a
	// listening socket.
	soAcceptCon = 1 << 16
)

// instance is this process's claim on the fixed addresses it serves, and
// its side of an upgrade: the instances it replaces, or the upgrade that
// replaces it.
type instance struct {
	log          *slog.Logger
	hello        instanceHello
	drainTimeout time.Duration

	// owners are the instances an upgrade replaces, reserved for it; their
	// claims (pending) are taken once they drain. Set by claimInstance,
	// then used only by replaceOwners.
	owners  []*claimOwner
	pending []claimAddr

	drainReq  chan struct{} // closed when an upgrade asks this instance to drain
	drainOnce sync.Once
	failed    chan error    // the upgrade failed (buffered, one)
	stop      chan struct{} // closed by close
	stopOnce  sync.Once
	wg        sync.WaitGroup // accept loops, connections, replaceOwners

	mu          sync.Mutex
	held        []*net.UnixListener        // guarded by mu: the claims held
	conns       map[*net.UnixConn]struct{} // guarded by mu: accepted, open
	released    bool                       // guarded by mu: claims given up (draining)
	closed      bool                       // guarded by mu
	upgrader    *net.UnixConn              // guarded by mu: the upgrade under way, if any
	upgraderPID int                        // guarded by mu
}

// claimOwner is a live instance holding a claim this one needs, seen
// through a connection to that claim.
type claimOwner struct {
	hello instanceHello
	uid   int // -1 if the kernel did not say
	addrs []claimAddr
	conn  *net.UnixConn
	r     *bufio.Reader
}

// claimInstance claims cfg's fixed addresses before anything is loaded or
// bound. Without upgrade, an address a live icpgate (or anything else)
// holds refuses the start with an error naming the holder. With upgrade,
// each holder is reserved for this upgrade (or the start fails, holding
// nothing) and replaced by takeOver once this instance is ready.
func claimInstance(cfg *Config, upgrade bool, log *slog.Logger) (_ *instance, err error) {
	in := &instance{
		log: log.With("component", "instance"),
		hello: instanceHello{Protocol: helloProtocol, PID: os.Getpid(), Config: configName(cfg),
			Node: cfg.Node, Version: versionString(), Started: time.Now()},
		drainTimeout: cfg.Timeouts.Drain,
		drainReq:     make(chan struct{}),
		failed:       make(chan error, 1),
		stop:         make(chan struct{}),
		conns:        map[*net.UnixConn]struct{}{},
	}
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	addrs := instanceAddrs(cfg)
	mine := map[claimAddr]bool{}
	type conflict struct {
		ours  claimAddr
		other claimAddr // the claim held: ours, or one overlapping it
	}
	var conflicts []conflict
	for _, a := range addrs {
		ln, err := listenClaim(a)
		switch {
		case err == nil:
			in.held = append(in.held, ln)
			mine[a] = true
		case errors.Is(err, syscall.EADDRINUSE):
			conflicts = append(conflicts, conflict{a, a})
		default:
			// Fail open: the guard protects against an operator's slip,
			// and a system that forbids unix sockets must not stop the
			// gateway for it.
			in.log.Warn("cannot claim the address: nothing stops a second instance from serving it beside this one",
				"address", a.String(), "error", err.Error())
		}
	}
	// Claimed first, looked around second: of two overlapping instances
	// started at once, at least one sees the other.
	others, lerr := listedClaims()
	if lerr != nil {
		in.log.Warn("cannot list the claims of other instances: a second instance on the same port but another address (one on any address, one on 127.0.0.1) is not detected",
			"error", lerr.Error())
	}
	for _, b := range others {
		for _, a := range addrs {
			if !mine[b] && a.overlaps(b) {
				conflicts = append(conflicts, conflict{a, b})
			}
		}
	}

	var owners []*claimOwner
	var problems []string
	for _, c := range conflicts {
		o, uid, err := dialClaim(c.other.name())
		if err != nil {
			if uid >= 0 && uid != os.Getuid() {
				// Only a process of this user can share our sockets
				// (SO_REUSEPORT): another user's non-icpgate on the name
				// cannot take our traffic, so it is not worth refusing for.
				in.log.Warn("the claim's name is held by another user's process that is not an icpgate: the address goes unclaimed",
					"address", c.ours.String(), "socket", c.other.name(), "uid", uid)
				continue
			}
			problems = append(problems, fmt.Sprintf("%s is claimed (unix socket %s) by a process that is not an icpgate: %v; find it with: ss -xlp | grep icpgate/",
				c.ours, c.other.name(), err))
			continue
		}
		if prev := findOwner(owners, o.hello); prev != nil {
			o.conn.Close()
			o = prev
		} else {
			owners = append(owners, o)
		}
		if !containsAddr(o.addrs, c.ours) {
			o.addrs = append(o.addrs, c.ours)
		}
		if c.other == c.ours && !containsAddr(in.pending, c.ours) {
			in.pending = append(in.pending, c.ours)
		}
	}
	defer func() {
		if err != nil {
			for _, o := range owners {
				o.conn.Close() // abandons any reservation
			}
		}
	}()
	for _, o := range owners {
		who := o.hello.String()
		if o.uid >= 0 && o.uid != os.Getuid() {
			who += fmt.Sprintf(", uid %d", o.uid)
		}
		switch {
		case !upgrade:
			problems = append(problems, fmt.Sprintf("%s already served by a running icpgate (%s): %s",
				joinAddrs(o.addrs), who, refusalAdvice(cfg)))
		case o.uid >= 0 && o.uid != os.Getuid():
			problems = append(problems, fmt.Sprintf("%s served by icpgate (%s), which runs as another user: the kernel shares ports only between processes of one user; run the upgrade as uid %d",
				joinAddrs(o.addrs), who, o.uid))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	for _, o := range owners {
		reply, err := o.request(instanceRequest{Op: opUpgrade, PID: in.hello.PID, Config: in.hello.Config})
		if err != nil {
			return nil, fmt.Errorf("upgrade: asking icpgate pid %d to make way: %w", o.hello.PID, err)
		}
		if !reply.OK {
			return nil, fmt.Errorf("upgrade: icpgate pid %d refused: %s", o.hello.PID, reply.Error)
		}
		in.log.Info("upgrade: replacing the running instance once this one is ready",
			"pid", o.hello.PID, "config", o.hello.Config, "version", o.hello.Version, "addresses", joinAddrs(o.addrs))
	}
	if upgrade && len(owners) == 0 {
		in.log.Info("upgrade: no running icpgate serves these addresses; starting as the only instance")
	}
	if len(owners) > 0 {
		warnMigrateReq(in.log)
	}
	in.owners = owners
	in.mu.Lock()
	for _, ln := range in.held {
		in.wg.Add(1)
		go in.answerClaims(ln)
	}
	in.mu.Unlock()
	return in, nil
}

// warnMigrateReq warns when the kernel resets, rather than hands to this
// instance, the connections still queued on a replaced instance's
// listeners when it closes them (a few, if any, under load).
func warnMigrateReq(log *slog.Logger) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	switch {
	case err != nil:
		log.Warn("upgrade: this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+): connections queued on the replaced instance's listeners as it closes them are reset")
	case strings.TrimSpace(string(b)) == "0":
		log.Warn("upgrade: net.ipv4.tcp_migrate_req is 0: connections queued on the replaced instance's listeners as it closes them are reset; set it to 1 to have the kernel hand them to this instance")
	}
}

// findOwner returns the owner in owners with hello h's identity, or nil.
func findOwner(owners []*claimOwner, h instanceHello) *claimOwner {
	for _, o := range owners {
		if o.hello.PID == h.PID && o.hello.Started.Equal(h.Started) {
			return o
		}
	}
	return nil
}

func joinAddrs(as []claimAddr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// listenClaim binds the claim on a.
func listenClaim(a claimAddr) (*net.UnixListener, error) {
	// A leading @ is Linux's abstract namespace to the net package.
	return net.ListenUnix("unix", &net.UnixAddr{Name: a.name(), Net: "unix"})
}

// listedClaims returns the claims listening in this network namespace,
// from /proc/net/unix.
func listedClaims() ([]claimAddr, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []claimAddr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 {
			continue
		}
		flags, err := strconv.ParseUint(fs[3], 16, 32)
		if err != nil || flags&soAcceptCon == 0 {
			continue
		}
		if a, ok := parseClaimName(fs[7]); ok && !containsAddr(out, a) {
			out = append(out, a)
		}
	}
	return out, sc.Err()
}

// dialClaim connects to the claim named name and reads its holder's hello.
// uid is the holder's user as the kernel says (-1 if unknown), also on
// error.
func dialClaim(name string) (_ *claimOwner, uid int, _ error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, -1, err
	}
	uid, pid := -1, 0
	if cred, err := peerCred(c); err == nil {
		uid, pid = int(cred.Uid), int(cred.Pid)
	}
	o := &claimOwner{uid: uid, conn: c, r: bufio.NewReaderSize(c, maxClaimLine)}
	c.SetReadDeadline(time.Now().Add(claimIOTimeout))
	line, err := readLine(o.r)
	if err == nil {
		if jerr := json.Unmarshal(line, &o.hello); jerr != nil || o.hello.Protocol != helloProtocol {
			err = fmt.Errorf("it answered %q", truncate(string(line), 60))
		}
	}
	if err != nil {
		c.Close()
		return nil, uid, err
	}
	if pid > 0 {
		// The kernel's word, and in this process's PID namespace.
		o.hello.PID = pid
	}
	return o, uid, nil
}

// request sends req to the owner and reads its reply.
func (o *claimOwner) request(req instanceRequest) (instanceReply, error) {
	var reply instanceReply
	o.conn.SetDeadline(time.Now().Add(claimIOTimeout))
	if err := writeLine(o.conn, req); err != nil {
		return reply, err
	}
	line, err := readLine(o.r)
	if err != nil {
		return reply, err
	}
	if err := json.Unmarshal(line, &reply); err != nil {
		return reply, fmt.Errorf("reply %q: %w", truncate(string(line), 60), err)
	}
	return reply, nil
}

// answerClaims answers the connections to claim ln until it is closed.
func (in *instance) answerClaims(ln *net.UnixListener) {
	defer in.wg.Done()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			in.log.Debug("claim accept", "error", err.Error())
			select {
			case <-in.stop:
				return
			case <-time.After(100 * time.Millisecond): // out of descriptors, say
			}
			continue
		}
		in.mu.Lock()
		if in.closed {
			in.mu.Unlock()
			c.Close()
			return
		}
		in.conns[c] = struct{}{}
		in.wg.Add(1) // the count is above zero: this loop holds one
		in.mu.Unlock()
		go in.answerConn(c)
	}
}

// answerConn says hello on c and serves an upgrade's requests: reserve,
// then drain. A connection closed before the drain abandons the upgrade.
func (in *instance) answerConn(c *net.UnixConn) {
	defer in.wg.Done()
	defer in.forget(c)
	c.SetWriteDeadline(time.Now().Add(claimIOTimeout))
	if err := writeLine(c, in.hello); err != nil {
		return
	}
	r := bufio.NewReaderSize(c, maxClaimLine)
	c.SetReadDeadline(time.Now().Add(claimRequestTimeout))
	req, err := readRequest(r)
	if err != nil {
		return // a start asking who serves the address
	}
	if req.Op != opUpgrade {
		writeLine(c, instanceReply{Error: fmt.Sprintf("unexpected request %q", req.Op)})
		return
	}
	if err := in.reserve(c, req.PID); err != nil {
		in.log.Warn("upgrade refused", "new_pid", req.PID, "new_config", req.Config, "reason", err.Error())
		writeLine(c, instanceReply{Error: err.Error()})
		return
	}
	in.log.Info("upgrade: a new instance is starting beside this one; serving until it is ready",
		"new_pid", req.PID, "new_config", req.Config)
	c.SetWriteDeadline(time.Now().Add(claimIOTimeout))
	if err := writeLine(c, instanceReply{OK: true}); err != nil {
		return
	}
	// The new instance may take minutes to load its registry.
	c.SetReadDeadline(time.Time{})
	if req, err := readRequest(r); err != nil || req.Op != opDrain {
		in.log.Warn("upgrade abandoned by the new instance; serving on", "new_pid", in.upgraderPIDOf(c))
		return
	}
	in.log.Info("upgrade: the new instance is serving; draining", "new_pid", in.upgraderPIDOf(c))
	c.SetWriteDeadline(time.Now().Add(claimIOTimeout))
	writeLine(c, instanceReply{OK: true})
	in.drainOnce.Do(func() { close(in.drainReq) })
}

// reserve makes the upgrade on c the one under way, or says why not.
func (in *instance) reserve(c *net.UnixConn, pid int) error {
	cred, err := peerCred(c)
	if err != nil {
		return fmt.Errorf("cannot tell who asks: %w", err)
	}
	if int(cred.Uid) != os.Getuid() {
		// Anyone can connect to an abstract socket: only this user (who
		// can signal the process anyway) may have it drain.
		return fmt.Errorf("uid %d may not replace an instance of uid %d", cred.Uid, os.Getuid())
	}
	if cred.Pid > 0 {
		pid = int(cred.Pid)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.released:
		return errors.New("this instance is draining")
	case in.upgrader != nil:
		return fmt.Errorf("another upgrade (pid %d) is under way", in.upgraderPID)
	}
	in.upgrader, in.upgraderPID = c, pid
	return nil
}

func (in *instance) upgraderPIDOf(c *net.UnixConn) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.upgrader == c {
		return in.upgraderPID
	}
	return 0
}

// forget closes c and ends its reservation, if it held one.
func (in *instance) forget(c *net.UnixConn) {
	in.mu.Lock()
	delete(in.conns, c)
	if in.upgrader == c {
		in.upgrader, in.upgraderPID = nil, 0
	}
	in.mu.Unlock()
	c.Close()
}

// takeOver, in an upgrade, waits (in the background) until ready reports
// this instance ready, tells the replaced instances to drain and takes
// their claims as they let go. If this instance is not ready within
// upgradeReadyTimeout, upgradeFailed delivers the error: the old
// instances were never told and serve on.
func (in *instance) takeOver(ready func() (bool, string)) {
	if len(in.owners) == 0 {
		return
	}
	in.wg.Add(1)
	go in.replaceOwners(ready)
}

// replaceOwners is takeOver's goroutine.
func (in *instance) replaceOwners(ready func() (bool, string)) {
	defer in.wg.Done()
	if !in.waitReady(ready) {
		return
	}
	var pids []string
	for _, o := range in.owners {
		pids = append(pids, strconv.Itoa(o.hello.PID))
		reply, err := o.request(instanceRequest{Op: opDrain})
		o.conn.Close()
		switch {
		case err != nil:
			// It may have exited since the reservation (its claims are
			// then free); takeClaims finds out.
			in.log.Warn("upgrade: the replaced instance did not confirm its drain", "pid", o.hello.PID, "error", err.Error())
		case !reply.OK:
			in.log.Error("upgrade: the replaced instance refused to drain", "pid", o.hello.PID, "reason", reply.Error)
		default:
			in.log.Info("upgrade: the replaced instance is draining", "pid", o.hello.PID, "config", o.hello.Config)
		}
	}
	in.takeClaims(strings.Join(pids, ","))
}

// waitReady polls ready until it reports true (true), or upgradeReadyTimeout
// passes (false, upgradeFailed told) or close is called (false).
func (in *instance) waitReady(ready func() (bool, string)) bool {
	deadline := time.NewTimer(upgradeReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := ready()
		if ok {
			return true
		}
		select {
		case <-in.stop:
			return false
		case <-deadline.C:
			in.failed <- fmt.Errorf("not ready within %s (%s): the running instance was not told to drain and serves on", upgradeReadyTimeout, why)
			return false
		case <-tick.C:
		}
	}
}

// takeClaims binds the pending claims as the replaced instances release
// them (at the start of their drain), for up to timeouts.drain plus a
// margin.
func (in *instance) takeClaims(from string) {
	deadline := time.Now().Add(in.drainTimeout + claimTakeoverMargin)
	tick := time.NewTicker(claimRetryInterval)
	defer tick.Stop()
	pending := in.pending
	var lastErr error
	for {
		var still []claimAddr
		for _, a := range pending {
			ln, err := listenClaim(a)
			if err != nil {
				still, lastErr = append(still, a), err
				continue
			}
			if !in.hold(ln) {
				ln.Close()
				return // this instance is draining itself
			}
		}
		if pending = still; len(pending) == 0 {
			in.log.Info("upgrade complete: this instance holds every address", "replaced_pids", from)
			return
		}
		if time.Now().After(deadline) {
			in.log.Error("upgrade: the replaced instance did not release its addresses; a further instance could start beside this one",
				"addresses", joinAddrs(pending), "replaced_pids", from, "error", lastErr.Error())
			return
		}
		select {
		case <-in.stop:
			return
		case <-tick.C:
		}
	}
}

// hold adds ln to the claims held and answers on it; false when the
// claims were released meanwhile.
func (in *instance) hold(ln *net.UnixListener) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.released || in.closed {
		return false
	}
	in.held = append(in.held, ln)
	in.wg.Add(1)
	go in.answerClaims(ln)
	return true
}

// drainRequested is closed when an upgrade asks this instance to drain.
func (in *instance) drainRequested() <-chan struct{} { return in.drainReq }

// upgradeFailed delivers the error of an upgrade that could not finish.
func (in *instance) upgradeFailed() <-chan error { return in.failed }

// release gives up the claims, as the drain starts: from then on a new
// instance may start on the addresses.
func (in *instance) release() {
	in.mu.Lock()
	held := in.held
	in.held, in.released = nil, true
	in.mu.Unlock()
	for _, ln := range held {
		ln.Close()
	}
}

// close releases the claims, ends every connection and waits for the
// goroutines.
func (in *instance) close() {
	in.stopOnce.Do(func() { close(in.stop) })
	in.release()
	in.mu.Lock()
	in.closed = true
	for c := range in.conns {
		c.Close()
	}
	in.mu.Unlock()
	for _, o := range in.owners {
		o.conn.Close()
	}
	in.wg.Wait()
}

// peerCred returns the credentials of c's peer as the kernel recorded them.
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// readLine reads one line of at most maxClaimLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errors.New("line too long")
	}
	return line, err
}

func readRequest(r *bufio.Reader) (instanceRequest, error) {
	var req instanceRequest
	line, err := readLine(r)
	if err != nil {
		return req, err
	}
	return req, json.Unmarshal(line, &req)
}

// writeLine writes v as one JSON line.
func writeLine(c net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.Write(append(b, '\n'))
	return err
}

// truncate cuts s to n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
