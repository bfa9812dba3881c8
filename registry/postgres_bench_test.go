package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/pgtest"
	"github.com/icpgate/icpgate/registry"
)

// benchRecords is the registry size of the PostgreSQL benchmarks; the 10M
// figures come from bench/scale.sh.
const benchRecords = 100000

func benchDB(b *testing.B) *filingDB {
	b.Helper()
	db := newFilingDB(b, pgtest.Shared(b))
	db.exec(b, `INSERT INTO icpgate_records (domain, state, filing_number, subject, subject_type, province)
		SELECT 'd' || i || '.cn', 'filed', '京ICP备10206937号-1', '某某科技有限公司', 'enterprise', '京'
		FROM generate_series(1, $1::int) AS i`, benchRecords)
	return db
}

// BenchmarkPostgresFullLoad streams benchRecords rows into a snapshot;
// ns/record is the figure that scales to 10M.
func BenchmarkPostgresFullLoad(b *testing.B) {
	db := benchDB(b)
	b.ReportAllocs()
	for b.Loop() {
		reg := registry.New(registry.Options{})
		src, err := registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: db.dsn})
		if err != nil {
			b.Fatal(err)
		}
		if err := src.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
		if reg.Snapshot().Len() != benchRecords+20 { // + the seed's
			b.Fatalf("records: got %d, want %d", reg.Snapshot().Len(), benchRecords)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchRecords, "ns/record")
}

// BenchmarkPostgresIncremental: a running source follows batches of 1000
// updated records in a benchRecords registry, end to end (UPDATE, commit,
// NOTIFY, read, apply, swap).
func BenchmarkPostgresIncremental(b *testing.B) {
	db := benchDB(b)
	reg := registry.New(registry.Options{})
	src, err := registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: db.dsn})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for !reg.Loaded() {
		time.Sleep(time.Millisecond)
	}
	states := []string{"no_access", "filed"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		db.exec(b, "UPDATE icpgate_records SET state = $1 WHERE domain IN (SELECT 'd' || g || '.cn' FROM generate_series($2::int, $2::int + 999) g)",
			states[i%2], 1+(i*1000)%(benchRecords-1000))
		i++
		var head int64
		if err := db.conn.QueryRow(ctx, "SELECT last FROM icpgate_change_seq").Scan(&head); err != nil {
			b.Fatal(err)
		}
		for src.Stats().Cursor < head {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/change")
}
