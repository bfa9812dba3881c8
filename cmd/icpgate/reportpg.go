package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
	"github.com/icpgate/icpgate/admin/unfiled"
)

// mergedReport is the admin API's unfiled-site report in PostgreSQL mode:
// the sum of every gateway's report in the filing database (each pushes
// its own every report interval, so the sum lags by up to one). When the
// database does not answer it answers this gateway's own report, rows
// without a node count, and logs why: the report is a statistic, and one
// gateway's part of it beats an error.
type mergedReport struct {
	pg    *adminstore.Postgres
	local *unfiled.Report
	loc   *time.Location // CSV times
	log   *slog.Logger
}

var _ admin.Reporter = mergedReport{}

// mergedReportTimeout bounds a read of the merged report: admin.Reporter
// has no context.
const mergedReportTimeout = 10 * time.Second

// Top implements admin.Reporter.
func (m mergedReport) Top(n int, reason string) []admin.ReportRow {
	ctx, cancel := context.WithTimeout(context.Background(), mergedReportTimeout)
	defer cancel()
	rows, err := m.pg.UnfiledTop(ctx, n, reason)
	if err != nil {
		m.log.Warn("unfiled report of every gateway unavailable; answering this gateway's", "error", err)
		return m.local.Top(n, reason)
	}
	return rows
}

// WriteCSV implements admin.Reporter: the columns of unfiled.WriteRowsCSV
// (nodes last), or this gateway's report when the database does not
// answer.
func (m mergedReport) WriteCSV(w io.Writer, reason string) error {
	ctx, cancel := context.WithTimeout(context.Background(), mergedReportTimeout)
	defer cancel()
	rows, err := m.pg.UnfiledTop(ctx, 0, reason)
	if err != nil {
		m.log.Warn("unfiled report of every gateway unavailable; answering this gateway's", "error", err)
		return m.local.WriteCSV(w, reason)
	}
	return unfiled.WriteRowsCSV(w, rows, m.loc)
}
