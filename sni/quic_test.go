package sni

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rfcDCID is the client's Destination Connection ID of the RFC 9001
// Appendix A (and RFC 9369 Appendix A) examples.
var rfcDCID = []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}

// loadHex reads a hex fixture from testdata/.
func loadHex(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	out, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return out
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestQUICInitialSecrets checks key derivation against RFC 9001 A.1 and
// RFC 9369 A.1.
func TestQUICInitialSecrets(t *testing.T) {
	tests := []struct {
		name         string
		version      uint32
		server       bool
		key, iv, hp  string
		sample, mask string // header protection: AES-ECB(hp, sample)[:5]
	}{
		{"v1 client", QUICv1, false, "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2",
			"d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"},
		{"v1 server", QUICv1, true, "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e", "c206b8d9b9f0f37644430b490eeaa314",
			"2cd0991cd25b0aac406a5816b6394100", "2ec0d8356a"},
		{"v2 client", QUICv2, false, "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "", "", ""},
		{"v2 server", QUICv2, true, "82db637861d55e1d011f19ea71d5d2a7", "dd13c276499c0249d3310652", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, iv, hp, err := initialSecrets(tt.version, rfcDCID, tt.server)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(key); got != tt.key {
				t.Errorf("key: got %q, want %q", got, tt.key)
			}
			if got := hex.EncodeToString(iv); got != tt.iv {
				t.Errorf("iv: got %q, want %q", got, tt.iv)
			}
			if tt.hp != "" {
				if got := hex.EncodeToString(hp); got != tt.hp {
					t.Errorf("hp: got %q, want %q", got, tt.hp)
				}
			}
			if tt.sample != "" {
				k, err := deriveInitialKeys(tt.version, rfcDCID, tt.server)
				if err != nil {
					t.Fatal(err)
				}
				var mask [16]byte
				k.hp.Encrypt(mask[:], mustHex(t, tt.sample))
				if got := hex.EncodeToString(mask[:5]); got != tt.mask {
					t.Errorf("mask: got %q, want %q", got, tt.mask)
				}
			}
		})
	}
}

// TestParseInitialRFC decrypts the full client Initial packets of RFC 9001
// A.2 and RFC 9369 A.2 and checks the CRYPTO data and the hello in it.
func TestParseInitialRFC(t *testing.T) {
	frame := loadHex(t, "quic-rfc-client-crypto.hex") // CRYPTO frame: 06 00 40f1 <hello>
	wantCrypto := frame[4:]
	for _, tt := range []struct {
		file    string
		version uint32
	}{
		{"quic-rfc-v1-client-initial.hex", QUICv1},
		{"quic-rfc-v2-client-initial.hex", QUICv2},
	} {
		t.Run(tt.file, func(t *testing.T) {
			pkt := loadHex(t, tt.file)
			orig := bytes.Clone(pkt)
			var in Initials
			h, err := in.Add(pkt)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if !bytes.Equal(pkt, orig) {
				t.Error("Add modified the datagram")
			}
			if got := in.Version(); got != tt.version {
				t.Errorf("version: got %#x, want %#x", got, tt.version)
			}
			if got := in.crypto[:in.ranges[0].to]; !bytes.Equal(got, wantCrypto) {
				t.Errorf("CRYPTO data: got %x, want %x", got, wantCrypto)
			}
			if h.ServerName != "example.com" {
				t.Errorf("ServerName: got %q, want %q", h.ServerName, "example.com")
			}
			if len(h.ALPN) != 1 || h.ALPN[0] != "alpn" {
				t.Errorf("ALPN: got %q, want %q", h.ALPN, []string{"alpn"})
			}
			if in.largest != 2 {
				t.Errorf("packet number: got %d, want %d", in.largest, 2)
			}
			h2, err := ParseInitial(pkt)
			if err != nil || h2.ServerName != "example.com" {
				t.Errorf("ParseInitial: got %q, %v, want %q", h2.ServerName, err, "example.com")
			}
		})
	}
}

// TestSealInitialRFC checks packet protection (the code that builds
// CONNECTION_CLOSE packets) against the server Initial of RFC 9001 A.3 and
// RFC 9369 A.3.
func TestSealInitialRFC(t *testing.T) {
	payload := loadHex(t, "quic-rfc-server-payload.hex")
	for _, tt := range []struct {
		file, header string
		version      uint32
	}{
		{"quic-rfc-v1-server-initial.hex", "c1000000010008f067a5502a4262b50040750001", QUICv1},
		{"quic-rfc-v2-server-initial.hex", "d16b3343cf0008f067a5502a4262b50040750001", QUICv2},
	} {
		t.Run(tt.file, func(t *testing.T) {
			k, err := deriveInitialKeys(tt.version, rfcDCID, true)
			if err != nil {
				t.Fatal(err)
			}
			hdr := mustHex(t, tt.header)
			got := sealInitial(hdr, 0, len(hdr)-2, 2, 1, payload, k)
			if want := loadHex(t, tt.file); !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
}

// quicPacket describes one client Initial packet for initialDatagram.
type quicPacket struct {
	pn     uint64
	frames []byte
}

// testDCID and testSCID are the connection IDs of built test packets.
var (
	testDCID = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	testSCID = []byte{9, 9, 9, 9}
)

// initialDatagram builds a datagram of protected client Initial packets,
// padded to 1200 bytes with PADDING frames in the last packet when pad.
func initialDatagram(tb testing.TB, version uint32, dcid []byte, pad bool, pkts ...quicPacket) []byte {
	tb.Helper()
	return initialDatagramKeys(tb, version, dcid, dcid, pad, pkts...)
}

// initialDatagramKeys is initialDatagram with the keys of keyDCID (a
// client's first DCID) and dcid in the headers.
func initialDatagramKeys(tb testing.TB, version uint32, keyDCID, dcid []byte, pad bool, pkts ...quicPacket) []byte {
	tb.Helper()
	k, err := deriveInitialKeys(version, keyDCID, false)
	if err != nil {
		tb.Fatal(err)
	}
	var out []byte
	for n, p := range pkts {
		payload := p.frames
		hdrLen := 1 + 4 + 1 + len(dcid) + 1 + len(testSCID) + 1 + 2 + 4
		if pad && n == len(pkts)-1 && len(out)+hdrLen+len(payload)+aeadTagLen < 1200 {
			payload = append(bytes.Clone(payload), make([]byte, 1200-len(out)-hdrLen-len(payload)-aeadTagLen)...)
		}
		start := len(out)
		out = append(out, 0xc3|typeBits(version, quicInitial)) // 4-byte packet number
		out = binary.BigEndian.AppendUint32(out, version)
		out = append(out, byte(len(dcid)))
		out = append(out, dcid...)
		out = append(out, byte(len(testSCID)))
		out = append(out, testSCID...)
		out = append(out, 0) // no token
		l := 4 + len(payload) + aeadTagLen
		out = append(out, 0x40|byte(l>>8), byte(l))
		out = binary.BigEndian.AppendUint32(out, uint32(p.pn))
		out = sealInitial(out, start, len(out)-4, 4, p.pn, payload, k)
	}
	return out
}

// cryptoFrame returns a CRYPTO frame carrying msg[from:to].
func cryptoFrame(msg []byte, from, to int) []byte {
	f := []byte{frameCrypto}
	f = appendVarint(f, uint64(from))
	f = appendVarint(f, uint64(to-from))
	return append(f, msg[from:to]...)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// quicHello returns a real QUIC ClientHello (Go's tls.QUICClient, SNI
// quic.example.cn), padded to total bytes when total > 0.
func quicHello(tb testing.TB, total int) []byte {
	tb.Helper()
	msg := loadHello(tb, "go-quic-crypto.bin")
	if total > 0 {
		msg = messageOf(tb, padded(tb, msg, total+5*(total/maxPlaintext+1)))
	}
	return msg
}

// TestInitialsReassembly feeds hellos split over packets and datagrams, in
// and out of order, and checks that the hello is reported exactly when the
// last missing piece arrives.
func TestInitialsReassembly(t *testing.T) {
	msg := quicHello(t, 0)
	big := quicHello(t, 3000) // needs three datagrams
	n := len(msg)
	ack := []byte{frameACK, 0, 0, 1, 0, 0, 0} // largest 0, delay 0, 1 range: first 0, gap 0 len 0
	ackECN := []byte{frameACKECN, 5, 1, 0, 2, 1, 2, 3}
	handshake := func() []byte { // a coalesced Handshake packet, skipped unread
		b := []byte{0xe0}
		b = binary.BigEndian.AppendUint32(b, QUICv1)
		b = append(b, byte(len(testDCID)))
		b = append(b, testDCID...)
		b = append(b, 0, 0x40, 30)
		return append(b, make([]byte, 30)...)
	}
	tests := []struct {
		name      string
		version   uint32
		datagrams [][]byte
		want      string
	}{
		{"one packet", QUICv1, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, n)}),
		}, "quic.example.cn"},
		{"v2 one packet", QUICv2, [][]byte{
			initialDatagram(t, QUICv2, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, n)}),
		}, "quic.example.cn"},
		{"frames reordered in one packet, with PING and PADDING between", QUICv1, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cat(cryptoFrame(msg, 100, n), []byte{framePing, framePadding}, cryptoFrame(msg, 0, 100))}),
		}, "quic.example.cn"},
		{"two datagrams, second part first", QUICv1, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{1, cryptoFrame(msg, 50, n)}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cat(ack, cryptoFrame(msg, 0, 50))}),
		}, "quic.example.cn"},
		{"coalesced initials and a handshake packet", QUICv1, [][]byte{
			cat(initialDatagram(t, QUICv1, testDCID, false, quicPacket{0, cryptoFrame(msg, 0, 10)}, quicPacket{1, cat(ackECN, cryptoFrame(msg, 10, n))}), handshake()),
		}, "quic.example.cn"},
		{"overlapping retransmission", QUICv1, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, 40)}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{1, cryptoFrame(msg, 20, 60)}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{2, cryptoFrame(msg, 0, 60)}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{3, cryptoFrame(msg, 60, n)}),
		}, "quic.example.cn"},
		{"large hello over three datagrams, reversed (Chrome-like)", QUICv1, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{2, cryptoFrame(big, 2200, len(big))}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{1, cryptoFrame(big, 1100, 2200)}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(big, 0, 1100)}),
		}, "quic.example.cn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in Initials
			for k, d := range tt.datagrams {
				h, err := in.Add(d)
				if k < len(tt.datagrams)-1 {
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("datagram %d: got error %v, want io.ErrUnexpectedEOF", k, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("datagram %d: %v", k, err)
				}
				if h.ServerName != tt.want {
					t.Errorf("got %q, want %q", h.ServerName, tt.want)
				}
				if got := in.Version(); got != tt.version {
					t.Errorf("version: got %#x, want %#x", got, tt.version)
				}
			}
			// Once complete, later datagrams return the same hello.
			if h, err := in.Add([]byte{0x40}); err != nil || h.ServerName != tt.want {
				t.Errorf("after completion: got %q, %v, want %q", h.ServerName, err, tt.want)
			}
			in.Reset()
			if _, err := in.Add(tt.datagrams[0]); len(tt.datagrams) > 1 && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("after Reset: got error %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

// conflictHellos returns two QUIC ClientHellos of the same length that
// differ only in their names, unfiled-demo.cn and a.filed-demo.cn, and the
// offset just past the first hello's name.
func conflictHellos(tb testing.TB) (unfiled, filed []byte, cut int) {
	tb.Helper()
	msg := quicHello(tb, 0)
	unfiled = editHello(tb, msg, setSNI(sniEntry{0, "unfiled-demo.cn"}))
	filed = editHello(tb, msg, setSNI(sniEntry{0, "a.filed-demo.cn"}))
	cut = bytes.Index(unfiled, []byte("unfiled-demo.cn")) + len("unfiled-demo.cn")
	if len(unfiled) != len(filed) || cut < len("unfiled-demo.cn") {
		tb.Fatal("hellos differ in more than the name")
	}
	return unfiled, filed, cut
}

// TestInitialsCryptoConflict sends the start of a hello for one name and
// then a whole hello for another over the same CRYPTO offsets. The origin
// keeps the bytes it got first, so a gateway that let the later bytes win
// would pass a.filed-demo.cn while the origin served unfiled-demo.cn:
// every shape must fail with ErrCryptoConflict, which is also ErrMalformed.
func TestInitialsCryptoConflict(t *testing.T) {
	unfiled, filed, cut := conflictHellos(t)
	first, second := cryptoFrame(unfiled, 0, cut), cryptoFrame(filed, 0, len(filed))
	flipped := bytes.Clone(filed)
	flipped[cut/2] ^= 0x20
	name := cut - len("unfiled-demo.cn") // where the names start: 'u' against 'a'
	tests := []struct {
		name      string
		datagrams [][]byte
	}{
		{"one packet, two frames", [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cat(first, second)}),
		}},
		{"two coalesced packets", [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, first}, quicPacket{1, second}),
		}},
		{"two datagrams", [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, first}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{1, second}),
		}},
		{"v2, one byte changed in a retransmission", [][]byte{
			initialDatagram(t, QUICv2, testDCID, true, quicPacket{0, cryptoFrame(filed, 0, cut)}),
			initialDatagram(t, QUICv2, testDCID, true, quicPacket{1, cryptoFrame(flipped, cut/4, len(filed))}),
		}},
		{"the later frame overlaps only the end of the earlier one", [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(unfiled, name, len(unfiled))}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{1, cryptoFrame(filed, 0, name+1)}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in Initials
			var h Hello
			var err error
			for k, d := range tt.datagrams {
				h, err = in.Add(d)
				if k < len(tt.datagrams)-1 && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("datagram %d: got %q, %v, want io.ErrUnexpectedEOF", k, h.ServerName, err)
				}
			}
			if !errors.Is(err, ErrCryptoConflict) || !errors.Is(err, ErrMalformed) {
				t.Errorf("got %q, %v, want %v (and %v)", h.ServerName, err, ErrCryptoConflict, ErrMalformed)
			}
		})
	}
}

// TestParseInitialECH wraps Go's ECH ClientHello (outer name
// public.example.cn) in an Initial: the outer name is reported, with ECH.
func TestParseInitialECH(t *testing.T) {
	msg := messageOf(t, loadHello(t, "go-ech.bin"))
	d := initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, len(msg))})
	h, err := ParseInitial(d)
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerName != "public.example.cn" || !h.ECH {
		t.Errorf("got %q ECH=%v, want %q ECH=true", h.ServerName, h.ECH, "public.example.cn")
	}
}

// TestInitialsErrors checks each failure is classified.
func TestInitialsErrors(t *testing.T) {
	msg := quicHello(t, 0)
	good := initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, len(msg))})
	tampered := bytes.Clone(good)
	tampered[len(tampered)-20] ^= 1
	versionNeg := append([]byte{0xc0, 0, 0, 0, 0}, good[5:]...)
	grease := append([]byte{0xc0, 0x1a, 0x2a, 0x3a, 0x4a}, good[5:]...)
	longCID := append([]byte{0xc0, 0, 0, 0, 1, 21}, make([]byte, 1200)...)
	stream := initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, []byte{0x08, 0, 1, 'x'}})
	closeFrame := initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, []byte{frameConnClose, 0, 0, 0}})
	past := initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(make([]byte, DefaultQUICMaxCryptoBytes+1), DefaultQUICMaxCryptoBytes, DefaultQUICMaxCryptoBytes+1)})
	truncCrypto := initialDatagram(t, QUICv1, testDCID, false, quicPacket{0, []byte{frameCrypto, 0, 0x40}})
	badLength := bytes.Clone(good)
	badLength[7+len(testDCID)+len(testSCID)+1] = 0x7f // length field: larger than the datagram
	notMine := initialDatagram(t, QUICv1, []byte{7, 7, 7, 7, 7, 7, 7, 7}, true, quicPacket{1, cryptoFrame(msg, 10, 20)})
	tests := []struct {
		name      string
		opts      QUICOptions
		datagrams [][]byte
		want      error
	}{
		{"empty", QUICOptions{}, [][]byte{{}}, ErrNotInitial},
		{"short header", QUICOptions{}, [][]byte{{0x40, 1, 2, 3}}, ErrNotInitial},
		{"truncated long header", QUICOptions{}, [][]byte{good[:6]}, ErrNotInitial},
		{"version negotiation", QUICOptions{}, [][]byte{versionNeg}, ErrQUICVersion},
		{"greased version", QUICOptions{}, [][]byte{grease}, ErrQUICVersion},
		{"connection ID over 20 bytes", QUICOptions{}, [][]byte{longCID}, ErrNotInitial},
		{"tampered ciphertext", QUICOptions{}, [][]byte{tampered}, ErrMalformed},
		{"length past the datagram", QUICOptions{}, [][]byte{badLength}, ErrMalformed},
		{"STREAM frame in an initial", QUICOptions{}, [][]byte{stream}, ErrMalformed},
		{"client CONNECTION_CLOSE", QUICOptions{}, [][]byte{closeFrame}, ErrMalformed},
		{"truncated CRYPTO frame", QUICOptions{}, [][]byte{truncCrypto}, ErrMalformed},
		{"CRYPTO past the cap", QUICOptions{}, [][]byte{past}, ErrTooLarge},
		{"CRYPTO past a set cap", QUICOptions{MaxCryptoBytes: 100}, [][]byte{good}, ErrTooLarge},
		{"too many packets", QUICOptions{MaxPackets: 1}, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, 10)}),
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{1, cryptoFrame(msg, 10, 20)}),
		}, ErrTooLarge},
		{"another connection's DCID", QUICOptions{}, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, 10)}),
			notMine,
		}, ErrMalformed},
		{"only the end of the hello", QUICOptions{}, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 10, len(msg))}),
		}, io.ErrUnexpectedEOF},
		{"not a ClientHello", QUICOptions{}, [][]byte{
			initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame([]byte{2, 0, 0, 1, 0}, 0, 5)}),
		}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Initials{Options: tt.opts}
			var err error
			for _, d := range tt.datagrams {
				if _, err = in.Add(d); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
					break
				}
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestInitialsPieces checks the cap on CRYPTO fragments (holes).
func TestInitialsPieces(t *testing.T) {
	var in Initials
	var err error
	for k := 0; k <= maxSpans && err == nil; k++ {
		d := initialDatagram(t, QUICv1, testDCID, true, quicPacket{uint64(k), cryptoFrame(make([]byte, 1000), 10+2*k, 11+2*k)})
		_, err = in.Add(d)
		if err != nil && errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil
		}
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("got error %v, want %v", err, ErrTooLarge)
	}
}

func TestParseQUICHeader(t *testing.T) {
	msg := quicHello(t, 0)
	v1 := initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, len(msg))})
	v2 := initialDatagram(t, QUICv2, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, len(msg))})
	for _, tt := range []struct {
		name    string
		b       []byte
		ok      bool
		long    bool
		initial bool
		dcid    string
	}{
		{"v1 initial", v1, true, true, true, "0102030405060708"},
		{"v2 initial", v2, true, true, true, "0102030405060708"},
		{"v1 handshake", append([]byte{0xe0, 0, 0, 0, 1, 1, 0xaa, 0}, 0), true, true, false, "aa"},
		{"v2 initial type bits read as v1", append([]byte{0xd0, 0, 0, 0, 1, 1, 0xaa, 0}, 0), true, true, false, "aa"},
		{"short header", []byte{0x40, 1, 2}, true, false, false, ""},
		{"empty", nil, false, false, false, ""},
		{"truncated DCID", []byte{0xc0, 0, 0, 0, 1, 8, 1}, false, true, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := ParseQUICHeader(tt.b)
			if ok != tt.ok || h.Long != tt.long || h.Initial != tt.initial {
				t.Fatalf("got ok=%v long=%v initial=%v, want %v %v %v", ok, h.Long, h.Initial, tt.ok, tt.long, tt.initial)
			}
			if got := hex.EncodeToString(h.DCID); ok && got != tt.dcid {
				t.Errorf("DCID: got %q, want %q", got, tt.dcid)
			}
		})
	}
}

// TestAppendInitialClose opens the close packet with the client's view of
// the server keys and checks the frame.
func TestAppendInitialClose(t *testing.T) {
	for _, version := range []uint32{QUICv1, QUICv2} {
		pkt, err := AppendInitialClose([]byte("prefix"), version, testDCID, testSCID, []byte{5, 5, 5, 5, 5, 5, 5, 5}, QUICAccessDenied, "unfiled")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(pkt, []byte("prefix")) {
			t.Fatal("dst prefix lost")
		}
		pkt = pkt[len("prefix"):]
		h, ok := ParseQUICHeader(pkt)
		if !ok || !h.Initial || h.Version != version || !bytes.Equal(h.DCID, testSCID) {
			t.Fatalf("header: got %+v %v, want an initial to %x", h, ok, testSCID)
		}
		// Open it as a client would: the server keys of the original DCID.
		k, err := deriveInitialKeys(version, testDCID, true)
		if err != nil {
			t.Fatal(err)
		}
		pnOff := 7 + len(h.DCID) + len(h.SCID) + 1 + 2
		var mask [16]byte
		k.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
		hdr := bytes.Clone(pkt[:pnOff+2])
		hdr[0] ^= mask[0] & 0x0f
		hdr[pnOff] ^= mask[1]
		hdr[pnOff+1] ^= mask[2]
		if hdr[0]&3 != 1 || hdr[pnOff] != 0 || hdr[pnOff+1] != 0 {
			t.Fatalf("packet number: got first byte %#x pn %x, want pn length 2, pn 0", hdr[0], hdr[pnOff:])
		}
		nonce := k.nonce(0)
		plain, err := k.aead.Open(nil, nonce[:], pkt[pnOff+2:], hdr)
		if err != nil {
			t.Fatalf("opening: %v", err)
		}
		want := []byte{frameConnClose, 0x41, 0x31, 0, 7, 'u', 'n', 'f', 'i', 'l', 'e', 'd'}
		if !bytes.Equal(plain, want) {
			t.Errorf("got %x, want %x", plain, want)
		}
	}
	if _, err := AppendInitialClose(nil, 0xbabababa, testDCID, testSCID, testSCID, 0, ""); !errors.Is(err, ErrQUICVersion) {
		t.Errorf("got error %v, want %v", err, ErrQUICVersion)
	}
}

// TestInitialOpens checks a later Initial to a server-issued DCID is
// recognised by the keys of the first DCID, and another connection's is not.
func TestInitialOpens(t *testing.T) {
	serverCID := []byte{0xaa, 0xbb, 0xcc, 0xdd}
	ack := []byte{frameACK, 0, 0, 0, 0}
	for _, tt := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"same connection, server-issued DCID", initialDatagramKeys(t, QUICv1, testDCID, serverCID, true, quicPacket{5, ack}), true},
		{"v2, same connection", initialDatagramKeys(t, QUICv2, testDCID, serverCID, true, quicPacket{5, ack}), true},
		{"first initial of this connection", initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, ack}), true},
		{"another connection", initialDatagram(t, QUICv1, []byte{1, 1, 1, 1, 1, 1, 1, 1}, true, quicPacket{0, ack}), false},
		{"short header", []byte{0x40, 1, 2, 3}, false},
		{"handshake packet", append([]byte{0xe0, 0, 0, 0, 1, 4, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0x40, 30}, make([]byte, 30)...), false},
	} {
		if got := InitialOpens(tt.b, testDCID); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestHMACSHA256 checks the stack HMAC against crypto/hmac for every key
// and message length it accepts.
func TestHMACSHA256(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789abcdef"), 8)
	for kl := 0; kl <= 64; kl += 4 {
		for ml := 0; ml <= 64; ml += 3 {
			m := hmac.New(sha256.New, src[:kl])
			m.Write(src[64-ml : 64])
			want := m.Sum(nil)
			if got := hmacSHA256(src[:kl], src[64-ml:64]); !bytes.Equal(got[:], want) {
				t.Fatalf("key %d, msg %d: got %x, want %x", kl, ml, got, want)
			}
		}
	}
	if _, err := AppendInitialClose(nil, QUICv1, make([]byte, 21), testSCID, testSCID, 0, ""); !errors.Is(err, ErrMalformed) {
		t.Errorf("21-byte original DCID: got error %v, want %v", err, ErrMalformed)
	}
}

func TestDecodePN(t *testing.T) {
	for _, tt := range []struct {
		largest   int64
		truncated uint64
		n         int
		want      uint64
	}{
		{0xa82f30ea, 0x9b32, 2, 0xa82f9b32}, // RFC 9000 A.3
		{-1, 0, 4, 0},
		{-1, 2, 4, 2},
		{255, 1, 1, 257},
	} {
		if got := decodePN(tt.largest, tt.truncated, tt.n); got != tt.want {
			t.Errorf("decodePN(%#x, %#x, %d): got %#x, want %#x", tt.largest, tt.truncated, tt.n, got, tt.want)
		}
	}
}

// FuzzParseInitial feeds raw datagrams (sealed false) and, since random
// bytes almost never decrypt, payloads sealed into a valid Initial packet
// (sealed true), which exercises frame parsing and reassembly. Errors must
// be classified; a success must carry a hello ParseHandshake accepts.
func FuzzParseInitial(f *testing.F) {
	msg := loadHello(f, "go-quic-crypto.bin")
	f.Add(loadHex(f, "quic-rfc-v1-client-initial.hex"), false)
	f.Add(loadHex(f, "quic-rfc-v2-client-initial.hex"), false)
	f.Add(initialDatagram(f, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, len(msg))}), false)
	f.Add(loadHex(f, "quic-rfc-client-crypto.hex"), true)
	f.Add(cryptoFrame(msg, 0, len(msg)), true)
	f.Add(cat(cryptoFrame(msg, 30, len(msg)), []byte{framePing, frameACK, 0, 0, 1, 0, 0, 0}, cryptoFrame(msg, 0, 30)), true)
	f.Add([]byte{frameACKECN, 5, 1, 0, 2, 1, 2, 3, 4}, true)
	unfiled, filed, cut := conflictHellos(f)
	f.Add(cat(cryptoFrame(unfiled, 0, cut), cryptoFrame(filed, 0, len(filed))), true)
	f.Add(cat(cryptoFrame(filed, 0, cut), cryptoFrame(filed, 0, len(filed))), true)
	// TestInitialsDuplicatePacket's and TestInitialsAfterHello's shapes:
	// the whole datagram is also sent again as the same packet, and a
	// second time after the hello.
	name := cut - len("unfiled-demo.cn")
	f.Add(cat(initialPN(f, nil, nil, testSCID, 0, 4, cryptoFrame(filed, 0, name)), initialPN(f, nil, nil, testSCID, 0, 1, cryptoFrame(filed, name, len(filed)))), false)
	f.Add(initialPN(f, nil, nil, []byte{7}, 0, 4, cryptoFrame(filed, 0, name)), false)
	f.Add(cat(cryptoFrame(filed, 0, len(filed)), cryptoFrame(append(bytes.Clone(filed), unfiled...), len(filed), 2*len(filed))), true)
	f.Add(cat(cryptoFrame(filed, 0, len(filed)), cryptoFrame(append(bytes.Clone(filed), 2, 0, 0, 1, 0), len(filed), len(filed)+5)), true)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		if sealed {
			if len(b) > 1100 {
				return
			}
			b = initialDatagram(t, QUICv1, testDCID, true, quicPacket{0, b})
		}
		// The same datagram again is a network duplicate, which the
		// server discards and which carries nothing new: it never
		// conflicts, before or after the hello is complete.
		var in Initials
		if _, err := in.Add(b); err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
			if _, err = in.Add(b); errors.Is(err, ErrCryptoConflict) {
				t.Fatalf("the same datagram again: %v", err)
			}
		}
		h, err := ParseInitial(b)
		if err != nil {
			for _, e := range []error{ErrNotInitial, ErrQUICVersion, ErrMalformed, ErrTooLarge, io.ErrUnexpectedEOF} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unclassified error %v", err)
		}
		// HasSNI with an empty name is a server_name extension holding
		// only entries of other types (TestReadErrors "only another
		// type"); a name without HasSNI never happens.
		if h.ServerName != "" && !h.HasSNI {
			t.Fatalf("server name %q without HasSNI", h.ServerName)
		}
	})
}

func BenchmarkParseInitial(b *testing.B) {
	msg := loadHello(b, "go-quic-crypto.bin")
	for _, bc := range []struct {
		name string
		d    []byte
	}{
		{"rfc9001", loadHex(b, "quic-rfc-v1-client-initial.hex")},
		{"go-quic", initialDatagram(b, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, len(msg))})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.d)))
			for b.Loop() {
				if _, err := ParseInitial(bc.d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInitialsSplit measures a hello in two reordered datagrams with
// a reused Initials, the per-connection cost a gateway pays.
func BenchmarkInitialsSplit(b *testing.B) {
	msg := loadHello(b, "go-quic-crypto.bin")
	d1 := initialDatagram(b, QUICv1, testDCID, true, quicPacket{1, cryptoFrame(msg, 100, len(msg))})
	d2 := initialDatagram(b, QUICv1, testDCID, true, quicPacket{0, cryptoFrame(msg, 0, 100)})
	b.ReportAllocs()
	b.SetBytes(int64(len(d1) + len(d2)))
	var in Initials
	for b.Loop() {
		in.Reset()
		if _, err := in.Add(d1); !errors.Is(err, io.ErrUnexpectedEOF) {
			b.Fatal(err)
		}
		if _, err := in.Add(d2); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAppendClientInitial reads back what AppendClientInitial builds.
func TestAppendClientInitial(t *testing.T) {
	msg := quicHello(t, 0)
	for _, version := range []uint32{QUICv1, QUICv2} {
		d, err := AppendClientInitial(nil, version, testDCID, testSCID, 7, cryptoFrame(msg, 0, 100), 0)
		if err != nil {
			t.Fatal(err)
		}
		if d, err = AppendClientInitial(d, version, testDCID, testSCID, 8, cryptoFrame(msg, 100, len(msg)), 1200); err != nil {
			t.Fatal(err)
		}
		if short, err := AppendClientInitial(nil, version, testDCID, testSCID, 0, []byte{framePing}, 1200); err != nil || len(short) != 1200 {
			t.Errorf("v%#x: padded PING: got %d bytes, %v, want 1200", version, len(short), err)
		}
		var in Initials
		h, err := in.Add(d)
		if err != nil || h.ServerName != "quic.example.cn" || in.largest != 8 {
			t.Errorf("v%#x: got %q, %v, packet %d, want %q, packet 8", version, h.ServerName, err, in.largest, "quic.example.cn")
		}
	}
	if _, err := AppendClientInitial(nil, 0xbabababa, testDCID, testSCID, 0, []byte{framePing}, 0); !errors.Is(err, ErrQUICVersion) {
		t.Errorf("bad version: got error %v, want %v", err, ErrQUICVersion)
	}
}

// initialPN builds a padded datagram of one v1 client Initial packet,
// numbered pn in a pnLen-byte encoding (the low bytes of pn, RFC 9000
// 17.1), from scid to dcid, protected with the keys of keyDCID (nil:
// testDCID for both).
func initialPN(tb testing.TB, keyDCID, dcid, scid []byte, pn uint64, pnLen int, frames []byte) []byte {
	tb.Helper()
	if keyDCID == nil {
		keyDCID = testDCID
	}
	if dcid == nil {
		dcid = keyDCID
	}
	k, err := deriveInitialKeys(QUICv1, keyDCID, false)
	if err != nil {
		tb.Fatal(err)
	}
	hdrLen := 1 + 4 + 1 + len(dcid) + 1 + len(scid) + 1 + 2 + pnLen
	payload := frames
	if n := 1200 - hdrLen - len(payload) - aeadTagLen; n > 0 {
		payload = append(bytes.Clone(payload), make([]byte, n)...)
	}
	out := []byte{0xc0 | typeBits(QUICv1, quicInitial) | byte(pnLen-1)}
	out = binary.BigEndian.AppendUint32(out, QUICv1)
	out = append(append(out, byte(len(dcid))), dcid...)
	out = append(append(out, byte(len(scid))), scid...)
	out = append(out, 0) // no token
	l := pnLen + len(payload) + aeadTagLen
	out = append(out, 0x40|byte(l>>8), byte(l))
	for j := pnLen - 1; j >= 0; j-- {
		out = append(out, byte(pn>>(8*j)))
	}
	return sealInitial(out, 0, len(out)-pnLen, pnLen, pn, payload, k)
}

// TestInitialsDuplicatePacket sends CRYPTO data in packets the server
// discards unread: a packet number it has already received (RFC 9000
// 12.3, quic-go's duplicate detection), in full or truncated encodings
// decoded against the largest number received, and a packet from another
// source connection ID. A gateway reading them completes a hello for
// a.filed-demo.cn the server never sees; the client then fills the gap at
// the server with another name's bytes. Each must fail with
// ErrCryptoConflict; a network duplicate (the same packet again) is fine.
func TestInitialsDuplicatePacket(t *testing.T) {
	unfiled, filed, cut := conflictHellos(t)
	name := cut - len("unfiled-demo.cn") // the hellos agree before here
	n := len(filed)
	prefix, rest := cryptoFrame(filed, 0, name), cryptoFrame(filed, name, n)
	other := []byte{7, 7, 7, 7}
	type step struct {
		d    []byte
		want error // nil: no error or io.ErrUnexpectedEOF
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"same packet number, different CRYPTO data", []step{
			{initialPN(t, nil, nil, testSCID, 0, 4, prefix), nil},
			{initialPN(t, nil, nil, testSCID, 0, 4, rest), ErrCryptoConflict},
		}},
		{"same packet number, 1-byte encoding", []step{
			{initialPN(t, nil, nil, testSCID, 0, 4, cryptoFrame(filed, 0, 10)), nil},
			{initialPN(t, nil, nil, testSCID, 1, 4, cryptoFrame(filed, 10, name)), nil},
			{initialPN(t, nil, nil, testSCID, 1, 1, rest), ErrCryptoConflict},
		}},
		{"same packet number, truncated below the largest's window", []step{
			{initialPN(t, nil, nil, testSCID, 0x1ff, 4, prefix), nil},
			{initialPN(t, nil, nil, testSCID, 0x200, 2, cryptoFrame(filed, name, name+1)), nil},
			// 0xff decodes against 0x200 to 0x1ff, not 0x2ff.
			{initialPN(t, nil, nil, testSCID, 0x1ff, 1, rest), ErrCryptoConflict},
		}},
		{"duplicate completing the hello with the other name after the prefix", []step{
			{initialPN(t, nil, nil, testSCID, 3, 4, prefix), nil},
			{initialPN(t, nil, nil, testSCID, 3, 2, cryptoFrame(unfiled, name, n)), ErrCryptoConflict},
		}},
		{"another source connection ID", []step{
			{initialPN(t, nil, nil, testSCID, 0, 4, prefix), nil},
			{initialPN(t, nil, nil, other, 1, 4, rest), ErrCryptoConflict},
		}},
		{"network duplicate before the hello is complete", []step{
			{initialPN(t, nil, nil, testSCID, 0, 4, prefix), nil},
			{initialPN(t, nil, nil, testSCID, 0, 4, prefix), nil},
			{initialPN(t, nil, nil, testSCID, 1, 4, rest), nil},
			{initialPN(t, nil, nil, testSCID, 1, 4, rest), nil},
		}},
		{"duplicate repeating part of what it carried", []step{
			{initialPN(t, nil, nil, testSCID, 0, 4, prefix), nil},
			{initialPN(t, nil, nil, testSCID, 0, 4, cryptoFrame(filed, 5, name-5)), nil},
			{initialPN(t, nil, nil, testSCID, 1, 4, rest), nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in Initials
			for k, s := range tt.steps {
				h, err := in.Add(s.d)
				if s.want != nil {
					if !errors.Is(err, s.want) || !errors.Is(err, ErrMalformed) {
						t.Fatalf("datagram %d: got %q, %v, want %v", k, h.ServerName, err, s.want)
					}
					return
				}
				if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("datagram %d: %v", k, err)
				}
				if k == len(tt.steps)-1 && h.ServerName != "a.filed-demo.cn" {
					t.Fatalf("got %q, %v, want a.filed-demo.cn", h.ServerName, err)
				}
			}
		})
	}
}

// TestInitialsAfterHello feeds Initials the client's datagrams after its
// hello was returned, as a gateway does until the server leaves its
// Initial phase: what the server could read differently from the decided
// hello is an error, retransmissions and ACKs are not, and a second
// ClientHello (after a HelloRetryRequest) is returned by SecondHello.
func TestInitialsAfterHello(t *testing.T) {
	unfiled, filed, _ := conflictHellos(t)
	n := len(filed)
	serverCID := []byte{0xaa, 0xbb, 0xcc, 0xdd}
	ack := []byte{frameACK, 0, 0, 0, 0}
	hello := initialPN(t, nil, nil, testSCID, 0, 4, cryptoFrame(filed, 0, n))
	second := func(msg []byte, from, to int) []byte { // msg as the CRYPTO stream after the hello
		return cryptoFrame(append(bytes.Clone(filed), msg...), n+from, n+to)
	}
	tests := []struct {
		name   string
		later  [][]byte // after hello
		retry  []byte   // if set, a server Retry to this connection ID comes first
		want   error
		second string // the second hello's name, if one is complete
	}{
		{"ACK and retransmission to the server's connection ID", [][]byte{
			initialPN(t, nil, serverCID, testSCID, 1, 2, ack),
			initialPN(t, nil, serverCID, testSCID, 2, 2, cryptoFrame(filed, 0, n)),
			initialPN(t, nil, nil, testSCID, 3, 1, cat(ack, cryptoFrame(filed, 20, 40))),
			{0x40, 1, 2, 3}, // 1-RTT
		}, nil, nil, ""},
		{"different bytes at decided offsets", [][]byte{
			initialPN(t, nil, nil, testSCID, 1, 4, cryptoFrame(unfiled, 0, n)),
		}, nil, ErrCryptoConflict, ""},
		{"new data in a duplicate packet number", [][]byte{
			initialPN(t, nil, nil, testSCID, 0, 4, second(filed, 0, 10)),
		}, nil, ErrCryptoConflict, ""},
		{"undecryptable initial", [][]byte{
			initialPN(t, []byte{1, 1, 1, 1}, testDCID, testSCID, 1, 4, ack),
		}, nil, ErrMalformed, ""},
		{"a second ClientHello, in two packets", [][]byte{
			initialPN(t, nil, nil, testSCID, 1, 4, second(unfiled, 0, 100)),
			initialPN(t, nil, nil, testSCID, 2, 4, second(unfiled, 100, n)),
		}, nil, nil, "unfiled-demo.cn"},
		{"bytes past the second ClientHello", [][]byte{
			initialPN(t, nil, nil, testSCID, 1, 4, second(cat(filed, []byte{1, 0}), 0, n+2)),
		}, nil, ErrCryptoConflict, ""},
		{"a second message that is no ClientHello", [][]byte{
			initialPN(t, nil, nil, testSCID, 1, 4, second([]byte{2, 0, 0, 1, 0}, 0, 5)),
		}, nil, ErrMalformed, ""},
		{"after a Retry, the hello again under the new keys", [][]byte{
			initialPN(t, serverCID, nil, testSCID, 0, 4, cryptoFrame(filed, 0, n)),
		}, serverCID, nil, ""},
		{"after a Retry, another hello under the new keys", [][]byte{
			initialPN(t, serverCID, nil, testSCID, 0, 4, cryptoFrame(unfiled, 0, n)),
		}, serverCID, ErrCryptoConflict, ""},
		{"after a Retry, the old keys", [][]byte{
			initialPN(t, nil, nil, testSCID, 1, 4, ack),
		}, serverCID, ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in Initials
			if h, err := in.Add(hello); err != nil || h.ServerName != "a.filed-demo.cn" {
				t.Fatalf("hello: got %q, %v", h.ServerName, err)
			}
			if tt.retry != nil {
				if err := in.ServerRetry(tt.retry); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			for k, d := range tt.later {
				var h Hello
				if h, err = in.Add(d); err != nil {
					if k < len(tt.later)-1 {
						t.Fatalf("datagram %d: %v", k, err)
					}
					break
				}
				if h.ServerName != "a.filed-demo.cn" {
					t.Fatalf("datagram %d: first hello %q, want a.filed-demo.cn", k, h.ServerName)
				}
			}
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			h, ok := in.SecondHello()
			if ok != (tt.second != "") || h.ServerName != tt.second {
				t.Errorf("second hello: got %q, %v, want %q", h.ServerName, ok, tt.second)
			}
		})
	}
	// Before the hello is returned, nothing may follow it: the server has
	// not asked for a second one.
	var in Initials
	if _, err := in.Add(initialPN(t, nil, nil, testSCID, 0, 4, cat(cryptoFrame(filed, 0, n), second(filed, 0, 4)))); !errors.Is(err, ErrCryptoConflict) {
		t.Errorf("data past the hello: got %v, want %v", err, ErrCryptoConflict)
	}
}

// TestHasHandshakePacket reads the datagrams a server sends.
func TestHasHandshakePacket(t *testing.T) {
	serverInitial, err := AppendInitialClose(nil, QUICv1, testDCID, testSCID, testSCID, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	handshake := append([]byte{0xe0, 0, 0, 0, 1, 4, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0x40, 30}, make([]byte, 30)...)
	hsV2 := bytes.Clone(handshake)
	hsV2[0] = 0xc0 | typeBits(QUICv2, quicHandshake)
	binary.BigEndian.PutUint32(hsV2[1:], QUICv2)
	retry := []byte{0xf0, 0, 0, 0, 1, 4, 1, 2, 3, 4, 4, 5, 6, 7, 8, 0xee}
	for _, tt := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"initial", serverInitial, false},
		{"initial then handshake", cat(serverInitial, handshake), true},
		{"handshake", handshake, true},
		{"v2 handshake", hsV2, true},
		{"retry", retry, false},
		{"short header", []byte{0x40, 1, 2, 3}, false},
		{"truncated", cat(serverInitial, handshake[:8]), false},
	} {
		if got := HasHandshakePacket(tt.b); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
		if h, _ := ParseQUICHeader(tt.b); h.Retry != (tt.name == "retry") {
			t.Errorf("%s: ParseQUICHeader Retry %v", tt.name, h.Retry)
		}
	}
}
