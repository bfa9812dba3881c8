// Command scale measures the PostgreSQL-backed registry at scale (issue 4):
// full-load time, RSS after load, decision latency, incremental apply rate
// and change propagation across two gateway processes. It is run by
// bench/scale.sh, which starts a private PostgreSQL; it is not a unit test.
//
// The parent migrates the database, generates N records, starts two
// follower processes (itself with -follow) and then makes changes:
//
//   - a bulk update of -bulk records in one transaction: apply rate is
//     records / (time until a follower's cursor reaches the new head);
//   - -probes single-record updates, one at a time: propagation is the time
//     from COMMIT returning to the follower seeing the new state in
//     Registry.Decide, from both followers (p50, p99, max).
//
// Followers report on stdout, one line per event, with wall-clock Unix
// nanoseconds (both processes are on this machine, so clocks agree).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/registry"
	"github.com/icpgate/icpgate/registry/pgschema"
)

func main() {
	dsn := flag.String("dsn", "", "filing database (libpq URL)")
	n := flag.Int("n", 10_000_000, "records to generate")
	bulk := flag.Int("bulk", 100_000, "records in the bulk update")
	probes := flag.Int("probes", 200, "single-record changes for the propagation figures")
	follow := flag.Bool("follow", false, "run as a follower (internal)")
	flag.Parse()
	if *dsn == "" {
		fmt.Fprintln(os.Stderr, "scale: -dsn required")
		os.Exit(2)
	}
	var err error
	if *follow {
		err = follower(*dsn, *probes)
	} else {
		err = parent(*dsn, *n, *bulk, *probes)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// follower is one gateway's registry: load, report, then follow.
func follower(dsn string, probes int) error {
	reg := registry.New(registry.Options{})
	src, err := registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: dsn,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	start := time.Now()
	go src.Run(context.Background())
	for !reg.Loaded() {
		time.Sleep(time.Millisecond)
	}
	load := time.Since(start)
	runtime.GC()
	debug.FreeOSMemory()
	snap := reg.Snapshot()
	say("loaded %d %d %d", snap.Len(), load.Nanoseconds(), rssBytes())

	// Decision latency at this size: uncached (a cache of one entry per
	// host would hide the snapshot), then cached.
	hosts := make([]string, 100000)
	for i := range hosts {
		hosts[i] = "www.d" + strconv.Itoa(1+rand.IntN(snap.Len())) + ".cn"
	}
	nc := registry.New(registry.Options{CacheSize: -1})
	nc.Swap(snap)
	t0 := time.Now()
	for _, h := range hosts {
		nc.Decide(h)
	}
	uncached := time.Since(t0) / time.Duration(len(hosts))
	for _, h := range hosts[:1000] {
		reg.Decide(h)
	}
	t0 = time.Now()
	const rounds = 1000
	for range rounds {
		for _, h := range hosts[:1000] {
			reg.Decide(h)
		}
	}
	cached := time.Since(t0) / (rounds * 1000)
	say("decide %d %d", uncached.Nanoseconds(), cached.Nanoseconds())

	// Cursor changes, for the apply rate.
	go func() {
		last := int64(-1)
		for {
			if c := src.Stats().Cursor; c != last {
				last = c
				say("cursor %d %d", c, time.Now().UnixNano())
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	// Probes: probe i flips to no_access; report when visible.
	for i := range probes {
		host := "probe" + strconv.Itoa(i) + ".cn"
		for reg.Decide(host).Reason != registry.ReasonNoAccess {
			time.Sleep(50 * time.Microsecond)
		}
		say("seen %d %d", i, time.Now().UnixNano())
	}
	say("done")
	select {} // the parent kills us
}

type followerProc struct {
	cmd   *exec.Cmd
	lines chan []string
}

func startFollower(dsn string, probes int) (*followerProc, error) {
	cmd := exec.Command(os.Args[0], "-follow", "-dsn", dsn, "-probes", strconv.Itoa(probes))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &followerProc{cmd: cmd, lines: make(chan []string, 1<<16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.lines <- strings.Fields(sc.Text())
		}
		close(f.lines)
	}()
	return f, nil
}

// next returns the next line whose first field is kind.
func (f *followerProc) next(kind string, timeout time.Duration) ([]string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-f.lines:
			if !ok {
				return nil, io.ErrUnexpectedEOF
			}
			if len(l) > 0 && l[0] == kind {
				return l, nil
			}
		case <-deadline:
			return nil, fmt.Errorf("no %q line in %s", kind, timeout)
		}
	}
}

func atoi(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }

func parent(dsn string, n, bulk, probes int) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := pgschema.Migrate(ctx, conn); err != nil {
		return err
	}
	var have int
	conn.QueryRow(ctx, "SELECT count(*) FROM icpgate_records WHERE domain LIKE 'd%'").Scan(&have)
	if have != n {
		t0 := time.Now()
		// A fixture, not a change stream: the triggers are off while it is
		// written, then the sequence is bumped once so followers load in full.
		_, err = conn.Exec(ctx, `BEGIN;
			ALTER TABLE icpgate_records DISABLE TRIGGER USER;
			DELETE FROM icpgate_records;
			INSERT INTO icpgate_records (domain, state, filing_number, subject, subject_type, province)
				SELECT 'd' || i || '.cn', 'filed', '京ICP备10206937号-1', '某某科技有限公司', 'enterprise', '京'
				FROM generate_series(1, `+strconv.Itoa(n)+`) AS i;
			INSERT INTO icpgate_records (domain, state, filing_number)
				SELECT 'probe' || i || '.cn', 'filed', '京ICP备10206937号-1' FROM generate_series(0, `+strconv.Itoa(probes-1)+`) AS i;
			ALTER TABLE icpgate_records ENABLE TRIGGER USER;
			UPDATE icpgate_change_seq SET last = last + 1000000;
			COMMIT`)
		if err != nil {
			return fmt.Errorf("generating: %w", err)
		}
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE icpgate_records"); err != nil {
			return fmt.Errorf("vacuum: %w", err)
		}
		fmt.Printf("generated %d records in %.1f s\n", n, time.Since(t0).Seconds())
	} else {
		if _, err := conn.Exec(ctx, "UPDATE icpgate_records SET state = 'filed' WHERE domain LIKE 'probe%' AND state <> 'filed'"); err != nil {
			return err
		}
	}

	var fs []*followerProc
	for range 2 {
		f, err := startFollower(dsn, probes)
		if err != nil {
			return err
		}
		defer f.cmd.Process.Kill()
		fs = append(fs, f)
	}
	for i, f := range fs {
		l, err := f.next("loaded", 10*time.Minute)
		if err != nil {
			return fmt.Errorf("follower %d: %w", i, err)
		}
		fmt.Printf("follower %d: full load of %s records in %.1f s, RSS after load %.0f MiB\n",
			i, l[1], float64(atoi(l[2]))/1e9, float64(atoi(l[3]))/(1<<20))
	}
	for i, f := range fs {
		l, err := f.next("decide", time.Minute)
		if err != nil {
			return fmt.Errorf("follower %d: %w", i, err)
		}
		fmt.Printf("follower %d: decision uncached %s ns, cached %s ns\n", i, l[1], l[2])
	}

	// Bulk update: apply rate.
	var head int64
	t0 := time.Now()
	err = conn.QueryRow(ctx, `WITH u AS (UPDATE icpgate_records SET subject = 'bulk ' || now()
		WHERE domain IN (SELECT 'd' || i || '.cn' FROM generate_series(1, $1::int) i) RETURNING 1)
		SELECT (SELECT count(*) FROM u)`, bulk).Scan(new(int64))
	if err != nil {
		return fmt.Errorf("bulk update: %w", err)
	}
	committed := time.Now()
	conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&head)
	fmt.Printf("bulk update of %d records: %.2f s in the database\n", bulk, committed.Sub(t0).Seconds())
	for i, f := range fs {
		for {
			l, err := f.next("cursor", 5*time.Minute)
			if err != nil {
				return fmt.Errorf("follower %d: %w", i, err)
			}
			if atoi(l[1]) >= head {
				d := time.Unix(0, atoi(l[2])).Sub(committed)
				fmt.Printf("follower %d: applied %d changes %.2f s after commit (%.0f changes/s)\n",
					i, bulk, d.Seconds(), float64(bulk)/d.Seconds())
				break
			}
		}
	}

	// Probes: propagation.
	var lat []time.Duration
	for i := range probes {
		if _, err := conn.Exec(ctx, "UPDATE icpgate_records SET state = 'no_access' WHERE domain = $1", "probe"+strconv.Itoa(i)+".cn"); err != nil {
			return err
		}
		committed := time.Now()
		for j, f := range fs {
			l, err := f.next("seen", time.Minute)
			if err != nil {
				return fmt.Errorf("follower %d probe %d: %w", j, i, err)
			}
			lat = append(lat, time.Unix(0, atoi(l[2])).Sub(committed))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("propagation over %d changes x 2 followers: p50 %s, p99 %s, max %s\n",
		probes, q(0.50).Round(time.Microsecond), q(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	return nil
}
