package blockid

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	tests := []ID{
		{},
		{Unix: 1<<32 - 1, Node: 1<<16 - 1, Reason: 255, HostTag: hostMask, Seq: seqMask},
		{Unix: 1767225600, Node: 0xbeef, Reason: 10, HostTag: 0x123456, Seq: 0xabcde},
		{Unix: 1, Node: 0x8000, Reason: 1, HostTag: 1, Seq: 1},
		{Node: 0x0fff},
		{Node: 0xf000},
	}
	for _, id := range tests {
		s := id.String()
		if len(s) != Len {
			t.Errorf("%+v: %q has %d bytes, want %d", id, s, len(s), Len)
		}
		got, err := Parse(s)
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
			continue
		}
		if got != id {
			t.Errorf("Parse(%q) = %+v, want %+v", s, got, id)
		}
		// As read out and typed back: lower case, no hyphens, spaces.
		loose := strings.ToLower(strings.ReplaceAll(s, "-", " "))
		if got, err := Parse(loose); err != nil || got != id {
			t.Errorf("Parse(%q) = %+v, %v, want %+v", loose, got, err, id)
		}
	}
}

func TestNew(t *testing.T) {
	now := time.Date(2026, 12, 8, 4, 30, 5, 999e6, time.UTC)
	a := New(now, NodeTag("gw-1"), "unfiled", "www.example.com", "example.com")
	b := New(now, NodeTag("gw-1"), "unfiled", "www.example.com", "example.com")
	if a.Seq == b.Seq {
		t.Errorf("two IDs with the same sequence number %d", a.Seq)
	}
	if !a.Time().Equal(now.Truncate(time.Second)) {
		t.Errorf("Time() = %v, want %v", a.Time(), now.Truncate(time.Second))
	}
	if r, ok := ReasonOf(a.Reason); !ok || r != "unfiled" {
		t.Errorf("ReasonOf(%d) = %q, %v, want unfiled", a.Reason, r, ok)
	}
	if a.HostTag != HostTag("WWW.Example.COM", "example.com") {
		t.Errorf("host tag is case-sensitive")
	}
	if a.DomainTag() != DomainTag("example.com") {
		t.Errorf("DomainTag() = %04x, want %04x", a.DomainTag(), DomainTag("example.com"))
	}
	if a.HostTag == HostTag("example.com", "example.com") {
		t.Errorf("www.example.com and example.com have the same host tag (possible, but not for these)")
	}
	if n := New(now, 0, "no_such_reason", "", ""); n.Reason != 0 {
		t.Errorf("unknown reason tagged %d, want 0", n.Reason)
	}
	if got := testing.AllocsPerRun(100, func() {
		var buf [Len]byte
		Append(buf[:0], New(now, 7, "unfiled", "www.example.com", "example.com"))
	}); got != 0 {
		t.Errorf("New+Append: %v allocations, want 0", got)
	}
}

func TestParseErrors(t *testing.T) {
	good := ID{Unix: 1767225600, Node: 0xbeef, Reason: 10, HostTag: 0x123456, Seq: 0xabcde}.String()
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == '0' {
			b[i] = '1'
		} else {
			b[i] = '0'
		}
		return string(b)
	}
	tests := []struct {
		in   string
		want error
		msg  string
	}{
		{"0123456789abcdef", ErrLegacy, "16-hex"},
		{"0123456789ABCDEF", ErrLegacy, "16-hex"},
		{"", ErrLength, "this one 0"},
		{good[:len(good)-1], ErrLength, "this one 20"},
		{good + "0", ErrLength, "this one 22"},
		{strings.Repeat("0", 1000), ErrLength, "this one 1000"},
		{"U" + good[1:], ErrChar, `character 1, 'U'`},
		{good[:8] + "*" + good[9:], ErrChar, `character 8, '*'`},
		{good[:3] + "é" + good[4:], ErrChar, `'é'`},
		{flip(good, 0), ErrCheck, "mistyped"},
		{flip(good, len(good)-1), ErrCheck, "mistyped"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if !errors.Is(err, tt.want) {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, err, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q): %q does not say %q", tt.in, err, tt.msg)
		}
	}
}

// TestCheckDetects mistypes and swaps every position of an ID: the check
// character catches every one.
func TestCheckDetects(t *testing.T) {
	s := strings.ReplaceAll(ID{Unix: 1767225600, Node: 0x1234, Reason: 10, HostTag: 0xfedcba, Seq: 42}.String(), "-", "")
	for i := 0; i < len(s); i++ {
		for _, c := range alphabet {
			if byte(c) == s[i] {
				continue
			}
			typo := s[:i] + string(c) + s[i+1:]
			if _, err := Parse(typo); !errors.Is(err, ErrCheck) {
				t.Fatalf("typo at %d (%q): %v, want ErrCheck", i, typo, err)
			}
		}
		for j := i + 1; j < len(s); j++ {
			if s[i] == s[j] {
				continue
			}
			b := []byte(s)
			b[i], b[j] = b[j], b[i]
			if _, err := Parse(string(b)); !errors.Is(err, ErrCheck) {
				t.Fatalf("swap of %d and %d (%q): %v, want ErrCheck", i, j, b, err)
			}
		}
	}
}

func TestCrockfordAliases(t *testing.T) {
	id := ID{Unix: 0x01010101, Node: 0x0101, Reason: 1, HostTag: 0x010101, Seq: 1}
	s := id.String()
	// Whatever 1s and 0s the text has can be read as I, L and O.
	alias := strings.NewReplacer("1", "l", "0", "O").Replace(s)
	if got, err := Parse(alias); err != nil || got != id {
		t.Errorf("Parse(%q) = %+v, %v, want %+v", alias, got, err, id)
	}
}

func TestReasons(t *testing.T) {
	seen := map[string]bool{}
	for i, r := range Reasons {
		if seen[r] {
			t.Errorf("reason %q twice", r)
		}
		seen[r] = true
		if ReasonTag(r) != uint8(i) {
			t.Errorf("ReasonTag(%q) = %d, want %d", r, ReasonTag(r), i)
		}
	}
	if _, ok := ReasonOf(uint8(len(Reasons))); ok {
		t.Errorf("ReasonOf past the table is ok")
	}
}

func FuzzDecodeRequestID(f *testing.F) {
	f.Add("0123456789abcdef", uint32(0), uint16(0), uint8(0), uint32(0), uint32(0))
	f.Add(ID{Unix: 1767225600, Node: 0xbeef, Reason: 10, HostTag: 0x123456, Seq: 0xabcde}.String(), uint32(1767225600), uint16(0xbeef), uint8(10), uint32(0x123456), uint32(0xabcde))
	f.Add("U-----", uint32(1<<32-1), uint16(1<<16-1), uint8(255), uint32(1<<32-1), uint32(1<<32-1))
	f.Fuzz(func(t *testing.T, s string, unix uint32, node uint16, reason uint8, host, sq uint32) {
		// Any text: an ID or an error, never a panic; an ID prints back
		// as text that parses to it.
		if id, err := Parse(s); err == nil {
			if got, err := Parse(id.String()); err != nil || got != id {
				t.Errorf("Parse(%q) = %+v; its text %q parses to %+v, %v", s, id, id.String(), got, err)
			}
		}
		// Any fields: decode(encode(x)) == x.
		id := ID{Unix: unix, Node: node, Reason: reason, HostTag: host & hostMask, Seq: sq & seqMask}
		if got, err := Parse(id.String()); err != nil || got != id {
			t.Errorf("%+v: %q parses to %+v, %v", id, id.String(), got, err)
		}
	})
}

func BenchmarkNewAppend(b *testing.B) {
	b.ReportAllocs()
	now := time.Now()
	var buf [Len]byte
	for b.Loop() {
		Append(buf[:0], New(now, 7, "unfiled", "www.example.com", "example.com"))
	}
}
