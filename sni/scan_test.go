package sni

import (
	"errors"
	"testing"
)

// TestScanEveryPrefix scans every prefix of a real hello: each short one is
// ErrIncomplete, the whole one gives the server name.
func TestScanEveryPrefix(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin")
	var s Scanner
	for i := 0; i < len(pq); i++ {
		if _, err := s.Scan(pq[:i], 0); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix of %d bytes: got %v, want ErrIncomplete", i, err)
		}
	}
	h, err := s.Scan(pq, 0)
	if err != nil || h.ServerName != "pq.example.cn" {
		t.Fatalf("whole hello: got %q, %v; want pq.example.cn", h.ServerName, err)
	}
}

// TestScanErrors checks that Scan refuses what Read refuses.
func TestScanErrors(t *testing.T) {
	pq := loadHello(t, "go-tls13-mlkem.bin")
	tests := []struct {
		name  string
		in    []byte
		limit int
		want  error
	}{
		{"http", []byte("GET / HTTP/1.1\r\n"), 0, ErrNotTLS},
		{"alert record first", []byte{21, 3, 1, 0, 2, 2, 40}, 0, ErrNotTLS},
		{"empty record", []byte{22, 3, 1, 0, 0}, 0, ErrMalformed},
		{"over the limit", pq, 100, ErrTooLarge},
	}
	var s Scanner
	for _, tc := range tests {
		if _, err := s.Scan(tc.in, tc.limit); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		// The Scanner is reusable after an error.
		if h, err := s.Scan(pq, 0); err != nil || h.ServerName != "pq.example.cn" {
			t.Fatalf("after %s: got %q, %v", tc.name, h.ServerName, err)
		}
	}
}

// FuzzScan checks that Scan agrees with Read on the same bytes: the same
// server name when both accept, and Scan's ErrIncomplete only where Read
// ran out of input.
func FuzzScan(f *testing.F) {
	for _, s := range seedInputs(f) {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	var s Scanner
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, errS := s.Scan(b, 0)
		hr, c, errR := Read(newMemConn(b), Options{})
		defer c.Release()
		switch {
		case errS == nil && errR == nil:
			if hs.ServerName != hr.ServerName || hs.ECH != hr.ECH {
				t.Fatalf("Scan %q ech %v, Read %q ech %v", hs.ServerName, hs.ECH, hr.ServerName, hr.ECH)
			}
		case errors.Is(errS, ErrIncomplete):
			if errR == nil || errors.Is(errR, ErrNotTLS) || errors.Is(errR, ErrMalformed) || errors.Is(errR, ErrTooLarge) {
				t.Fatalf("Scan incomplete, Read: %v", errR)
			}
		case (errS == nil) != (errR == nil):
			t.Fatalf("Scan: %v, Read: %v", errS, errR)
		}
	})
}
