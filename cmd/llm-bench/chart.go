package main

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"
)

// Series is one bar colour of a chart: a path and its value per group.
type Series struct {
	Name   string
	Values []float64 // one per group, in the chart's unit
}

// BarChart is a grouped bar chart: for each group (a percentile), one bar
// per series (a path).
type BarChart struct {
	Title  string
	Unit   string   // the y axis' unit, printed with the labels
	Note   string   // small print under the x axis, "" for none
	Groups []string // x axis labels
	Series []Series
}

// Chart geometry, in pixels.
const (
	chartW, chartH        = 960, 540
	marginL, marginR      = 90, 170
	marginT, marginB      = 60, 60
	labelScale, textScale = 2, 1
)

var (
	colWhite = color.RGBA{255, 255, 255, 255}
	colInk   = color.RGBA{30, 30, 30, 255}
	colGrid  = color.RGBA{220, 220, 220, 255}
	palette  = []color.RGBA{
		{78, 121, 167, 255}, // blue
		{242, 142, 43, 255}, // orange
		{89, 161, 79, 255},  // green
		{176, 122, 161, 255},
		{225, 87, 89, 255},
	}
)

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so that the axis
// ends on a round number.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// WritePNG draws c and encodes it as PNG.
func (c *BarChart) WritePNG(w io.Writer) error {
	if len(c.Groups) == 0 || len(c.Series) == 0 {
		return errors.New("chart: no data")
	}
	for _, s := range c.Series {
		if len(s.Values) != len(c.Groups) {
			return fmt.Errorf("chart: series %q has %d values for %d groups", s.Name, len(s.Values), len(c.Groups))
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	draw.Draw(img, img.Bounds(), image.NewUniform(colWhite), image.Point{}, draw.Src)

	top := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) {
				top = math.Max(top, v)
			}
		}
	}
	top = niceCeil(top)
	plot := image.Rect(marginL, marginT, chartW-marginR, chartH-marginB)
	yOf := func(v float64) int {
		return plot.Max.Y - int(math.Round(v/top*float64(plot.Dy())))
	}

	DrawText(img, (chartW-TextWidth(c.Title, labelScale))/2, 20, c.Title, labelScale, colInk)

	// Horizontal grid lines with their values.
	const ticks = 5
	for i := 0; i <= ticks; i++ {
		v := top * float64(i) / ticks
		y := yOf(v)
		fill(img, image.Rect(plot.Min.X, y, plot.Max.X, y+1), colGrid)
		label := strconv.FormatFloat(v, 'f', -1, 64)
		DrawText(img, plot.Min.X-8-TextWidth(label, labelScale), y-TextHeight(labelScale)/2, label, labelScale, colInk)
	}
	unit := c.Unit
	DrawText(img, plot.Min.X-8-TextWidth(unit, labelScale), plot.Min.Y-TextHeight(labelScale)-14, unit, labelScale, colInk)

	// Bars.
	groupW := plot.Dx() / len(c.Groups)
	barW := groupW * 3 / 4 / len(c.Series)
	for g, name := range c.Groups {
		x0 := plot.Min.X + g*groupW + (groupW-barW*len(c.Series))/2
		for si, s := range c.Series {
			v := s.Values[g]
			if math.IsNaN(v) {
				continue
			}
			bx := x0 + si*barW
			fill(img, image.Rect(bx+1, yOf(v), bx+barW-1, plot.Max.Y), palette[si%len(palette)])
			val := fmtNum(v)
			DrawText(img, bx+(barW-TextWidth(val, textScale))/2, yOf(v)-TextHeight(textScale)-3, val, textScale, colInk)
		}
		DrawText(img, plot.Min.X+g*groupW+(groupW-TextWidth(name, labelScale))/2, plot.Max.Y+12, name, labelScale, colInk)
	}
	if c.Note != "" {
		DrawText(img, chartW-marginR-TextWidth(c.Note, textScale), chartH-TextHeight(textScale)-8, c.Note, textScale, colInk)
	}
	// Axes on top of the bars.
	fill(img, image.Rect(plot.Min.X-1, plot.Min.Y, plot.Min.X+1, plot.Max.Y+1), colInk)
	fill(img, image.Rect(plot.Min.X-1, plot.Max.Y, plot.Max.X, plot.Max.Y+2), colInk)

	// Legend.
	lx, ly := plot.Max.X+20, plot.Min.Y
	for si, s := range c.Series {
		y := ly + si*30
		fill(img, image.Rect(lx, y, lx+18, y+14), palette[si%len(palette)])
		DrawText(img, lx+26, y, s.Name, labelScale, colInk)
	}
	return png.Encode(w, img)
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}
