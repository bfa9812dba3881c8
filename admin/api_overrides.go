package admin

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/icpgate/icpgate/registry"
)

// overrideList is the answer of GET /v1/overrides.
type overrideList struct {
	Overrides []OverrideJSON `json:"overrides"`
	Next      string         `json:"next"`
}

// writeOverride answers with one override and its ETag.
func writeOverride(w http.ResponseWriter, status int, o Override, now time.Time) {
	w.Header().Set("ETag", etag(o.Version))
	writeJSON(w, status, o.JSON(now))
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// parseLimit parses a limit query parameter: 1 to most, default def.
func parseLimit(name, v string, def, most int) (int, *apiError) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, invalid(name, "%s must be a number from 1 to %d, got %q", name, most, v).because("limit_bad", "max", strconv.Itoa(most))
	}
	return n, nil
}

// parseCursor parses a pagination cursor (an override or audit ID).
func parseCursor(name, v string) (int64, *apiError) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, invalid(name, "%s must be an ID from a previous page's next, got %q", name, v)
	}
	return n, nil
}

// validID reports whether id can name an override (a decimal number).
func validID(id string) bool {
	if id == "" || len(id) > 20 {
		return false
	}
	_, err := strconv.ParseUint(id, 10, 64)
	return err == nil
}

// listOverrides answers GET /v1/overrides.
func (s *Server) listOverrides(c *call) {
	if e := s.needBackend(); e != nil {
		writeError(c.w, e)
		return
	}
	q := c.r.URL.Query()
	if e := onlyParams(q, "action", "q", "active", "after", "limit"); e != nil {
		writeError(c.w, e)
		return
	}
	f := OverrideFilter{Now: c.now}
	switch a := q.Get("action"); a {
	case "":
	case "allow", "deny":
		f.Action, _ = parseAction(a)
	default:
		writeError(c.w, invalid("action", `action must be "allow" or "deny", got %q`, a))
		return
	}
	if text := q.Get("q"); text != "" {
		if len(text) > 253 {
			writeError(c.w, invalid("q", "q is longer than a host name can be"))
			return
		}
		// The hosts are stored normalised: "例子" finds xn--fsqu00a...
		f.Query = strings.ToLower(text)
		if n, kind, err := registry.Normalize(text); err == nil && kind == registry.HostName {
			f.Query = n
		}
	}
	switch a := q.Get("active"); a {
	case "":
	case "true", "false":
		v := a == "true"
		f.Active = &v
	default:
		writeError(c.w, invalid("active", "active must be true or false, got %q", a))
		return
	}
	limit, e := parsePage(q, "after", &f.After, &f.Limit)
	if e != nil {
		writeError(c.w, e)
		return
	}
	ovs, err := s.cfg.Backend.ListOverrides(c.r.Context(), f)
	if err != nil {
		writeError(c.w, s.storeError(err, "listing overrides"))
		return
	}
	out := overrideList{Overrides: make([]OverrideJSON, 0, min(len(ovs), limit))}
	for i, o := range ovs {
		if i == limit {
			out.Next = out.Overrides[limit-1].ID
			break
		}
		out.Overrides = append(out.Overrides, o.JSON(c.now))
	}
	writeJSON(c.w, http.StatusOK, out)
}

// getOverride answers GET /v1/overrides/{id}.
func (s *Server) getOverride(c *call) {
	if e := s.needBackend(); e != nil {
		writeError(c.w, e)
		return
	}
	if e := onlyParams(c.r.URL.Query()); e != nil {
		writeError(c.w, e)
		return
	}
	id := c.r.PathValue("id")
	if !validID(id) {
		writeError(c.w, notFound("no such override"))
		return
	}
	o, err := s.cfg.Backend.GetOverride(c.r.Context(), id)
	if err != nil {
		writeError(c.w, s.storeError(err, "reading an override"))
		return
	}
	writeOverride(c.w, http.StatusOK, o, c.now)
}

// createOverride answers POST /v1/overrides.
func (s *Server) createOverride(c *call) {
	if e := s.needBackend(); e != nil {
		c.reject(e)
		return
	}
	o, e := s.create(c, c.body)
	if e != nil {
		if e.Status == http.StatusForbidden {
			c.deny(e)
		} else {
			c.reject(e)
		}
		return
	}
	s.apply(c.r)
	c.w.Header().Set("Location", "/v1/overrides/"+o.ID)
	writeOverride(c.w, http.StatusCreated, o, c.now)
}

// create validates and stores one create body, setting the call's audit
// target. The success is audited by the backend in the same transaction;
// the caller audits a failure.
func (s *Server) create(c *call, body []byte) (Override, *apiError) {
	req, e := parseCreate(body)
	if e != nil {
		return Override{}, e
	}
	c.target = req.Host
	if a, e := parseAction(req.Action); e == nil && a == registry.ActionDeny && c.tok.Role < RoleAdmin {
		return Override{}, forbidden(RoleAdmin, c.tok.Role)
	}
	o, e := s.policy(c.now).validateCreate(req)
	c.normalized = o.Host
	if o.Host != "" {
		c.target = o.Host
	}
	if e != nil {
		return Override{}, e
	}
	o.Who, o.Created = c.tok.Name, c.now.UTC()
	detail := ""
	if req.Confirm && o.Action == registry.ActionAllow {
		if dom, err := registry.RegistrableDomain(o.Host); err == nil {
			if rec := s.reg.Snapshot().Lookup(dom); rec != nil &&
				(rec.State == registry.StateCancelled || rec.State == registry.StateFilingPending) {
				detail = "confirmed: allowing a " + rec.State.String() + " domain"
			}
		}
	}
	audit := c.entryWith(body, "ok", detail)
	audit.Target = "" // the backend names the new override's ID
	stored, err := s.cfg.Backend.CreateOverride(c.r.Context(), o, audit)
	if err != nil {
		return Override{}, s.storeError(err, "storing an override")
	}
	return stored, nil
}

// entryWith is the call's audit entry with body as its input.
func (c *call) entryWith(body []byte, outcome, detail string) AuditEntry {
	saved := c.body
	c.body = body
	defer func() { c.body = saved }()
	return c.entry(outcome, detail)
}

// bulkResult is one item of a bulk answer: the stored override or the
// error, as the single create would have answered.
type bulkResult struct {
	Override *OverrideJSON `json:"override,omitempty"`
	Error    *bulkError    `json:"error,omitempty"`
}

// bulkError is an error body with its status, inside a bulk answer.
type bulkError struct {
	Status int `json:"status"`
	*apiError
}

// bulkOverrides answers POST /v1/overrides/bulk: each item is created,
// validated and audited on its own; the answer lists each outcome in
// order. Apply runs once at the end.
func (s *Server) bulkOverrides(c *call) {
	if e := s.needBackend(); e != nil {
		c.reject(e)
		return
	}
	m, e := decodeObject(c.body, knownFields("overrides"))
	if e != nil {
		c.reject(e)
		return
	}
	var items []json.RawMessage
	raw, ok := m["overrides"]
	if !ok || len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		c.reject(invalid("overrides", "overrides must be an array of override objects"))
		return
	}
	if len(items) == 0 || len(items) > maxBulkItems {
		c.reject(invalid("overrides", "overrides must hold 1 to %d items, got %d", maxBulkItems, len(items)))
		return
	}
	out := struct {
		Results []bulkResult `json:"results"`
	}{make([]bulkResult, len(items))}
	stored := 0
	c.action = "override.create"
	defer func() { c.action = "" }()
	for i, item := range items {
		c.target, c.normalized = "", ""
		o, e := s.create(c, item)
		if e != nil {
			if e.Field != "" {
				e.Field = "overrides[" + strconv.Itoa(i) + "]." + e.Field
			}
			if e.Status != http.StatusServiceUnavailable {
				s.appendAudit(c.r, c.entryWith(item, "rejected", e.Message))
			}
			out.Results[i].Error = &bulkError{Status: e.Status, apiError: e}
			continue
		}
		stored++
		j := o.JSON(c.now)
		out.Results[i].Override = &j
	}
	if stored > 0 {
		s.apply(c.r)
	}
	writeJSON(c.w, http.StatusOK, out)
}

// storedForChange reads the override a PATCH or DELETE names, after
// checking If-Match, and checks the caller may change it (a deny needs
// admin).
func (s *Server) storedForChange(c *call) (Override, int64, *apiError) {
	id := c.r.PathValue("id")
	c.target = id
	if !validID(id) {
		return Override{}, 0, notFound("no such override")
	}
	h := c.r.Header.Get("If-Match")
	if h == "" {
		return Override{}, 0, &apiError{Status: http.StatusPreconditionRequired, Code: "if_match_required",
			Message: `If-Match is required: send the ETag of the override you read, e.g. If-Match: "3"`}
	}
	version, e := parseIfMatch(h)
	if e != nil {
		return Override{}, 0, e
	}
	o, err := s.cfg.Backend.GetOverride(c.r.Context(), id)
	if err != nil {
		return Override{}, 0, s.storeError(err, "reading an override")
	}
	c.normalized = o.Host
	if o.Action == registry.ActionDeny && c.tok.Role < RoleAdmin {
		return Override{}, 0, forbidden(RoleAdmin, c.tok.Role)
	}
	if o.Version != version {
		return Override{}, 0, &apiError{Status: http.StatusPreconditionFailed, Code: "conflict",
			Message: "If-Match " + etag(version) + " is not the current version " + etag(o.Version) + ": someone else changed it; read it again"}
	}
	return o, version, nil
}

// changeError answers a failed PATCH or DELETE: 403 is a denial, the rest
// rejections.
func (c *call) changeError(e *apiError) {
	if e.Status == http.StatusForbidden {
		c.deny(e)
		return
	}
	c.reject(e)
}

// updateOverride answers PATCH /v1/overrides/{id}.
func (s *Server) updateOverride(c *call) {
	if e := s.needBackend(); e != nil {
		c.reject(e)
		return
	}
	_, version, e := s.storedForChange(c)
	if e != nil {
		c.changeError(e)
		return
	}
	req, e := parseUpdate(c.body)
	if e != nil {
		c.reject(e)
		return
	}
	p := s.policy(c.now)
	o, err := s.cfg.Backend.UpdateOverride(c.r.Context(), c.target, version, func(o *registry.Override) error {
		if e := p.applyUpdate(o, req); e != nil {
			return e
		}
		return nil
	}, c.entry("ok", ""))
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			c.reject(ae)
			return
		}
		c.reject(s.storeError(err, "updating an override"))
		return
	}
	s.apply(c.r)
	writeOverride(c.w, http.StatusOK, o, c.now)
}

// deleteOverride answers DELETE /v1/overrides/{id} with the deleted override.
func (s *Server) deleteOverride(c *call) {
	if e := s.needBackend(); e != nil {
		c.reject(e)
		return
	}
	_, version, e := s.storedForChange(c)
	if e != nil {
		c.changeError(e)
		return
	}
	o, err := s.cfg.Backend.DeleteOverride(c.r.Context(), c.target, version, c.entry("ok", ""))
	if err != nil {
		c.reject(s.storeError(err, "deleting an override"))
		return
	}
	s.apply(c.r)
	writeOverride(c.w, http.StatusOK, o, c.now)
}

// auditList is the answer of GET /v1/audit.
type auditList struct {
	Entries []AuditEntry `json:"entries"`
	Next    string       `json:"next"`
}

// listAudit answers GET /v1/audit.
func (s *Server) listAudit(c *call) {
	if e := s.needBackend(); e != nil {
		writeError(c.w, e)
		return
	}
	q := c.r.URL.Query()
	if e := onlyParams(q, "who", "action", "target", "since", "until", "before", "limit"); e != nil {
		writeError(c.w, e)
		return
	}
	f := AuditFilter{Who: q.Get("who"), Action: q.Get("action"), Target: q.Get("target")}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(t.name)
		if v == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(c.w, invalid(t.name, "%s must be an RFC 3339 time such as 2026-11-27T00:00:00Z, got %q", t.name, v))
			return
		}
		*t.dst = at
	}
	limit, e := parsePage(q, "before", &f.Before, &f.Limit)
	if e != nil {
		writeError(c.w, e)
		return
	}
	entries, err := s.cfg.Backend.ListAudit(c.r.Context(), f)
	if err != nil {
		writeError(c.w, s.storeError(err, "reading the audit log"))
		return
	}
	out := auditList{Entries: entries}
	if len(entries) > limit {
		out.Entries = entries[:limit]
		out.Next = strconv.FormatInt(entries[limit-1].ID, 10)
	}
	if out.Entries == nil {
		out.Entries = []AuditEntry{}
	}
	writeJSON(c.w, http.StatusOK, out)
}

// reportUnfiled answers GET /v1/report/unfiled: JSON, or CSV with
// format=csv or Accept: text/csv; bom=1 starts the CSV with a UTF-8 byte
// order mark, without which Excel on Chinese Windows reads it as GBK.
func (s *Server) reportUnfiled(c *call) {
	if s.cfg.Report == nil {
		writeError(c.w, notFound("the unfiled-site report is not enabled on this gateway"))
		return
	}
	q := c.r.URL.Query()
	if e := onlyParams(q, "n", "reason", "format", "bom"); e != nil {
		writeError(c.w, e)
		return
	}
	n, e := parseLimit("n", q.Get("n"), 100, maxReportRows)
	if e != nil {
		writeError(c.w, e)
		return
	}
	reason := q.Get("reason")
	if reason != "" && !blockReason(reason) {
		writeError(c.w, invalid("reason", "reason %q is not a block reason", reason))
		return
	}
	csv := false
	switch f := q.Get("format"); f {
	case "csv":
		csv = true
	case "json":
	case "":
		csv = acceptsCSV(c.r.Header.Get("Accept"))
	default:
		writeError(c.w, invalid("format", `format must be "json" or "csv", got %q`, f))
		return
	}
	bom := false
	switch b := q.Get("bom"); b {
	case "1", "true":
		bom = true
	case "", "0", "false":
	default:
		writeError(c.w, invalid("bom", `bom must be "1" or "0", got %q`, b))
		return
	}
	if !csv {
		rows := s.cfg.Report.Top(n, reason)
		if rows == nil {
			rows = []ReportRow{}
		}
		writeJSON(c.w, http.StatusOK, struct {
			Rows []ReportRow `json:"rows"`
		}{rows})
		return
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="unfiled.csv"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if bom {
		io.WriteString(c.w, "\ufeff") // an error shows in WriteCSV's
	}
	if err := s.cfg.Report.WriteCSV(c.w, reason); err != nil {
		// The status is sent; a cut CSV is all the client can see.
		s.log.Warn("writing the unfiled report CSV", "error", err)
	}
}

// blockReason reports whether r is a reason code a block can have.
func blockReason(r string) bool {
	for _, x := range registry.Reasons() {
		if string(x) == r {
			switch x {
			case registry.ReasonFiled, registry.ReasonAccessPending, registry.ReasonRectifying,
				registry.ReasonOverrideAllow, registry.ReasonIPAccess:
				return false
			}
			return true
		}
	}
	return false
}

// acceptsCSV reports whether an Accept header asks for text/csv.
func acceptsCSV(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/csv" {
			return true
		}
	}
	return false
}

// parsePage reads a list's cursor (the query parameter named cursor) into
// *cur and its limit, which it returns; *fetch is set one higher: the extra
// row tells whether there is a next page.
func parsePage(q url.Values, cursor string, cur *int64, fetch *int) (int, *apiError) {
	c, e := parseCursor(cursor, q.Get(cursor))
	if e != nil {
		return 0, e
	}
	limit, e := parseLimit("limit", q.Get("limit"), 100, maxListLimit)
	if e != nil {
		return 0, e
	}
	*cur, *fetch = c, limit+1
	return limit, nil
}
