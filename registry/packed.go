package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"time"
	"unsafe"
)

// A registry of 10 million records has to fit in well under 2 GiB. A
// Record by value is 152 bytes before its strings, and each string is its
// own heap object; a map from domain to record adds about 40 bytes more.
// So a snapshot's records are packed instead:
//
//   - every record is encoded into an arena of byte chunks: its strings
//     back to back with their lengths, times as varints, and the values
//     that repeat across records (subject type, province, upstream) as an
//     index into a small table of interned strings;
//   - a domain finds its record through an open-addressing hash table of
//     64-bit entries (the record's arena reference and 31 bits of the
//     domain's hash, so a probe rarely touches the arena in vain).
//
// That is about 80 bytes a record, and the arena has no pointers for the
// garbage collector to trace. Lookup decodes a record into a fresh Record
// whose strings point into the arena (no copies), which is what the
// decision path keeps; chunks are never written again once a record is in
// them, so those strings stay valid for as long as anything holds them.

// Arena geometry: a reference is chunk<<chunkBits | offset.
const (
	chunkBits    = 24 // chunks of at most 16 MiB
	maxChunk     = 1 << chunkBits
	maxChunks    = 1 << (32 - chunkBits)
	firstChunk   = 4 << 10
	maxInterned  = 1 << 16 // distinct interned values per snapshot
	maxInternLen = 256     // longer values are stored inline
)

// ErrTooLarge is returned when the records do not fit one snapshot (4 GiB
// of encoded records, about 50 million).
var ErrTooLarge = errors.New("registry too large for one snapshot")

// tableSeed seeds the domain hash table of this process.
var tableSeed = maphash.MakeSeed()

// packed is the immutable encoded form of a set of records.
type packed struct {
	chunks [][]byte // full chunks and the last, partly used one
	table  []uint64 // 0: empty; else tag<<33 | 1<<32 | ref
	mask   uint64
	n      int      // records
	intern []string // interned values; a reference k >= 2 is intern[k-2]
}

// emptyPacked holds no records.
var emptyPacked = &packed{table: make([]uint64, 1)}

// packer builds a packed.
type packer struct {
	p       packed
	interns map[string]uint64
	scratch []byte
}

func newPacker(hint int) *packer {
	size := 16
	for size*3/4 < hint {
		size <<= 1
	}
	return &packer{
		p:       packed{table: make([]uint64, size), mask: uint64(size - 1)},
		interns: make(map[string]uint64),
	}
}

// find returns the table slot of domain and whether it holds it (else the
// empty slot where it would go).
func (p *packed) find(domain string) (slot uint64, ok bool) {
	slot, _, ok = p.findHash(domain)
	return slot, ok
}

// findHash is find that also returns the domain's hash.
func (p *packed) findHash(domain string) (slot, h uint64, ok bool) {
	h = maphash.String(tableSeed, domain)
	tag := h >> 33
	for i := h & p.mask; ; i = (i + 1) & p.mask {
		e := p.table[i]
		if e == 0 {
			return i, h, false
		}
		if e>>33 == tag && p.domainAt(uint32(e)) == domain {
			return i, h, true
		}
	}
}

// domainAt returns the domain of the record at ref.
func (p *packed) domainAt(ref uint32) string {
	c := p.chunks[ref>>chunkBits]
	off := ref & (maxChunk - 1)
	n := uint32(c[off])
	return unsafe.String(&c[off+1], n)
}

// lookup decodes the record of domain into r.
func (p *packed) lookup(domain string, r *Record) bool {
	if p.n == 0 {
		return false
	}
	slot, ok := p.find(domain)
	if !ok {
		return false
	}
	ref := uint32(p.table[slot])
	c := p.chunks[ref>>chunkBits]
	p.decode(c, int(ref&(maxChunk-1)), r)
	return true
}

// each calls f with every record, decoded into one reused Record, in the
// order they were added, until f returns false.
func (p *packed) each(f func(r *Record) bool) {
	var r Record
	for _, c := range p.chunks {
		for off := 0; off < len(c); {
			off = p.decode(c, off, &r)
			if !f(&r) {
				return
			}
		}
	}
}

// add encodes rec (valid, canonical) into the arena, indexes it and
// returns its reference; a domain already present is ErrDuplicate. It
// keeps none of rec's strings: the arena gets copies, the intern table
// clones.
func (b *packer) add(rec *Record) (uint32, error) {
	if (b.p.n+1)*4 > len(b.p.table)*3 {
		b.grow()
	}
	slot, h, dup := b.p.findHash(rec.Domain)
	if dup {
		return 0, fmt.Errorf("%w: domain %s", ErrDuplicate, rec.Domain)
	}
	e := b.scratch[:0]
	if len(rec.Domain) > 255 {
		return 0, fmt.Errorf("%w: domain: longer than 255 bytes", ErrInvalidRecord)
	}
	e = append(e, byte(len(rec.Domain)))
	e = append(e, rec.Domain...)
	e = append(e, byte(rec.State))
	e = appendString(e, rec.FilingNumber)
	e = appendString(e, rec.Subject)
	e = b.appendRef(e, rec.SubjectType)
	e = b.appendRef(e, rec.Province)
	e = b.appendRef(e, rec.Upstream)
	e = appendPackedTime(e, rec.RectifyDeadline)
	e = appendPackedTime(e, rec.UpdatedAt)
	b.scratch = e
	ref, err := b.put(e)
	if err != nil {
		return 0, err
	}
	b.p.table[slot] = h>>33<<33 | 1<<32 | uint64(ref)
	b.p.n++
	return ref, nil
}

// put copies an encoded record into the arena and returns its reference.
func (b *packer) put(e []byte) (uint32, error) {
	if len(e) > maxChunk {
		return 0, fmt.Errorf("%w: a record of %d bytes", ErrInvalidRecord, len(e))
	}
	cs := b.p.chunks
	if len(cs) == 0 || cap(cs[len(cs)-1])-len(cs[len(cs)-1]) < len(e) {
		if len(cs) == maxChunks {
			return 0, fmt.Errorf("%w: more than %d GiB of records", ErrTooLarge, maxChunks*maxChunk>>30)
		}
		size := firstChunk
		if len(cs) > 0 {
			size = min(2*cap(cs[len(cs)-1]), maxChunk)
		}
		for size < len(e) {
			size *= 2
		}
		cs = append(cs, make([]byte, 0, size))
		b.p.chunks = cs
	}
	i := len(cs) - 1
	ref := uint32(i)<<chunkBits | uint32(len(cs[i]))
	cs[i] = append(cs[i], e...)
	return ref, nil
}

// grow doubles the table and re-indexes every record.
func (b *packer) grow() {
	old := b.p.table
	b.p.table = make([]uint64, 2*len(old))
	b.p.mask = uint64(len(b.p.table) - 1)
	for _, e := range old {
		if e == 0 {
			continue
		}
		h := maphash.String(tableSeed, b.p.domainAt(uint32(e)))
		for i := h & b.p.mask; ; i = (i + 1) & b.p.mask {
			if b.p.table[i] == 0 {
				b.p.table[i] = e
				break
			}
		}
	}
}

// done returns the packed records; the packer must not be used again.
func (b *packer) done() *packed {
	p := b.p
	b.p, b.interns = packed{}, nil
	if p.n == 0 {
		return emptyPacked
	}
	return &p
}

// appendRef encodes a repeating value: 0 for "", 1 + the value inline, or
// 2 + its index in the intern table.
func (b *packer) appendRef(e []byte, s string) []byte {
	if s == "" {
		return append(e, 0)
	}
	if k, ok := b.interns[s]; ok {
		return binary.AppendUvarint(e, k)
	}
	if len(s) <= maxInternLen && len(b.p.intern) < maxInterned {
		k := uint64(len(b.p.intern)) + 2
		s = strings.Clone(s) // s may be borrowed (Builder.Add)
		b.p.intern = append(b.p.intern, s)
		b.interns[s] = k
		return binary.AppendUvarint(e, k)
	}
	return appendString(append(e, 1), s)
}

// appendPackedTime encodes 0 for the zero time, else 1, the Unix seconds and the
// nanoseconds: exact for any instant, 7 bytes for today's.
func appendPackedTime(e []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(e, 0)
	}
	e = append(e, 1)
	e = binary.AppendVarint(e, t.Unix())
	return binary.AppendUvarint(e, uint64(t.Nanosecond()))
}

// decode decodes the record at c[off:] into r and returns the offset of
// the next one. The encoding was written by add, so it is trusted.
func (p *packed) decode(c []byte, off int, r *Record) int {
	n := int(c[off])
	off++
	r.Domain = unsafe.String(&c[off], n)
	off += n
	r.State = State(c[off])
	off++
	r.FilingNumber, off = decodeString(c, off)
	r.Subject, off = decodeString(c, off)
	r.SubjectType, off = p.decodeRef(c, off)
	r.Province, off = p.decodeRef(c, off)
	r.Upstream, off = p.decodeRef(c, off)
	r.RectifyDeadline, off = decodeTime(c, off)
	r.UpdatedAt, off = decodeTime(c, off)
	return off
}

func decodeString(c []byte, off int) (string, int) {
	n, k := binary.Uvarint(c[off:])
	off += k
	if n == 0 {
		return "", off
	}
	return unsafe.String(&c[off], int(n)), off + int(n)
}

func (p *packed) decodeRef(c []byte, off int) (string, int) {
	k, w := binary.Uvarint(c[off:])
	off += w
	switch k {
	case 0:
		return "", off
	case 1:
		return decodeString(c, off)
	}
	return p.intern[k-2], off
}

func decodeTime(c []byte, off int) (time.Time, int) {
	if c[off] == 0 {
		return time.Time{}, off + 1
	}
	off++
	sec, k := binary.Varint(c[off:])
	off += k
	ns, k := binary.Uvarint(c[off:])
	return time.Unix(sec, int64(ns)).UTC(), off + k
}
