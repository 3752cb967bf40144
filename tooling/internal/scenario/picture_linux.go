//go:build linux

package scenario

import (
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// Report is what the picture shows: each member's WAL fdatasync latency over
// time from the receiver's histograms, the phases with their fault windows
// shaded, and the moments the leader changed.
type Report struct {
	Members []Member
	Series  map[int]WALSeries // by pid: WALSeriesByPID of what the receiver sent
	Phases  []PhaseResult
	Leaders []LeaderChange
	Slow    []SlowSync // the slow WAL syncs' records: their time by part, under each member's heatmap
}

// Member is a member as the picture names it.
type Member struct {
	Name string
	PID  int
}

// The picture's layout, in SVG user units (pixels at scale 1): a title, a
// strip naming the phases, then one panel per member. Tests find the drawn
// parts by these numbers and the elements' classes.
const (
	picWidth    = 1200
	plotLeft    = 150 // the latency axis's labels are left of it
	plotRight   = picWidth - 20
	titleHeight = 40
	stripHeight = 28 // the phases' names, above the panels
	panelHeight = 170
	causeHeight = 28 // the band under a panel: its slow syncs' time by part, per second
	panelGap    = 24
	axisHeight  = 58 // the time axis and the legend under the last panel
	// The latency axis: 100 µs to 4 s, logarithmic.
	latMin, latMax = 100e-6, 4.0
)

// PictureHeight is the picture's height for n members.
func PictureHeight(n int) int {
	return titleHeight + stripHeight + n*(panelHeight+causeHeight+panelGap) + axisHeight
}

// Colours, named for the tests that look for them in the screenshot.
const (
	FaultColour  = "#f28e2b" // fault windows, at faultOpacity
	faultOpacity = 0.22
	cellColour   = "#1f4e9c" // heatmap cells, opacity by count
	p99Colour    = "#111111"
	leaderColour = "#d62728" // leader changes
	guideColour  = "#2ca02c" // etcd's 10 ms guidance
)

type picture struct {
	b          strings.Builder
	start, end time.Time
}

func (p *picture) x(t time.Time) float64 {
	span := p.end.Sub(p.start).Seconds()
	return plotLeft + (plotRight-plotLeft)*t.Sub(p.start).Seconds()/span
}

// y is the height of latency v seconds in the panel whose top is top.
func y(top float64, v float64) float64 {
	v = min(max(v, latMin), latMax)
	frac := (math.Log(v) - math.Log(latMin)) / (math.Log(latMax) - math.Log(latMin))
	return top + panelHeight*(1-frac)
}

func panelTop(i int) float64 {
	return titleHeight + stripHeight + float64(i*(panelHeight+causeHeight+panelGap))
}

// causeTop is the top of member i's band of causes, under its panel.
func causeTop(i int) float64 { return panelTop(i) + panelHeight + 2 }

// PartColours are the cause band's colours by part, named for the tests.
var PartColours = [tracer.PartCount]string{
	tracer.PartCPU:      "#9e9e9e",
	tracer.PartRunnable: "#8c564b",
	tracer.PartIOQueue:  "#9467bd",
	tracer.PartIODevice: "#1f77b4",
	tracer.PartJournal:  "#e377c2",
	tracer.PartLock:     "#bcbd22",
	tracer.PartThrottle: "#17becf",
	tracer.PartOther:    "#555555",
	tracer.PartIO:       "#6b6ecf",
}

func (p *picture) printf(format string, args ...any) { fmt.Fprintf(&p.b, format, args...) }

// WriteHTML writes the report as one self-contained HTML page: an inline SVG,
// no scripts, no external resources.
func (r Report) WriteHTML(w io.Writer) error {
	if len(r.Phases) == 0 || len(r.Members) == 0 {
		return fmt.Errorf("nothing to draw: %d phases, %d members", len(r.Phases), len(r.Members))
	}
	p := &picture{start: r.Phases[0].Start, end: r.Phases[len(r.Phases)-1].End}
	height := PictureHeight(len(r.Members))
	p.printf("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>etcdebpf: WAL fdatasync latency per member</title>\n")
	p.printf("<style>body{margin:0;background:#fff;font-family:sans-serif}svg text{font-size:12px;fill:#333}</style></head><body>\n")
	p.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", picWidth, height, picWidth, height)
	p.printf(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", picWidth, height)
	p.printf(`<text x="%d" y="24" style="font-size:16px;font-weight:bold">WAL fdatasync latency per member, from the receiver's histograms (every call, per second)</text>`+"\n", plotLeft)
	r.drawPhases(p, height)
	for i, m := range r.Members {
		r.drawMember(p, i, m)
	}
	r.drawLeaderChanges(p, height)
	p.drawTimeAxis(height)
	p.printf("</svg>\n</body></html>\n")
	_, err := io.WriteString(w, p.b.String())
	return err
}

// drawPhases names every phase in the strip and shades the fault windows
// from the strip down through every panel.
func (r Report) drawPhases(p *picture, height int) {
	stripTop := float64(titleHeight)
	bottom := float64(height - axisHeight)
	for _, ph := range r.Phases {
		x0, x1 := p.x(ph.Start), p.x(ph.End)
		if ph.Fault != NoFault {
			target := ph.Target
			p.printf(`<rect class="fault" data-phase="%s" data-fault="%s" data-target="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f"/>`+"\n",
				html.EscapeString(ph.Name), html.EscapeString(ph.Fault.String()), html.EscapeString(target),
				x0, stripTop, x1-x0, bottom-stripTop, FaultColour, faultOpacity)
		}
		label := ph.Name
		if ph.Target != "" {
			label += " (" + ph.Target + ")"
		}
		p.printf(`<text class="phase" x="%.1f" y="%.1f">%s</text>`+"\n", x0+4, stripTop+18, html.EscapeString(label))
		p.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#bbbbbb" stroke-width="1"/>`+"\n", x0, stripTop, x0, bottom)
	}
}

// drawMember draws a member's panel: a heatmap of its WAL fdatasyncs per
// collection interval and latency bucket, its p99 and p50 over time, the
// latency axis and etcd's 10 ms guidance.
func (r Report) drawMember(p *picture, i int, m Member) {
	top := panelTop(i)
	p.printf(`<g class="member" id="member-%s" data-member="%s" data-pid="%d">`+"\n", html.EscapeString(m.Name), html.EscapeString(m.Name), m.PID)
	p.printf(`<rect x="%d" y="%.1f" width="%d" height="%d" fill="none" stroke="#888888"/>`+"\n", plotLeft, top, plotRight-plotLeft, panelHeight)
	p.printf(`<text x="10" y="%.1f" style="font-size:14px;font-weight:bold">%s</text>`+"\n", top+16, html.EscapeString(m.Name))
	p.printf(`<text x="10" y="%.1f">pid %d</text>`+"\n", top+32, m.PID)
	for _, v := range []float64{1e-3, 10e-3, 100e-3, 1} {
		yy := y(top, v)
		p.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", plotLeft, yy, plotRight, yy)
		p.printf(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", plotLeft-6, yy+4, latencyLabel(v))
	}
	gy := y(top, 10e-3)
	p.printf(`<line class="guidance" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="6 4"/>`+"\n", plotLeft, gy, plotRight, gy, guideColour)

	series := r.Series[m.PID]
	var p50s, p99s []string
	for k := 1; k < len(series); k++ {
		prev, cur := series[k-1], series[k]
		if cur.At.Before(p.start) || prev.At.After(p.end) {
			continue
		}
		delta := cur.Buckets.Since(prev.Buckets)
		if cur.Count-prev.Count <= 0 {
			continue
		}
		x0, x1 := p.x(maxTime(prev.At, p.start)), p.x(minTime(cur.At, p.end))
		for octave, n := range octaves(delta) {
			lower, upper := math.Exp2(float64(octave-1)), math.Exp2(float64(octave))
			if upper <= latMin || lower >= latMax {
				continue
			}
			opacity := 0.3 + 0.7*math.Min(1, math.Log1p(n)/math.Log1p(100)) // a throttled member's few syncs a second show too
			p.printf(`<rect class="cell" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f"/>`+"\n",
				x0, y(top, upper), x1-x0+0.5, y(top, lower)-y(top, upper), cellColour, opacity) // +0.5: no seam between seconds
		}
		mid := (x0 + x1) / 2
		if q, ok := delta.Quantile(0.5); ok {
			p50s = append(p50s, fmt.Sprintf("%.1f,%.1f", mid, y(top, q)))
		}
		if q, ok := delta.Quantile(0.99); ok {
			p99s = append(p99s, fmt.Sprintf("%.1f,%.1f", mid, y(top, q)))
		}
	}
	p.printf(`<polyline class="p50" points="%s" fill="none" stroke="#777777" stroke-width="1.5"/>`+"\n", strings.Join(p50s, " "))
	p.printf(`<polyline class="p99" points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(p99s, " "), p99Colour)
	r.drawCauses(p, i, m)
	p.printf("</g>\n")
}

// drawCauses draws, under a member's panel, a band of its slow WAL syncs' time
// by part, one stacked column a second: which wait took the time of the syncs
// the heatmap shows slow.
func (r Report) drawCauses(p *picture, i int, m Member) {
	top := causeTop(i)
	p.printf(`<rect x="%d" y="%.1f" width="%d" height="%d" fill="none" stroke="#cccccc"/>`+"\n", plotLeft, top, plotRight-plotLeft, causeHeight)
	p.printf(`<text x="%d" y="%.1f" text-anchor="end">slow syncs by cause</text>`+"\n", plotLeft-6, top+causeHeight/2+4)
	seconds := map[int64]*[tracer.PartCount]int64{}
	for _, s := range r.Slow {
		if s.PID != m.PID || s.At.Before(p.start) || s.At.After(p.end) {
			continue
		}
		sec := s.At.Unix()
		if seconds[sec] == nil {
			seconds[sec] = &[tracer.PartCount]int64{}
		}
		for part, ns := range s.Parts {
			seconds[sec][part] += ns
		}
	}
	for _, sec := range slices.Sorted(maps.Keys(seconds)) {
		parts := seconds[sec]
		var total int64
		for _, ns := range parts {
			total += ns
		}
		if total == 0 {
			continue
		}
		x0, x1 := p.x(time.Unix(sec, 0)), p.x(time.Unix(sec+1, 0))
		yy := top + causeHeight
		for part, ns := range parts {
			if ns == 0 {
				continue
			}
			h := causeHeight * float64(ns) / float64(total)
			yy -= h
			p.printf(`<rect class="cause" data-part="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
				tracer.Part(part), x0, yy, x1-x0+0.5, h, PartColours[part])
		}
	}
}

// drawLeaderChanges marks each election with a line through every panel,
// labelled with the leader it ended with, and a bar along the top of each
// member's panel while it led.
func (r Report) drawLeaderChanges(p *picture, height int) {
	for k, c := range r.Leaders {
		// Every entry that names a leader starts its bar, the end of an election too.
		until := p.end
		if k+1 < len(r.Leaders) {
			until = r.Leaders[k+1].At
		}
		if i := slices.IndexFunc(r.Members, func(m Member) bool { return m.Name == c.Leader }); i >= 0 && until.After(p.start) {
			top := panelTop(i)
			x0, x1 := p.x(maxTime(c.At, p.start)), p.x(minTime(until, p.end))
			p.printf(`<rect class="leading" data-member="%s" x="%.1f" y="%.1f" width="%.1f" height="4" fill="%s"/>`+"\n", html.EscapeString(c.Leader), x0, top, x1-x0, leaderColour)
		}
		if k > 0 && r.Leaders[k-1].Leader == "" {
			continue // the election's end: its line is drawn with its start
		}
		if k == 0 || c.At.Before(p.start) || c.At.After(p.end) {
			continue // the first entry is who led at the start: no change
		}
		leader := c.Leader
		if leader == "" && k+1 < len(r.Leaders) {
			leader = r.Leaders[k+1].Leader
		}
		x := p.x(c.At)
		p.printf(`<line class="leader-change" data-leader="%s" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="4 3"/>`+"\n",
			html.EscapeString(leader), x, titleHeight+stripHeight, x, height-axisHeight, leaderColour)
		p.printf(`<text x="%.1f" y="%d" style="fill:%s">new leader: %s</text>`+"\n", x+3, titleHeight+stripHeight+16, leaderColour, html.EscapeString(leader))
	}
}

func (p *picture) drawTimeAxis(height int) {
	base := float64(height - axisHeight)
	span := p.end.Sub(p.start)
	for s := time.Duration(0); s <= span; s += 10 * time.Second {
		x := p.x(p.start.Add(s))
		p.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888888"/>`+"\n", x, base, x, base+5)
		p.printf(`<text x="%.1f" y="%.1f" text-anchor="middle">%d s</text>`+"\n", x, base+18, int(s.Seconds()))
	}
	p.printf(`<text x="%d" y="%.1f">shaded: fault windows · red bar: leading · dashed red: leader changes · black: p99, grey: p50 per second · blue: calls per octave · dashed green: etcd's 10 ms guidance</text>`+"\n", plotLeft, base+34)
	p.printf(`<text x="%d" y="%.1f">band, the slow syncs' time by part:`, plotLeft, base+50)
	for part := range tracer.PartCount {
		if part == tracer.PartIO {
			continue // only without the disks' view
		}
		p.printf(` <tspan style="fill:%s;font-weight:bold">■</tspan> %s`, PartColours[part], part)
	}
	p.printf("</text>\n")
}

// octaves sums a histogram's calls by octave, as etcd's buckets are: key k
// counts the calls in (2^(k-1), 2^k] seconds. The receiver's buckets (8 an
// octave) nest in them exactly; a heatmap row an octave tall is readable.
func octaves(h etcdtest.Histogram) map[int]float64 {
	out := map[int]float64{}
	below := 0.0
	for _, le := range slices.Sorted(maps.Keys(h)) {
		if n := h[le] - below; n > 0 && !math.IsInf(le, 1) {
			out[int(math.Ceil(math.Log2(le)-1e-9))] += n
		}
		below = h[le]
	}
	return out
}

func latencyLabel(v float64) string {
	switch {
	case v >= 1:
		return fmt.Sprintf("%.0f s", v)
	case v >= 1e-3:
		return fmt.Sprintf("%.0f ms", v*1e3)
	}
	return fmt.Sprintf("%.0f µs", v*1e6)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
