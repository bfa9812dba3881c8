package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/icpgate/icpgate/registry"
)

// Search limits of GET /v1/records (docs/admin-api.md).
const (
	// searchBudget bounds one search's scan of the registry. A linear
	// scan reads 4 million (subject) to 14 million (filing number)
	// records a second on one core (registry BenchmarkSearch*), so 10
	// million fit; past the budget the answer says it is incomplete
	// rather than keep a core.
	searchBudget = 5 * time.Second
	// maxSearches is how many scans run at once; more wait (within their
	// budget), so a burst of look-ups cannot take every core from the data
	// plane.
	maxSearches = 2
	// defaultSearchLimit and maxSearchLimit bound the records returned.
	defaultSearchLimit = 100
	maxSearchLimit     = 100
)

// SearchAnswer is the body of GET /v1/records.
type SearchAnswer struct {
	// FilingNumber is the filing number searched for, normalised
	// (half-width, upper case, no label); "" when searching by subject.
	FilingNumber string `json:"filing_number,omitempty"`
	// Subject is the subject text searched for, as given.
	Subject string `json:"subject,omitempty"`
	// Records match, by domain, each with the gateway's decision now.
	Records []FoundRecord `json:"records"`
	// More is set when more records match than were returned.
	More bool `json:"more"`
	// Incomplete is set when the search ran out of time before it read
	// the whole registry: there may be matches it did not see.
	Incomplete bool `json:"incomplete"`
	// Scanned is how many records were read.
	Scanned int `json:"scanned"`
}

// FoundRecord is a registry record in a SearchAnswer, with the verdict
// and reason the gateway gives its domain now (overrides included).
type FoundRecord struct {
	RecordInfo
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

// searchRecords answers GET /v1/records?filing_number=N or ?subject=S.
func (s *Server) searchRecords(c *call) {
	q := c.r.URL.Query()
	if e := onlyParams(q, "filing_number", "subject", "limit"); e != nil {
		writeError(c.w, e)
		return
	}
	limit, e := parseLimit("limit", q.Get("limit"), defaultSearchLimit, maxSearchLimit)
	if e != nil {
		writeError(c.w, e)
		return
	}
	query := registry.Query{FilingNumber: q.Get("filing_number"), Subject: q.Get("subject"), Limit: limit}
	if query.FilingNumber == "" && query.Subject == "" {
		writeError(c.w, invalid("", "give filing_number or subject").because("search_empty"))
		return
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), searchBudget)
	defer cancel()
	select {
	case s.searches <- struct{}{}:
		defer func() { <-s.searches }()
	case <-ctx.Done():
		writeError(c.w, rateLimited("searches at once", time.Second))
		return
	}
	res, err := s.reg.Snapshot().Search(ctx, query)
	switch {
	case errors.Is(err, registry.ErrInvalidFilingNumber):
		writeError(c.w, invalid("filing_number", "filing_number: %v (the form is 京ICP备10206937号, or 京ICP备10206937号-1 for one website)", err).
			because("filing_number"))
		return
	case errors.Is(err, registry.ErrEmptyQuery):
		writeError(c.w, invalid("subject", "subject: give at least %d characters", registry.MinSubjectQuery).
			because("subject_short", "min", strconv.Itoa(registry.MinSubjectQuery)))
		return
	case err != nil:
		writeError(c.w, invalid("", "%v", err))
		return
	}
	ans := SearchAnswer{Subject: query.Subject, Records: make([]FoundRecord, 0, len(res.Records)),
		More: res.More, Incomplete: res.Incomplete, Scanned: res.Scanned}
	if query.FilingNumber != "" {
		ans.FilingNumber = registry.NormalizeFilingNumber(query.FilingNumber)
	}
	for i := range res.Records {
		r := &res.Records[i]
		d := s.reg.Decide(r.Domain)
		ans.Records = append(ans.Records, FoundRecord{RecordInfo: *recordInfo(r), Verdict: d.Verdict.String(), Reason: string(d.Reason)})
	}
	if res.Incomplete {
		s.log.Warn("record search ran out of time", "scanned", res.Scanned, "records", s.reg.Snapshot().Len(), "budget_seconds", searchBudget.Seconds())
	}
	writeJSON(c.w, http.StatusOK, ans)
}
