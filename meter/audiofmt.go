package meter

import (
	"bytes"
	"encoding/binary"
	"math"
)

// compressedDuration reads the duration of compressed audio from its
// headers: FLAC's STREAMINFO (samples over the sample rate), Ogg Opus and
// Vorbis (the last page's granule position), MP4/M4A (moov/mvhd), MP3's
// first frame (a Xing, Info or VBRI header's frame count, else the
// constant bitrate over the size after the ID3v2 tag). ok is false for
// other formats (WebM among them) and for headers that do not hold
// together; the caller then estimates from the size.
func compressedDuration(f []byte) (seconds float64, ok bool) {
	if len(f) >= 42 && string(f[:4]) == "fLaC" && f[4]&0x7f == 0 { // STREAMINFO comes first
		si := f[8:]
		rate := uint64(si[10])<<12 | uint64(si[11])<<4 | uint64(si[12])>>4
		samples := uint64(si[13]&0x0f)<<32 | uint64(binary.BigEndian.Uint32(si[14:18]))
		if rate == 0 || samples == 0 {
			return 0, false
		}
		return float64(samples) / float64(rate), true
	}
	if d, ok := oggDuration(f); ok {
		return d, true
	}
	if d, ok := mp4Duration(f); ok {
		return d, true
	}
	return mp3Duration(f)
}

// oggDuration reads an Ogg Opus or Vorbis file's duration: the granule
// position of its stream's last page (samples at 48 kHz for Opus, less its
// pre-skip; at the identification header's rate for Vorbis).
func oggDuration(f []byte) (float64, bool) {
	if len(f) < 28 || string(f[:4]) != "OggS" {
		return 0, false
	}
	serial := binary.LittleEndian.Uint32(f[14:])
	body := 27 + int(f[26])
	if body+20 > len(f) {
		return 0, false
	}
	var rate, skip float64
	switch id := f[body:]; {
	case string(id[:8]) == "OpusHead":
		rate, skip = 48000, float64(binary.LittleEndian.Uint16(id[10:]))
	case string(id[:7]) == "\x01vorbis":
		rate = float64(binary.LittleEndian.Uint32(id[12:]))
	default:
		return 0, false
	}
	// The last page of the stream: search back from the end.
	for end := len(f); end > 0; {
		i := bytes.LastIndex(f[:end], []byte("OggS"))
		if i < 0 || len(f)-i > 1<<20 {
			break
		}
		if i+27 <= len(f) && binary.LittleEndian.Uint32(f[i+14:]) == serial {
			granule := int64(binary.LittleEndian.Uint64(f[i+6:]))
			if granule > 0 && rate > 0 && float64(granule) > skip {
				return (float64(granule) - skip) / rate, true
			}
		}
		end = i
	}
	return 0, false
}

// mp4Duration reads an MP4/M4A file's duration from its movie header
// (moov/mvhd): the duration over the timescale.
func mp4Duration(f []byte) (float64, bool) {
	if len(f) < 12 || string(f[4:8]) != "ftyp" {
		return 0, false
	}
	moov, ok := mp4Box(f, "moov")
	if !ok {
		return 0, false
	}
	mvhd, ok := mp4Box(moov, "mvhd")
	if !ok || len(mvhd) < 20 {
		return 0, false
	}
	var scale, dur uint64
	if mvhd[0] == 1 { // version 1: 64-bit times
		if len(mvhd) < 32 {
			return 0, false
		}
		scale, dur = uint64(binary.BigEndian.Uint32(mvhd[20:])), binary.BigEndian.Uint64(mvhd[24:])
	} else {
		scale, dur = uint64(binary.BigEndian.Uint32(mvhd[12:])), uint64(binary.BigEndian.Uint32(mvhd[16:]))
	}
	if scale == 0 || dur == 0 || dur == math.MaxUint32 || dur == math.MaxUint64 {
		return 0, false
	}
	return float64(dur) / float64(scale), true
}

// mp4Box returns the payload of the first box of type typ among the boxes
// in b.
func mp4Box(b []byte, typ string) ([]byte, bool) {
	for len(b) >= 8 {
		size, head := uint64(binary.BigEndian.Uint32(b)), uint64(8)
		switch size {
		case 0:
			size = uint64(len(b))
		case 1:
			if len(b) < 16 {
				return nil, false
			}
			size, head = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < head || size > uint64(len(b)) {
			return nil, false
		}
		if string(b[4:8]) == typ {
			return b[head:size], true
		}
		b = b[size:]
	}
	return nil, false
}

// MPEG audio tables: bitrates (kbit/s) of Layer III by version (MPEG-1,
// MPEG-2 and 2.5), sample rates by version.
var (
	mp3Bitrates = [2][16]int{
		{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0},
		{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0},
	}
	mp3Rates = [3][3]int{{44100, 48000, 32000}, {22050, 24000, 16000}, {11025, 12000, 8000}}
)

func mp3Duration(f []byte) (float64, bool) {
	off := 0
	if len(f) >= 10 && string(f[:3]) == "ID3" { // ID3v2: a 10-byte header, a syncsafe size
		off = 10 + int(f[6]&0x7f)<<21 | int(f[7]&0x7f)<<14 | int(f[8]&0x7f)<<7 | int(f[9]&0x7f)
		if f[5]&0x10 != 0 {
			off += 10 // a footer
		}
	}
	if off+4 > len(f) || f[off] != 0xff || f[off+1]&0xe0 != 0xe0 {
		return 0, false
	}
	h := f[off:]
	ver := (h[1] >> 3) & 3 // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
	layer := (h[1] >> 1) & 3
	bi, ri := int(h[2]>>4), int((h[2]>>2)&3)
	if ver == 1 || layer != 1 || bi == 0 || bi == 15 || ri == 3 { // Layer III only
		return 0, false
	}
	vi, bt := 0, 0 // MPEG-1
	switch ver {
	case 2:
		vi, bt = 1, 1
	case 0:
		vi, bt = 2, 1
	}
	rate, bitrate := mp3Rates[vi][ri], mp3Bitrates[bt][bi]*1000
	samplesPerFrame := 1152
	if ver != 3 {
		samplesPerFrame = 576
	}
	side := 32 // Layer III side information, after the 4-byte header
	mono := h[3]>>6 == 3
	switch {
	case ver == 3 && mono:
		side = 17
	case ver != 3 && !mono:
		side = 17
	case ver != 3 && mono:
		side = 9
	}
	if x := 4 + side; x+12 <= len(h) && (string(h[x:x+4]) == "Xing" || string(h[x:x+4]) == "Info") && h[x+7]&1 != 0 {
		frames := binary.BigEndian.Uint32(h[x+8:])
		if frames > 0 {
			return float64(frames) * float64(samplesPerFrame) / float64(rate), true
		}
	}
	if 36+18 <= len(h) && string(h[36:40]) == "VBRI" {
		frames := binary.BigEndian.Uint32(h[36+14:])
		if frames > 0 {
			return float64(frames) * float64(samplesPerFrame) / float64(rate), true
		}
	}
	return float64(len(f)-off) * 8 / float64(bitrate), true
}
