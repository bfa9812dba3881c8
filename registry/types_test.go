package registry

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestStateNames(t *testing.T) {
	want := []string{"filed", "changing", "access_pending", "rectifying", "no_access",
		"filing_pending", "cancelled", "access_revoked", "blacklisted"}
	states := States()
	if len(states) != len(want) {
		t.Fatalf("States(): got %d states, want %d", len(states), len(want))
	}
	for i, st := range states {
		if got := st.String(); got != want[i] {
			t.Errorf("State(%d).String(): got %q, want %q", st, got, want[i])
		}
		p, err := ParseState(want[i])
		if err != nil || p != st {
			t.Errorf("ParseState(%q): got %v, %v, want %v", want[i], p, err, st)
		}
		b, err := st.MarshalText()
		if err != nil || string(b) != want[i] {
			t.Errorf("MarshalText: got %q, %v, want %q", b, err, want[i])
		}
		var u State
		if err := u.UnmarshalText([]byte(want[i])); err != nil || u != st {
			t.Errorf("UnmarshalText(%q): got %v, %v, want %v", want[i], u, err, st)
		}
	}
}

func TestStateErrors(t *testing.T) {
	for _, name := range []string{"", "Filed", "filed ", "unknown", "revoked"} {
		if _, err := ParseState(name); !errors.Is(err, ErrUnknownState) {
			t.Errorf("ParseState(%q): got %v, want %v", name, err, ErrUnknownState)
		}
	}
	for _, st := range []State{0, 10, 255} {
		if _, err := st.MarshalText(); !errors.Is(err, ErrUnknownState) {
			t.Errorf("State(%d).MarshalText: got %v, want %v", st, err, ErrUnknownState)
		}
		if st.Valid() {
			t.Errorf("State(%d).Valid(): got true, want false", st)
		}
	}
	if got, want := State(42).String(), "State(42)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStateJSON(t *testing.T) {
	var v struct{ S State }
	if err := json.Unmarshal([]byte(`{"S":"access_revoked"}`), &v); err != nil || v.S != StateAccessRevoked {
		t.Fatalf("got %v, %v, want %v", v.S, err, StateAccessRevoked)
	}
	b, _ := json.Marshal(v)
	if got, want := string(b), `{"S":"access_revoked"}`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := json.Unmarshal([]byte(`{"S":"nope"}`), &v); err == nil {
		t.Errorf("unknown state: got nil error")
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		v    Verdict
		name string
	}{{Pass, "pass"}, {Block, "block"}}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.name {
			t.Errorf("String: got %q, want %q", got, tt.name)
		}
		p, err := ParseVerdict(tt.name)
		if err != nil || p != tt.v {
			t.Errorf("ParseVerdict(%q): got %v, %v", tt.name, p, err)
		}
		var u Verdict
		if err := u.UnmarshalText([]byte(tt.name)); err != nil || u != tt.v {
			t.Errorf("UnmarshalText(%q): got %v, %v", tt.name, u, err)
		}
	}
	if _, err := ParseVerdict("allow"); !errors.Is(err, ErrUnknownVerdict) {
		t.Errorf("ParseVerdict(allow): got %v, want %v", err, ErrUnknownVerdict)
	}
	if _, err := Verdict(0).MarshalText(); err == nil {
		t.Errorf("Verdict(0).MarshalText: got nil error")
	}
}

func TestReasons(t *testing.T) {
	rs := Reasons()
	if len(rs) != 15 {
		t.Errorf("Reasons(): got %d, want 15", len(rs))
	}
	seen := map[Reason]bool{}
	for _, r := range rs {
		if seen[r] {
			t.Errorf("duplicate reason %q", r)
		}
		seen[r] = true
	}
	rs[0] = "mutated"
	if Reasons()[0] != ReasonFiled {
		t.Errorf("Reasons() returned shared storage")
	}
	// Every reason a decision can produce is in the list (checked against
	// the table test's outcomes elsewhere); spot-check the odd ones.
	for _, r := range []Reason{ReasonSuffixNotFileable, ReasonOverrideDeny, ReasonIPAccess, ReasonRectificationOverdue} {
		if !seen[r] {
			t.Errorf("Reasons() lacks %q", r)
		}
	}
}
