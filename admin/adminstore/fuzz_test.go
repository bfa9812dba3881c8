package adminstore

import (
	"bytes"
	"fmt"
	"testing"
)

// FuzzParseTokenLine: no line panics the parser, and whatever it accepts
// formats back to a line that parses to the same token.
func FuzzParseTokenLine(f *testing.F) {
	hash := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	good := fmt.Sprintf(`{"id":"Zm9vYmFy","name":"li.wei","role":"support","sha256":%q,"created":"2026-11-27T05:00:00Z","revoked":false}`, hash)
	for _, s := range []string{
		good,
		good + " ",
		good + " {}",
		`{"id":"a","name":"x@y.cn","role":"admin","sha256":"` + hash + `","created":"2026-11-27T05:00:00.123456+08:00","revoked":true}`,
		`{"id":"a","name":"x","role":"viewer","sha256":"` + hash + `","created":"2026-11-27T05:00:00Z","revokd":true}`,
		`{"id":"a","name":"x","role":"root","sha256":"` + hash + `","created":"2026-11-27T05:00:00Z"}`,
		`{"id":"a","name":"x","role":"viewer","sha256":"zz","created":"2026-11-27T05:00:00Z"}`,
		`{"id":"","name":"","role":"","sha256":"","created":""}`,
		`null`, `[]`, `{`, ``, `{"id":"a","id":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		tok, err := parseTokenLine(line)
		if err != nil {
			return
		}
		out := formatTokenLine(tok)
		again, err := parseTokenLine(out)
		if err != nil {
			t.Fatalf("%q parsed, but its formatted form %q does not: %v", line, out, err)
		}
		if again != tok {
			t.Fatalf("round trip: %+v became %+v", tok, again)
		}
		if !bytes.Equal(formatTokenLine(again), out) {
			t.Fatalf("format is not stable: %q", out)
		}
	})
}
