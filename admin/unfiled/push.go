package unfiled

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/icpgate/icpgate/admin"
)

// In PostgreSQL mode every gateway pushes its report to the filing
// database and the admin API answers the sum (adminstore.Postgres). A
// push writes each row's absolute counts, so a retried push does not
// count twice.

// Pusher stores a node's report rows where every gateway reads them
// (adminstore.Postgres in PostgreSQL mode).
type Pusher interface {
	PushUnfiled(ctx context.Context, node string, rows []admin.ReportRow) error
}

// MaxPushRows bounds the rows one push writes: the most hit of those that
// changed. Under a flood of random names most rows change between pushes;
// the rest wait until they change again.
const MaxPushRows = 10000

// pushMargin is how far before the previous push a row's last block may
// be and still be pushed again: a block reads the clock before it takes
// the report's lock, so it can land just after a push took its rows with
// a time just before. Rewriting a row is harmless (absolute counts).
const pushMargin = time.Second

// Since returns up to max rows (every one when max <= 0) whose last block
// is at or after since, hits descending.
func (r *Report) Since(since time.Time, max int) []admin.ReportRow {
	rs, _ := r.rows("", false)
	cut := since.UnixNano()
	var out []admin.ReportRow
	for _, x := range rs {
		if max > 0 && len(out) == max {
			break
		}
		if x.last >= cut {
			out = append(out, x.reportRow())
		}
	}
	return out
}

// RunPush pushes the rows that changed to p as node every SaveInterval,
// and once more when ctx is done (given at most 10 s: a database that is
// down must not hold up the exit for long), then returns. The first push
// writes every row (a restarted node's loaded report). A failed push is
// logged and retried with the same rows and the new ones at the next
// interval.
func (r *Report) RunPush(ctx context.Context, p Pusher, node string) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	var since time.Time
	push := func(ctx context.Context) {
		now := r.now()
		rows := r.Since(since, MaxPushRows)
		if len(rows) == 0 {
			since = now.Add(-pushMargin)
			return
		}
		if err := p.PushUnfiled(ctx, node, rows); err != nil {
			r.log.Error("unfiled report not pushed to the filing database", "rows", len(rows), "error", err)
			return
		}
		since = now.Add(-pushMargin)
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			push(fctx)
			cancel()
			return
		case <-t.C:
			push(ctx)
		}
	}
}

// WriteRowsCSV writes rows as WriteCSV does, with a last column "nodes"
// (how many gateways counted the domain): the report of every gateway,
// summed (adminstore.Postgres). Times are in loc (nil: UTC).
func WriteRowsCSV(w io.Writer, rows []admin.ReportRow, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	var rec [8]string
	return writeCSV(w, append(CSVHeader[:len(CSVHeader):len(CSVHeader)], "nodes"), len(rows), func(i int) []string {
		x := &rows[i]
		rec = [8]string{
			csvSafe(x.Domain),
			csvSafe(x.Reason),
			strconv.FormatUint(x.Hits, 10),
			strconv.FormatUint(x.HitsError, 10),
			x.FirstSeen.In(loc).Format(time.RFC3339),
			x.LastSeen.In(loc).Format(time.RFC3339),
			csvSafe(strings.Join(x.Destinations, " ")),
			strconv.Itoa(x.Nodes),
		}
		return rec[:]
	})
}
