package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/text/transform"

	"github.com/icpgate/icpgate/registry"
)

// A registry snapshot holds its times in UTC (the same instants), and a
// timestamptz column keeps the instant only, so the offset a record's
// times were written with (+08:00 for most of them) is lost on both
// sides. import reads the offsets from the file in a second pass and
// writes them to the offset columns (migration 3); export writes the
// times back with them.

// zoneOffsets are the offsets, in minutes east of UTC, of a record's
// rectify_deadline and updated_at as its file wrote them.
type zoneOffsets struct{ deadline, updated int16 }

// readZoneOffsets returns the offsets of the times of the registry file at
// path (in encoding enc, a key of importEncodings) by canonical domain.
// Only records with a time not in UTC are listed: the others, most files
// or none, cost nothing. The file has been loaded (and validated) by
// loadImportFile, so a row this pass cannot read is skipped, not refused.
func readZoneOffsets(path, enc string) (map[string]zoneOffsets, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening registry file: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if e := importEncodings[enc]; e != nil {
		r = transform.NewReader(f, e.NewDecoder())
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if p, _ := br.Peek(len(utf8BOMBytes)); bytes.Equal(p, utf8BOMBytes) {
		br.Discard(len(utf8BOMBytes))
	}
	offs := map[string]zoneOffsets{}
	add := func(domain, deadline, updated string) {
		d, okD := zoneOffset(deadline)
		u, okU := zoneOffset(updated)
		if !okD && !okU {
			return
		}
		dom, err := registry.CanonicalDomain(strings.ToLower(strings.TrimSuffix(domain, ".")))
		if err != nil {
			return
		}
		offs[dom] = zoneOffsets{deadline: d, updated: u}
	}
	if isCSVFile(path, br) {
		err = zoneOffsetsCSV(br, add)
	} else {
		err = zoneOffsetsJSONL(br, add)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the time zone offsets of %s: %w", path, err)
	}
	return offs, nil
}

// isCSVFile chooses the format as the registry reader does: by the
// extension, else CSV unless the first byte that is not space is "{".
func isCSVFile(path string, br *bufio.Reader) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".json", ".ndjson":
		return false
	case ".csv":
		return true
	}
	for n := 1; n <= 512; n++ {
		p, _ := br.Peek(n)
		if len(p) < n {
			return false
		}
		switch p[n-1] {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return p[n-1] != '{'
	}
	return true
}

func zoneOffsetsJSONL(br *bufio.Reader, add func(domain, deadline, updated string)) error {
	for {
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			var more []byte
			more, err = br.ReadSlice('\n')
			line = append(bytes.Clone(line), more...)
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			var row struct {
				Domain          string `json:"domain"`
				RectifyDeadline string `json:"rectify_deadline"`
				UpdatedAt       string `json:"updated_at"`
			}
			if json.Unmarshal(line, &row) == nil {
				add(row.Domain, row.RectifyDeadline, row.UpdatedAt)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func zoneOffsetsCSV(br *bufio.Reader, add func(domain, deadline, updated string)) error {
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	field := func(row []string, name string) string {
		if i, ok := col[name]; ok && i < len(row) {
			return strings.TrimSpace(row[i])
		}
		return ""
	}
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		add(field(row, "domain"), field(row, "rectify_deadline"), field(row, "updated_at"))
	}
}

// zoneOffset returns the offset, in minutes east of UTC, of the RFC 3339
// time v, and whether it is one to keep: v is a time not in UTC.
func zoneOffset(v string) (int16, bool) {
	if v == "" {
		return 0, false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, false
	}
	_, sec := t.Zone()
	return int16(sec / 60), sec != 0
}

// optOffset is the offset column's value: null for a time absent or in UTC.
func optOffset(t time.Time, minutes int16) any {
	if t.IsZero() || minutes == 0 {
		return nil
	}
	return minutes
}

// inZone returns t at the offset of the offset column, in UTC when it is
// null.
func inZone(t time.Time, minutes *int16) time.Time {
	if minutes == nil || *minutes == 0 {
		return t.UTC()
	}
	return t.In(time.FixedZone("", int(*minutes)*60))
}
