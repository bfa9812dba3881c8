package admin

// GET /v1/requests/{id}[?host=H]: what the request ID a visitor brings
// from a block page says.
//
// The gateway keeps no record of blocks (a flood of them would make
// billions of rows a week); a blocked request's ID carries its time, a tag
// of the node, the reason and a tag of the host (package
// internal/blockid), whatever the block rate and for as long as the
// visitor keeps it. Tags are read by hashing what support has and
// comparing: this gateway's node name; the host the visitor names
// (?host=), which is then verified, or else the unfiled report's domains
// blocked around that time, which become candidates.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/icpgate/icpgate/internal/blockid"
)

// RequestAnswer is the answer of GET /v1/requests/{id}.
type RequestAnswer struct {
	// ID is the ID in its canonical form (upper case, hyphenated), or as
	// given when Legacy.
	ID string `json:"id"`
	// Legacy is true for a 16-hex ID: every request's before block IDs
	// described themselves, and still a passing request's or a gateway
	// error's. It carries no details; only Summary is set.
	Legacy bool `json:"legacy,omitempty"`
	// Time is when the block was decided, to the second, in the
	// console's time zone (policy.time_zone) with its offset.
	Time *time.Time `json:"time,omitempty"`
	// Node is the gateway that blocked.
	Node *RequestNode `json:"node,omitempty"`
	// Reason is why it was blocked.
	Reason *RequestReason `json:"reason,omitempty"`
	// Host is which host it was for, as far as can be told.
	Host *RequestHost `json:"host,omitempty"`
	// Summary says all of it in English, a sentence a line.
	Summary []string `json:"summary"`
}

// RequestNode is the node of a request ID.
type RequestNode struct {
	// Tag is the node tag (4 hex digits).
	Tag string `json:"tag"`
	// Name is the node's name when the tag is this gateway's; "" when
	// it is another node's (no table of the fleet's names exists to match
	// it against).
	Name string `json:"name,omitempty"`
	// ThisNode reports whether the tag is this gateway's node name's.
	ThisNode bool `json:"this_node"`
}

// RequestReason is the reason of a request ID.
type RequestReason struct {
	// Code is the reason code (unfiled, no_access, ...); "" when the tag
	// names none this version knows.
	Code string `json:"code,omitempty"`
	// Tag is the reason tag.
	Tag int `json:"tag"`
	// Meaning explains Code in plain English: the console's text.
	Meaning string `json:"meaning,omitempty"`
}

// Host statuses of a request ID (RequestHost.Status).
const (
	// HostVerified: the host given (or its www twin) is the ID's host.
	HostVerified = "verified"
	// HostSameDomain: the ID is for another name under the given host's
	// registrable domain.
	HostSameDomain = "same_domain"
	// HostMismatch: the ID was not issued for the given host.
	HostMismatch = "mismatch"
	// HostCandidates: no host given; Candidates lists the unfiled
	// report's domains that fit.
	HostCandidates = "candidates"
	// HostUnknown: no host given and nothing in the report fits.
	HostUnknown = "unknown"
)

// RequestHost is what can be told of a request ID's host.
type RequestHost struct {
	// Tag is the host tag (6 hex digits: 4 of the domain, 2 of the host).
	Tag string `json:"tag"`
	// Status is verified, same_domain, mismatch, candidates or unknown.
	Status string `json:"status"`
	// Given is the ?host= parameter as given.
	Given string `json:"given,omitempty"`
	// Host is the verified host (normalised) when Status is verified.
	Host string `json:"host,omitempty"`
	// Domain is the registrable domain the ID is for, when known
	// (verified or same_domain).
	Domain string `json:"domain,omitempty"`
	// Candidates are the unfiled report's domains whose tag matches and
	// which were blocked around the ID's time, most hits first.
	Candidates []RequestCandidate `json:"candidates,omitempty"`
}

// RequestCandidate is an unfiled report row that may be a request ID's
// domain.
type RequestCandidate struct {
	Domain string `json:"domain"`
	// Host is the host within Domain whose tag matches too: Domain itself
	// or www.Domain; "" for another name under it.
	Host      string    `json:"host,omitempty"`
	Reason    string    `json:"reason"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Hits      uint64    `json:"hits"`
}

// maxCandidates caps RequestHost.Candidates. A 16-bit domain tag over at
// most maxReportRows rows whose time range covers the ID's leaves a
// handful at most.
const maxCandidates = 20

// candidateSlack widens a report row's time range when matching an ID's
// time: the ID's is cut to the second and taken before the report's, and
// in PostgreSQL mode rows may come from other nodes' clocks.
const candidateSlack = 5 * time.Second

// explainRequest answers GET /v1/requests/{id}[?host=H].
func (s *Server) explainRequest(c *call) {
	q := c.r.URL.Query()
	if e := onlyParams(q, "host"); e != nil {
		writeError(c.w, e)
		return
	}
	raw := strings.TrimSpace(c.r.PathValue("id"))
	id, err := blockid.Parse(raw)
	var se *blockid.SyntaxError
	switch {
	case errors.Is(err, blockid.ErrLegacy):
		writeJSON(c.w, http.StatusOK, RequestAnswer{ID: raw, Legacy: true, Summary: []string{
			"This ID is in the old 16-hex form: issued before this version for a block, or for a request that passed or met a gateway error (502, 504); it carries no details.",
			"Ask the visitor which address they opened and when, and explain that address.",
		}})
		return
	case errors.As(err, &se):
		e := invalid("id", "%s", se.Error())
		switch se.Err {
		case blockid.ErrLength:
			e.because("id_length", "got", strconv.Itoa(se.Len), "want", strconv.Itoa(blockid.Chars))
		case blockid.ErrChar:
			e.because("id_char", "char", string(se.Char), "position", strconv.Itoa(se.Pos))
		case blockid.ErrCheck:
			e.because("id_check")
		}
		writeError(c.w, e)
		return
	case err != nil:
		writeError(c.w, invalid("id", "%v", err))
		return
	}
	writeJSON(c.w, http.StatusOK, s.answerRequest(id, q.Get("host"), c.now))
}

// answerRequest reads id, verifying host when given.
func (s *Server) answerRequest(id blockid.ID, host string, now time.Time) RequestAnswer {
	loc := s.location()
	t := id.Time().In(loc)
	a := RequestAnswer{ID: id.String(), Time: &t}
	say := func(format string, args ...any) { a.Summary = append(a.Summary, fmt.Sprintf(format, args...)) }

	say("Blocked at %s.", t.Format("2006-01-02 15:04:05 -07:00"))
	if t.After(now.Add(time.Hour)) {
		say("That is in the future: the ID is probably mistyped (the check character catches one typo, not every pair).")
	}

	a.Node = &RequestNode{Tag: fmt.Sprintf("%04X", id.Node)}
	if s.cfg.Node != "" && blockid.NodeTag(s.cfg.Node) == id.Node {
		a.Node.Name, a.Node.ThisNode = s.cfg.Node, true
		say("By this gateway, node %s.", s.cfg.Node)
	} else {
		say("By node tag %s, not this node (%s): ask the other gateways (icpgate explain --request-id with their --admin).", a.Node.Tag, cmp.Or(s.cfg.Node, "unnamed"))
	}

	a.Reason = &RequestReason{Tag: int(id.Reason)}
	if code, ok := blockid.ReasonOf(id.Reason); ok {
		a.Reason.Code, a.Reason.Meaning = code, reasonMeaning(code)
		say("Reason %s: %s", code, cmp.Or(a.Reason.Meaning, "(no explanation for this code)"))
	} else {
		say("Reason tag %d, which this version does not know (an ID from a newer gateway, or a reason outside the table).", id.Reason)
	}

	a.Host = s.requestHost(id, host)
	switch h := a.Host; h.Status {
	case HostVerified:
		say("Host %s: verified.", h.Host)
	case HostSameDomain:
		say("Host: a name under %s, but not %s: ask the visitor for the exact address they opened.", h.Domain, h.Given)
	case HostMismatch:
		say("Host: not %s: this ID was issued for another address. Ask the visitor which address they opened.", h.Given)
	case HostCandidates:
		names := make([]string, len(h.Candidates))
		for i, c := range h.Candidates {
			names[i] = cmp.Or(c.Host, "a name under "+c.Domain)
		}
		if len(names) == 1 {
			say("Host: %s, the one domain in the unfiled report whose tag matches and which was blocked then; give it as host to verify.", names[0])
		} else {
			say("Host: one of %s (the unfiled report's domains whose tag matches and which were blocked then); give one as host to verify.", strings.Join(names, ", "))
		}
	default:
		say("Host: cannot be narrowed down from this gateway's unfiled report. Ask the visitor which address they opened, and give it as host to verify.")
	}
	return a
}

// requestHost tells what it can of id's host: verifies given when set,
// else looks for candidates in the unfiled report.
func (s *Server) requestHost(id blockid.ID, given string) *RequestHost {
	h := &RequestHost{Tag: fmt.Sprintf("%06X", id.HostTag), Given: given}
	if given != "" {
		// The host as the data plane decided it: normalised, with its
		// registrable domain.
		d := s.reg.Decide(given)
		name, domain := d.Host, d.Domain
		if name == "" {
			name = given // an invalid name is tagged as received
		}
		for _, n := range wwwTwins(name) {
			dom := domain
			if n != name && dom == "" {
				continue
			}
			if blockid.HostTag(n, dom) == id.HostTag {
				h.Status, h.Host, h.Domain = HostVerified, n, cmp.Or(dom, n)
				return h
			}
		}
		if blockid.DomainTag(cmp.Or(domain, name)) == id.DomainTag() && domain != "" {
			h.Status, h.Domain = HostSameDomain, domain
			return h
		}
		h.Status = HostMismatch
		return h
	}
	h.Status = HostUnknown
	if s.cfg.Report == nil {
		return h
	}
	t := id.Time()
	for _, r := range s.cfg.Report.Top(maxReportRows, "") {
		if blockid.DomainTag(r.Domain) != id.DomainTag() || r.FirstSeen.After(t.Add(candidateSlack)) || r.LastSeen.Before(t.Add(-candidateSlack)) {
			continue
		}
		c := RequestCandidate{Domain: r.Domain, Reason: r.Reason, FirstSeen: r.FirstSeen.In(s.location()), LastSeen: r.LastSeen.In(s.location()), Hits: r.Hits}
		for _, n := range wwwTwins(r.Domain) {
			if blockid.HostTag(n, r.Domain) == id.HostTag {
				c.Host = n
				break
			}
		}
		h.Candidates = append(h.Candidates, c)
	}
	// Those whose host matches too and whose reason is the ID's first;
	// Top's order (hits) otherwise.
	code, _ := blockid.ReasonOf(id.Reason)
	rank := func(c RequestCandidate) int {
		n := 0
		if c.Host == "" {
			n += 2
		}
		if c.Reason != code {
			n++
		}
		return n
	}
	slices.SortStableFunc(h.Candidates, func(a, b RequestCandidate) int { return rank(a) - rank(b) })
	if len(h.Candidates) > maxCandidates {
		h.Candidates = h.Candidates[:maxCandidates]
	}
	if len(h.Candidates) > 0 {
		h.Status = HostCandidates
	}
	return h
}

// wwwTwins returns name and its www twin (www.name, or name without
// "www."): visitors often say one when they opened the other.
func wwwTwins(name string) []string {
	if rest, ok := strings.CutPrefix(name, "www."); ok && rest != "" {
		return []string{name, rest}
	}
	return []string{name, "www." + name}
}

// location is the zone times are shown in (Config.TimeZone); validation
// has checked it, so an error here falls back to UTC+8, Asia/Shanghai's
// offset since 1991.
func (s *Server) location() *time.Location {
	if loc, err := time.LoadLocation(s.cfg.TimeZone); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*60*60)
}

// reasonMeaning is the console's English explanation of a reason code
// (i18n/en.json's reason.CODE.meaning), "" when it has none.
func reasonMeaning(code string) string { return consoleEnglish()["reason."+code+".meaning"] }

// consoleEnglish is the console's English texts, read once from the
// embedded assets.
var consoleEnglish = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	b, err := consoleFS.ReadFile("console/i18n/en.json")
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		panic(fmt.Sprintf("console/i18n/en.json: %v", err)) // embedded, and tested
	}
	return m
})
