package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"
)

func sameColor(a color.Color, b color.RGBA) bool {
	r, g, bl, al := a.RGBA()
	r2, g2, b2, a2 := b.RGBA()
	return r == r2 && g == g2 && bl == b2 && al == a2
}

// columnHeight returns how many pixels of column x have colour c.
func columnHeight(img image.Image, x int, c color.RGBA) int {
	n := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		if sameColor(img.At(x, y), c) {
			n++
		}
	}
	return n
}

func TestWritePNG(t *testing.T) {
	c := &BarChart{
		Title: "latency", Unit: "µs", Groups: []string{"p50", "p99"},
		Series: []Series{{Name: "plain", Values: []float64{100, 400}}, {Name: "gate", Values: []float64{200, math.NaN()}}},
	}
	var buf bytes.Buffer
	if err := c.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("decoding our PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != chartW || b.Dy() != chartH {
		t.Fatalf("size %v, want %dx%d", b, chartW, chartH)
	}
	if !sameColor(img.At(1, 1), colWhite) {
		t.Errorf("background at (1,1) is %v, want white", img.At(1, 1))
	}
	// Locate each bar by scanning the plot area for its colour, and check
	// that the heights are proportional to the values (axis top 500).
	plotH := chartH - marginT - marginB
	groupW := (chartW - marginL - marginR) / 2
	barW := groupW * 3 / 4 / 2
	x0 := marginL + (groupW-barW*2)/2
	tests := []struct {
		x     int
		color color.RGBA
		value float64
	}{
		{x0 + barW/2, palette[0], 100},
		{x0 + barW + barW/2, palette[1], 200},
		{x0 + groupW + barW/2, palette[0], 400},
		{x0 + groupW + barW + barW/2, palette[1], 0}, // NaN: no bar
	}
	for _, tt := range tests {
		want := int(math.Round(tt.value / 500 * float64(plotH)))
		if got := columnHeight(img, tt.x, tt.color); math.Abs(float64(got-want)) > 2 {
			t.Errorf("bar at x=%d: %d pixels of its colour, want about %d", tt.x, got, want)
		}
	}
	// The legend has a swatch of each colour.
	for i := range c.Series {
		if !sameColor(img.At(chartW-marginR+25, marginT+i*30+5), palette[i]) {
			t.Errorf("legend swatch %d missing", i)
		}
	}
}

func TestWritePNGErrors(t *testing.T) {
	for _, c := range []*BarChart{
		{Groups: []string{"p50"}},
		{Series: []Series{{Name: "a"}}},
		{Groups: []string{"p50", "p99"}, Series: []Series{{Name: "a", Values: []float64{1}}}},
	} {
		if err := c.WritePNG(&bytes.Buffer{}); err == nil {
			t.Errorf("WritePNG(%+v) succeeded", c)
		}
	}
}

func TestNiceCeil(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{
		{0, 1}, {-3, 1}, {math.NaN(), 1}, {math.Inf(1), 1},
		{1, 1}, {1.01, 2}, {2, 2}, {3, 5}, {5, 5}, {7, 10}, {10, 10},
		{420, 500}, {0.03, 0.05}, {1234, 2000},
	} {
		if got := niceCeil(tt.in); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("niceCeil(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDrawText(t *testing.T) {
	ink := color.RGBA{0, 0, 0, 255}
	count := func(s string, scale int) (n int, bounds image.Rectangle) {
		img := image.NewRGBA(image.Rect(0, 0, 200, 50))
		DrawText(img, 3, 4, s, scale, ink)
		for y := range 50 {
			for x := range 200 {
				if sameColor(img.At(x, y), ink) {
					n++
					bounds = bounds.Union(image.Rect(x, y, x+1, y+1))
				}
			}
		}
		return n, bounds
	}
	// "1" has 1+2+1+1+1+1+3 = 10 ink pixels ('#' in its rows).
	if n, _ := count("1", 1); n != 10 {
		t.Errorf(`"1" drew %d pixels, want 10`, n)
	}
	if n, _ := count("1", 2); n != 10*4 {
		t.Errorf(`"1" at scale 2 drew %d pixels, want 40`, n)
	}
	if n, _ := count(" ", 1); n != 0 {
		t.Errorf("space drew %d pixels", n)
	}
	// Lower case draws like upper case; µ has its own glyph.
	a, _ := count("abc", 1)
	b, _ := count("ABC", 1)
	if a != b || a == 0 {
		t.Errorf("abc drew %d pixels, ABC %d", a, b)
	}
	if n, _ := count("µ", 1); n == 0 {
		t.Error("µ drew nothing")
	}
	// An unknown rune draws a box (20 pixels), not nothing.
	if n, _ := count("€", 1); n != 20 {
		t.Errorf("unknown rune drew %d pixels, want the 20-pixel box", n)
	}
	// Ink stays within the advertised width and height.
	s := "P99.9 (µs)"
	_, bounds := count(s, 2)
	if bounds.Min.X < 3 || bounds.Max.X > 3+TextWidth(s, 2) || bounds.Min.Y < 4 || bounds.Max.Y > 4+TextHeight(2) {
		t.Errorf("ink %v outside the text box at (3,4) of %dx%d", bounds, TextWidth(s, 2), TextHeight(2))
	}
	if TextWidth("", 3) != 0 || TextWidth("ab", 1) != 11 {
		t.Errorf("TextWidth: %d, %d", TextWidth("", 3), TextWidth("ab", 1))
	}
	// Every glyph is 7 rows of 5 columns.
	for r, g := range glyphs {
		for _, row := range g {
			if len(row) != glyphW {
				t.Errorf("glyph %q has a row %q of width %d", r, row, len(row))
			}
		}
	}
}

func BenchmarkWritePNG(b *testing.B) {
	c := &BarChart{
		Title: "latency", Unit: "µs", Groups: []string{"p50", "p90", "p99", "p99.9"},
		Series: []Series{{"plain", []float64{1, 2, 3, 4}}, {"gate", []float64{2, 3, 4, 5}}, {"direct", []float64{1, 1, 2, 2}}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.WritePNG(&bytes.Buffer{}); err != nil {
			b.Fatal(err)
		}
	}
}
