package proxy

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestRawIOSendThenRead checks the write a Read makes first: a small
// request goes out inside the read's wait and the answer is read; a
// request larger than the socket takes (a small send buffer, a peer that
// reads late) is finished by Write before the read, and every
// byte arrives in order.
func TestRawIOSendThenRead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		small bool
	}{
		{"fits", 300, false},
		{"socket full", 1 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			if tc.small {
				a.SetWriteBuffer(4096)
			}
			req := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16)
			got := make(chan []byte, 1)
			go func() {
				time.Sleep(100 * time.Millisecond) // the peer reads late
				buf := make([]byte, len(req))
				if _, err := io.ReadFull(b, buf); err != nil {
					got <- nil
					return
				}
				got <- buf
				b.Write([]byte("pong"))
			}()
			var r rawIO
			r.bind(a)
			a.SetDeadline(time.Now().Add(10 * time.Second))
			r.sendThenRead(req)
			ans := make([]byte, 16)
			n, err := r.Read(ans)
			if err != nil || string(ans[:n]) != "pong" {
				t.Fatalf("read after the send: got %q, %v; want pong", ans[:n], err)
			}
			if sent := <-got; !bytes.Equal(sent, req) {
				t.Fatalf("the peer got %d bytes, not the %d sent", len(sent), len(req))
			}
			if r.lead != nil {
				t.Error("lead still set after the Read")
			}
		})
	}
}

// TestRawIOLeadKeptOnFailedRead checks that what sendThenRead left for a
// Read is not lost when that Read fails before it could write (its
// deadline had passed, as a drain makes it): the next Write sends it
// first, in order, and flushLead sends it alone.
func TestRawIOLeadKeptOnFailedRead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write bool // a Write follows; else flushLead
	}{
		{"then Write", true},
		{"then flushLead", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			var r rawIO
			r.bind(a)
			a.SetReadDeadline(time.Now().Add(-time.Second))
			a.SetWriteDeadline(time.Now().Add(10 * time.Second))
			r.sendThenRead([]byte("response"))
			if _, err := r.Read(make([]byte, 16)); !isTimeout(err) {
				t.Fatalf("Read past its deadline: %v, want a timeout", err)
			}
			if r.lead == nil {
				t.Fatal("the failed Read dropped the pending bytes")
			}
			want := "response"
			if tc.write {
				if _, err := r.Write([]byte("+page")); err != nil {
					t.Fatal(err)
				}
				want += "+page"
			} else if err := r.flushLead(); err != nil {
				t.Fatal(err)
			}
			a.Close()
			b.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(b)
			if err != nil || string(got) != want {
				t.Fatalf("the peer got %q, %v; want %q", got, err, want)
			}
			if r.lead != nil || r.flushLead() != nil {
				t.Error("the bytes are still pending after they were sent")
			}
		})
	}
}

// TestRawIOSetDeadline checks setDeadline's laziness: a deadline within
// its slack of the one set is left alone, one further away is set, a
// deadline that was set another way is set again after forget, and the
// deadlines it sets do fire.
func TestRawIOSetDeadline(t *testing.T) {
	a, b := tcpPair(t)
	var r rawIO
	r.bind(a)
	now := time.Now()
	r.setDeadline(dlBoth, now, 10*time.Second)
	rdl, wdl := r.rdl, r.wdl
	if rdl == 0 || rdl != wdl {
		t.Fatalf("after the first call: read %d, write %d; want both set, equal", rdl, wdl)
	}
	r.setDeadline(dlRead, now.Add(50*time.Millisecond), 10*time.Second)
	if r.rdl != rdl {
		t.Error("a read deadline 50 ms on (slack 250 ms) was set again")
	}
	r.setDeadline(dlWrite, now.Add(time.Second), 10*time.Second)
	if r.wdl == wdl || r.rdl != rdl {
		t.Errorf("a write deadline 1 s on: write %d (was %d), read %d (was %d); want only the write set", r.wdl, wdl, r.rdl, rdl)
	}

	// Set around it: the next call must set it, though it is the same.
	a.SetReadDeadline(time.Now().Add(-time.Second))
	r.forget()
	r.setDeadline(dlRead, now, 10*time.Second)
	go b.Write([]byte("x"))
	var buf [1]byte
	if n, err := r.Read(buf[:]); n != 1 || err != nil {
		t.Fatalf("read after forget and setDeadline: %d, %v; want the byte (the past deadline should be gone)", n, err)
	}

	// Small timeouts get a small slack (d/8), and fire.
	r.setDeadline(dlRead, time.Now(), 20*time.Millisecond)
	if _, err := r.Read(buf[:]); !isTimeout(err) {
		t.Fatalf("read past a 20 ms deadline: %v, want a timeout", err)
	}
}
