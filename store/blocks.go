package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Records are kept in blocks (schema 4): an entry of the records bucket holds
// a run of records in key order, under the key of its first one. A bbolt
// Put costs about two microseconds (a walk from the root, allocations, the
// leaf's copy and write), so one per record was the largest part of a
// commit; a block of blockRecords records costs one.
//
// The invariant that keeps the bucket sorted record by record: every record
// of an entry sorts before the next entry's key. Reads walk entries in key
// order and each entry's records in order, and get all records in order.
// Commit keeps it: a record later than every stored one joins the last
// entry, or new entries after it; an earlier one (a request that started
// before the last stored record, and ended after it) joins the entry it
// falls in, rewritten. Entries written before schema 4 hold one record (the
// format byte of a record), and read as blocks of one.
//
// A block's value: blockFormat, the count (uvarint), then each record's
// 16-byte key, its length (uvarint) and its value as appendRecord writes it.
const blockFormat = 2

// A commit fills blocks up to blockRecords records or blockBytes(page size)
// bytes, whichever comes first; an entry rewritten for late records is
// split only past twice those.
const blockRecords = 32

// blockBytes bounds a block's encoded size so that two blocks and their
// leaf headers fill one page. bbolt never splits a leaf of four entries or
// fewer, so blocks much larger than half a page make leaves of two or three
// pages, which leave runs of free pages that later leaves do not fit: the
// file grows. (Measured with blocks of 2.4 KB on 4 KiB pages: 6 % of the
// file free, 25 % more bytes per record than one record per entry.)
func blockBytes(pageSize int) int {
	const leafHeader, element = 16, 16 // bbolt's page header, leaf element
	return (pageSize - leafHeader - 2*(element+16)) / 2
}

// stored is a record as its entry holds it: its key and its value.
type stored struct{ key, val []byte }

// parseEntry appends the records of a records bucket entry to dst, in key
// order. The slices point into k and v.
func parseEntry(dst []stored, k, v []byte) ([]stored, error) {
	if len(k) != 16 || len(v) == 0 {
		return dst, errCorrupt
	}
	if v[0] == recordFormat {
		return append(dst, stored{k, v}), nil
	}
	if v[0] != blockFormat {
		return dst, errCorrupt
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n == 0 || n > uint64(len(v)) {
		return dst, errCorrupt
	}
	rest := v[1+w:]
	first := len(dst)
	for range n {
		if len(rest) < 17 {
			return dst[:first], errCorrupt
		}
		key := rest[:16:16]
		l, w := binary.Uvarint(rest[16:])
		if w <= 0 || l == 0 || l > uint64(len(rest)-16-w) {
			return dst[:first], errCorrupt
		}
		val := rest[16+w : 16+w+int(l) : 16+w+int(l)]
		rest = rest[16+w+int(l):]
		if len(dst) == first && !bytes.Equal(key, k) || len(dst) > first && bytes.Compare(dst[len(dst)-1].key, key) >= 0 {
			return dst[:first], errCorrupt
		}
		dst = append(dst, stored{key, val})
	}
	if len(rest) != 0 {
		return dst[:first], errCorrupt
	}
	return dst, nil
}

// appendBlock encodes recs as one block.
func appendBlock(b []byte, recs []stored) []byte {
	b = append(b, blockFormat)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, r := range recs {
		b = append(b, r.key...)
		b = binary.AppendUvarint(b, uint64(len(r.val)))
		b = append(b, r.val...)
	}
	return b
}

// putBlocks writes recs (in key order, all of them before the key of the
// entry that follows) as entries of up to maxRecords records or maxBytes
// encoded bytes each (at least one record); each takes the key of its
// first record. bbolt references the values until the transaction ends, so
// they are encoded into a buffer of their own, only ever appended to.
func putBlocks(rb *bolt.Bucket, recs []stored, maxRecords, maxBytes int) error {
	size := 0
	for _, r := range recs {
		size += 16 + binary.MaxVarintLen32 + len(r.val)
	}
	buf := make([]byte, 0, size+(1+binary.MaxVarintLen32)*(len(recs)/maxRecords+1))
	for len(recs) > 0 {
		n, size := 0, 1+binary.MaxVarintLen16 // the format byte and count
		for n < len(recs) && n < maxRecords {
			size += storedSize(recs[n])
			if n > 0 && size > maxBytes {
				break
			}
			n++
		}
		start := len(buf)
		buf = appendBlock(buf, recs[:n])
		if err := rb.Put(recs[0].key, buf[start:len(buf):len(buf)]); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

// putRecords writes a commit's records, sorted by key (fresh sequence
// numbers: none is stored yet), keeping the bucket's invariant.
func putRecords(rb *bolt.Bucket, recs []stored, maxBytes int) error {
	c := rb.Cursor()
	var scratch []stored
	for len(recs) > 0 {
		// The entry the first record falls in (the last one with a key
		// before it) and the key of the one after.
		next, _ := c.Seek(recs[0].key)
		next = bytes.Clone(next)
		var k, v []byte
		if next == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		// The records before the next entry go together.
		n := len(recs)
		if next != nil {
			n = 0
			for n < len(recs) && bytes.Compare(recs[n].key, next) < 0 {
				n++
			}
		}
		group := recs[:n]
		recs = recs[n:]
		var err error
		if k != nil {
			scratch, err = parseEntry(scratch[:0], k, v)
		}
		if k == nil || err != nil {
			// Before every entry, or after one that does not decode (its
			// records are lost to reads already; it is left as it is): new
			// entries.
			if err := putBlocks(rb, group, blockRecords, maxBytes); err != nil {
				return err
			}
			continue
		}
		// Into the entry: merged, and written again (its first record stays
		// first, so its key stays). Inside the bucket an entry that grows
		// past twice the usual bounds splits; past the last entry, records
		// after its last one fill it to the usual bounds, then new entries.
		if next != nil {
			if err := putBlocks(rb, mergeStored(scratch, group), 2*blockRecords, 2*maxBytes); err != nil {
				return err
			}
			continue
		}
		if len(scratch) < blockRecords && entrySize(scratch) < maxBytes {
			if err := putBlocks(rb, mergeStored(scratch, group), blockRecords, maxBytes); err != nil {
				return err
			}
			continue
		}
		// A full last entry takes only the records late inside it.
		inside := 0
		for inside < len(group) && bytes.Compare(group[inside].key, scratch[len(scratch)-1].key) < 0 {
			inside++
		}
		if inside > 0 {
			if err := putBlocks(rb, mergeStored(scratch, group[:inside]), 2*blockRecords, 2*maxBytes); err != nil {
				return err
			}
		}
		if err := putBlocks(rb, group[inside:], blockRecords, maxBytes); err != nil {
			return err
		}
	}
	return nil
}

// storedSize is the bytes a record takes in a block.
func storedSize(r stored) int {
	return 16 + uvarintLen(uint64(len(r.val))) + len(r.val)
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// entrySize is the bytes recs take as a block.
func entrySize(recs []stored) int {
	n := 1 + binary.MaxVarintLen16
	for _, r := range recs {
		n += storedSize(r)
	}
	return n
}

// mergeStored merges two key-ordered runs into a new slice.
func mergeStored(a, b []stored) []stored {
	out := make([]stored, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if bytes.Compare(a[0].key, b[0].key) < 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// entryError names a records entry that does not decode.
func entryError(k []byte) error {
	return fmt.Errorf("store: record %x: %w", k, errCorrupt)
}
