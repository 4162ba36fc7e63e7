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

// oggPage is an Ogg page of serial with granule and payload.
func oggPage(serial uint32, granule int64, payload []byte) []byte {
	b := []byte("OggS\x00\x00")
	b = binary.LittleEndian.AppendUint64(b, uint64(granule))
	b = binary.LittleEndian.AppendUint32(b, serial)
	b = append(b, make([]byte, 8)...) // sequence, CRC
	b = append(b, 1, byte(len(payload)))
	return append(b, payload...)
}

// testOpus is an Ogg Opus stream: OpusHead with a pre-skip of 312, pages
// of 20 ms, the last at granule.
func testOpus(granule int64) []byte {
	head := append([]byte("OpusHead\x01\x01"), 0x38, 0x01) // pre-skip 312
	head = append(head, 0x80, 0xbb, 0, 0, 0, 0, 0)         // 48 kHz input
	b := oggPage(7, 0, head)
	b = append(b, oggPage(7, 0, []byte("OpusTags"))...)
	for g := int64(960); g < granule; g += 96000 {
		b = append(b, oggPage(7, g, make([]byte, 200))...)
		b = append(b, oggPage(9, g*1000, make([]byte, 20))...) // another stream
	}
	return append(b, oggPage(7, granule, make([]byte, 50))...)
}

// testM4A is an MP4 file: ftyp, then moov with an mvhd of version v.
func testM4A(v byte, scale uint32, dur uint64) []byte {
	box := func(typ string, payload []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+len(payload)))
		return append(append(b, typ...), payload...)
	}
	mvhd := []byte{v, 0, 0, 0}
	if v == 1 {
		mvhd = append(mvhd, make([]byte, 16)...)
		mvhd = binary.BigEndian.AppendUint32(mvhd, scale)
		mvhd = binary.BigEndian.AppendUint64(mvhd, dur)
	} else {
		mvhd = append(mvhd, make([]byte, 8)...)
		mvhd = binary.BigEndian.AppendUint32(mvhd, scale)
		mvhd = binary.BigEndian.AppendUint32(mvhd, uint32(dur))
	}
	mvhd = append(mvhd, make([]byte, 80)...)
	b := box("ftyp", []byte("M4A \x00\x00\x00\x00"))
	b = append(b, box("mdat", make([]byte, 5000))...)
	return append(b, box("moov", append(box("trak", make([]byte, 30)), box("mvhd", mvhd)...))...)
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
		"opus":     {testOpus(48000*61 + 312), 61},
		"m4a":      {testM4A(0, 44100, 44100*75), 75},
		"m4a v1":   {testM4A(1, 1000, 12500), 12.5},
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
		"ogg, no end":    oggPage(7, 0, append([]byte("OpusHead\x01\x01"), make([]byte, 20)...)),
		"m4a, no moov":   testM4A(0, 44100, 44100)[:40],
		"m4a, no scale":  testM4A(0, 0, 100),
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
	f.Add(testOpus(48000 * 2))
	f.Add(testM4A(1, 1000, 5000))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, ok := compressedDuration(b); ok && (d < 0 || math.IsNaN(d) || math.IsInf(d, 0)) {
			t.Fatalf("duration %v", d)
		}
	})
}
