package admin

import (
	"testing"
	"time"
)

func TestSessionStore(t *testing.T) {
	st := newSessionStore()
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	a, b := [32]byte{1}, [32]byte{2}
	id1, s1, err := st.create(a, now)
	if err != nil {
		t.Fatal(err)
	}
	id2, _, err := st.create(a, now)
	if err != nil {
		t.Fatal(err)
	}
	id3, _, err := st.create(b, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(id1) != 43 || id1 == id2 || len(s1.csrf) != 43 || s1.csrf == id1 {
		t.Fatalf("ids %q %q csrf %q: want distinct 32-byte base64url values", id1, id2, s1.csrf)
	}
	if got, ok := st.get(id1, now); !ok || got.tokenHash != a || !got.expires.Equal(now.Add(12*time.Hour)) {
		t.Fatalf("get: got %+v %v", got, ok)
	}
	if _, ok := st.get("nope", now); ok {
		t.Fatal("unknown id found")
	}
	st.removeToken(a)
	if _, ok := st.get(id1, now); ok {
		t.Error("session of a removed token still live")
	}
	if _, ok := st.get(id2, now); ok {
		t.Error("second session of a removed token still live")
	}
	if _, ok := st.get(id3, now.Add(12*time.Hour-1)); !ok {
		t.Error("other token's session gone")
	}
	if _, ok := st.get(id3, now.Add(12*time.Hour)); ok {
		t.Error("session live at 12 h")
	}
}

// TestSessionStoreBounded: sign-ins past maxSessions drop the oldest
// sessions rather than growing the map.
func TestSessionStoreBounded(t *testing.T) {
	st := newSessionStore()
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	first, _, err := st.create([32]byte{9}, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxSessions + 10 {
		if _, _, err := st.create([32]byte{1}, now.Add(time.Duration(i+1)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(st.m); n != maxSessions {
		t.Errorf("sessions: got %d, want %d", n, maxSessions)
	}
	if _, ok := st.get(first, now); ok {
		t.Error("the oldest session survived the overflow")
	}
}
