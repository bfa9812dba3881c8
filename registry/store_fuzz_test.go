package registry

import (
	"testing"
	"time"
)

// FuzzStoreEntry feeds arbitrary bytes to the local store's entry decoders:
// a damaged store must decode to an error, never a panic, and whatever
// decodes must encode back to a value that decodes the same.
func FuzzStoreEntry(f *testing.F) {
	rec := Record{Domain: "filed.cn", State: StateRectifying, FilingNumber: "沪ICP备2026012345号-1",
		Subject: "某某科技有限公司", SubjectType: "enterprise", Province: "沪", Upstream: "10.0.0.5:443",
		RectifyDeadline: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), UpdatedAt: time.Unix(1700000000, 0).UTC()}
	ov := Override{ID: "7", Host: "www.filed.cn", Scope: ScopeExact, Action: ActionAllow,
		Expires: time.Unix(1800000000, 0).UTC(), Reason: "ticket", Ticket: "T-7", Who: "support"}
	f.Add(encodeRecord(nil, &rec))
	f.Add(encodeRecord(nil, &Record{State: StateBlacklisted}))
	f.Add(encodeOverride(nil, &ov))
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRecord([]byte("k.cn"), b); err == nil {
			r2, err := decodeRecord([]byte("k.cn"), encodeRecord(nil, &r))
			if err != nil || !r2.Equal(&r) {
				t.Fatalf("record round trip: got %+v, %v, want %+v", r2, err, r)
			}
		}
		if o, err := decodeOverride(b); err == nil {
			o2, err := decodeOverride(encodeOverride(nil, &o))
			if err != nil || !o2.Equal(&o) {
				t.Fatalf("override round trip: got %+v, %v, want %+v", o2, err, o)
			}
		}
	})
}
