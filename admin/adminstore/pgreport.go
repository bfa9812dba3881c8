package adminstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/icpgate/icpgate/admin"
)

// The unfiled-site report of every gateway on the filing database
// (migration 4, icpgate_unfiled_report): each node pushes its own rows
// (unfiled.Report.RunPush calls PushUnfiled) and UnfiledTop adds them up.

// pushBatch is the rows one statement of PushUnfiled writes.
const pushBatch = 1000

// maxMergedDestinations bounds the destinations of a row, kept and
// answered: each node keeps a few (report.max_destinations).
const maxMergedDestinations = 16

// PushUnfiled writes node's report rows, absolute counts that replace the
// node's previous ones for the same domains: pushing the same rows again
// changes nothing. A row whose FirstSeen is later than the stored one is
// a new count of the domain on that node (it was pushed out of the
// node's report and came back, or the node restarted without
// report.file), added to what the row held. Rows go in batches of
// pushBatch, one transaction.
func (p *Postgres) PushUnfiled(ctx context.Context, node string, rows []admin.ReportRow) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for len(rows) > 0 {
			b := rows[:min(len(rows), pushBatch)]
			rows = rows[len(b):]
			n := len(b)
			domains, reasons, dests := make([]string, n), make([]string, n), make([]string, n)
			hits, errs := make([]int64, n), make([]int64, n)
			first, last := make([]time.Time, n), make([]time.Time, n)
			for i, r := range b {
				domains[i], reasons[i] = r.Domain, r.Reason
				hits[i], errs[i] = int64(min(r.Hits, 1<<63-1)), int64(min(r.HitsError, 1<<63-1))
				first[i], last[i] = r.FirstSeen, r.LastSeen
				d := r.Destinations
				if d == nil {
					d = []string{}
				}
				js, _ := json.Marshal(d[:min(len(d), maxMergedDestinations)])
				dests[i] = string(js)
			}
			// SET reads the stored row (u) as it was before the statement.
			_, err := tx.Exec(ctx, `INSERT INTO icpgate_unfiled_report AS u
				(node, domain, reason, hits, hits_error, entered, first_seen, last_seen, destinations)
				SELECT $1, x.domain, x.reason, x.hits, x.hits_error, x.first, x.first, x.last, x.dests::jsonb
				FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::text[])
					AS x(domain, reason, hits, hits_error, first, last, dests)
				ON CONFLICT (node, domain) DO UPDATE SET
					reason = excluded.reason,
					base_hits = CASE WHEN excluded.entered > u.entered THEN u.hits ELSE u.base_hits END,
					base_error = CASE WHEN excluded.entered > u.entered THEN u.hits_error ELSE u.base_error END,
					hits = CASE WHEN excluded.entered > u.entered THEN u.hits ELSE u.base_hits END + excluded.hits,
					hits_error = CASE WHEN excluded.entered > u.entered THEN u.hits_error ELSE u.base_error END + excluded.hits_error,
					entered = greatest(u.entered, excluded.entered),
					first_seen = least(u.first_seen, excluded.first_seen),
					last_seen = greatest(u.last_seen, excluded.last_seen),
					destinations = CASE WHEN excluded.entered > u.entered THEN
						(SELECT coalesce(jsonb_agg(d ORDER BY i), '[]') FROM (
							SELECT d, min(i) AS i FROM jsonb_array_elements(u.destinations || excluded.destinations)
								WITH ORDINALITY AS t(d, i) GROUP BY d ORDER BY min(i) LIMIT $9) s)
						ELSE excluded.destinations END,
					updated_at = now()
				WHERE excluded.entered >= u.entered`,
				node, domains, reasons, hits, errs, first, last, dests, maxMergedDestinations)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return p.fail("pushing the unfiled report", err)
	}
	return nil
}

// UnfiledTop returns up to n rows (every one when n <= 0) of the report
// of every node, hits descending then domain: per domain the hits and
// errors added up, the first first_seen, the last last_seen, the reason
// last seen, the destinations of every node (at most
// maxMergedDestinations, in order) and how many nodes counted it. With
// reason, only domains whose last reason it is.
func (p *Postgres) UnfiledTop(ctx context.Context, n int, reason string) ([]admin.ReportRow, error) {
	var limit *int
	if n > 0 {
		limit = &n
	}
	rows, err := p.pool.Query(ctx, `SELECT domain, (array_agg(reason ORDER BY last_seen DESC, node))[1],
			sum(hits)::bigint AS total, sum(hits_error)::bigint, min(first_seen), max(last_seen), count(*)::int,
			(SELECT coalesce(array_agg(d ORDER BY d), '{}') FROM (
				SELECT DISTINCT d FROM icpgate_unfiled_report o, jsonb_array_elements_text(o.destinations) AS d
				WHERE o.domain = u.domain ORDER BY d LIMIT $3) s)
		FROM icpgate_unfiled_report u
		GROUP BY domain
		HAVING $1 = '' OR (array_agg(reason ORDER BY last_seen DESC, node))[1] = $1
		ORDER BY total DESC, domain
		LIMIT $2`, reason, limit, maxMergedDestinations)
	if err != nil {
		return nil, p.fail("reading the unfiled report", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (admin.ReportRow, error) {
		var r admin.ReportRow
		var hits, errs int64
		err := row.Scan(&r.Domain, &r.Reason, &hits, &errs, &r.FirstSeen, &r.LastSeen, &r.Nodes, &r.Destinations)
		r.Hits, r.HitsError = uint64(hits), uint64(errs)
		r.FirstSeen, r.LastSeen = r.FirstSeen.UTC(), r.LastSeen.UTC()
		return r, err
	})
	if err != nil {
		return nil, p.fail("reading the unfiled report", err)
	}
	return out, nil
}
