package store

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// The on-disk values of keys, records and aggregates use a small binary
// encoding rather than JSON: a record is written on every request and read
// back in bulk by the admin API, and the binary form is about a third of the
// JSON size and several times faster to decode. Every such value starts with
// a format byte so an encoding can change later without a schema migration.
// Users stay JSON: they are few, rarely written, and gain fields over time.

// errCorrupt is returned when a stored value does not decode.
var errCorrupt = errors.New("store: corrupt value")

// encoder appends to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) byte(v byte) { e.b = append(e.b, v) }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *encoder) varint(v int64) { e.b = binary.AppendVarint(e.b, v) }

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// time writes a presence byte, then seconds and nanoseconds, so zero times
// ("never") survive and times outside UnixNano's range do too.
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.byte(0)
		return
	}
	e.byte(1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

// decoder reads what encoder wrote. The first failure sticks in err and
// every later read returns a zero value, so callers check err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// int64 reads a uvarint that must fit a non-negative int64.
func (d *decoder) int64() int64 {
	v := d.uvarint()
	if v > math.MaxInt64 {
		d.fail()
		return 0
	}
	return int64(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= uint64(time.Second) {
			d.fail()
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		d.fail()
		return time.Time{}
	}
}

// done reports the sticky error, or errCorrupt when bytes are left over.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return d.err
}
