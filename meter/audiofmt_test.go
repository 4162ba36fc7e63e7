package meter

import (
	"encoding/binary"
	"math"
	"testing"
)

// testFLAC is the start of a FLAC file: its STREAMINFO block.
func testFLAC(rate, samples uint64) []byte {
	b := []byte("fLaC")
	b = append(b, 0x80, 0, 0, 34) // last block, STREAMINFO, 34 bytes
	si := make([]byte, 34)
	si[10], si[11], si[12] = byte(rate>>12), byte(rate>>4), byte(rate<<4)|0x02 // 2 channels
	si[13] = 0xf0 | byte(samples>>32)                                          // 16 bits a sample
	binary.BigEndian.PutUint32(si[14:], uint32(samples))
	return append(append(b, si...), make([]byte, 1000)...)
}

// testMP3 is an MPEG-1 Layer III stream at 44.1 kHz: an ID3v2 tag, then
// frames at kbps; with xing > 0, the first frame holds a Xing header
// counting xing frames.
func testMP3(kbps int, frames int, xing uint32) []byte {
	b := []byte{'I', 'D', '3', 4, 0, 0, 0, 0, 0x01, 0x00} // a 128-byte tag
	b = append(b, make([]byte, 128)...)
	bi := map[int]byte{32: 1, 64: 5, 128: 9, 320: 14}[kbps]
	size := 144 * kbps * 1000 / 44100
	for i := range frames {
		fr := make([]byte, size)
		fr[0], fr[1], fr[2], fr[3] = 0xff, 0xfb, bi<<4, 0x40 // MPEG-1, Layer III, no CRC; joint stereo
		if i == 0 && xing > 0 {
			copy(fr[36:], "Xing")
			binary.BigEndian.PutUint32(fr[40:], 1) // frames present
			binary.BigEndian.PutUint32(fr[44:], xing)
		}
		b = append(b, fr...)
	}
	return b
}

func TestCompressedDuration(t *testing.T) {
	for name, c := range map[string]struct {
		f    []byte
		want float64
	}{
		"flac":     {testFLAC(16000, 16000*90+8000), 90.5},
		"flac 48k": {testFLAC(48000, 48000*3), 3},
		"mp3 cbr":  {testMP3(128, 383, 0), 383 * 1152 / 44100.0},
		"mp3 xing": {testMP3(64, 40, 5000), 5000 * 1152 / 44100.0}, // VBR: the count, not the size
	} {
		got, ok := compressedDuration(c.f)
		if !ok || math.Abs(got-c.want) > 0.05*c.want {
			t.Errorf("%s: %v s (%v), want %v", name, got, ok, c.want)
		}
		if s, exact := audioDuration(c.f); exact || s != got {
			t.Errorf("%s: audioDuration %v, %v", name, s, exact)
		}
	}
	for name, f := range map[string][]byte{
		"empty":          nil,
		"ogg":            []byte("OggS\x00\x02" + string(make([]byte, 100))),
		"flac, no rate":  testFLAC(0, 100),
		"mp3, layer II":  {0xff, 0xfd, 0x90, 0x40, 0, 0, 0, 0},
		"mp3, bad rate":  {0xff, 0xfb, 0xf0, 0x40, 0, 0, 0, 0},
		"id3 past end":   {'I', 'D', '3', 4, 0, 0, 0x7f, 0x7f, 0x7f, 0x7f},
		"sync, no frame": {0xff, 0xe0},
	} {
		if d, ok := compressedDuration(f); ok {
			t.Errorf("%s: %v s", name, d)
		}
	}
}

// FuzzCompressedDuration: no header makes the readers fail other than by
// saying so, nor gives a negative or endless duration.
func FuzzCompressedDuration(f *testing.F) {
	f.Add(testFLAC(16000, 1600))
	f.Add(testMP3(128, 3, 0))
	f.Add(testMP3(64, 2, 900))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, ok := compressedDuration(b); ok && (d < 0 || math.IsNaN(d) || math.IsInf(d, 0)) {
			t.Fatalf("duration %v", d)
		}
	})
}
