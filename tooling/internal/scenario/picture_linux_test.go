//go:build linux

package scenario

import (
	"context"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/bpftest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/tracer"
)

// syntheticReport is a minute of three members: etcd-1's syncs take 300 ms
// while its disk is throttled (20 s to 40 s), every other sync 1 ms, and its
// slow syncs' records say they waited in the I/O queue; the leader moves from
// etcd-1 to etcd-2 through an election from 30 s to 31 s.
func syntheticReport(t0 time.Time) Report {
	members := []Member{{"etcd-1", 101}, {"etcd-2", 102}, {"etcd-3", 103}}
	series := map[int]WALSeries{}
	for _, m := range members {
		fast, slow := 0.0, 0.0
		for s := 0; s <= 60; s++ {
			if m.Name == "etcd-1" && s > 20 && s <= 40 {
				slow += 3
			} else {
				fast += 100
			}
			series[m.PID] = append(series[m.PID], WALPoint{At: t0.Add(time.Duration(s) * time.Second), Count: fast + slow,
				Buckets: etcdtest.Histogram{0.001: fast, 0.25: fast, 0.35: fast + slow, math.Inf(1): fast + slow}, Scale: 3})
		}
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var slow []SlowSync
	for s := 21; s <= 40; s++ {
		for range 3 {
			sync := SlowSync{PID: 101, At: at(s), DurationNs: 300_000_000, Cause: "io_queue"}
			sync.Parts[tracer.PartIOQueue], sync.Parts[tracer.PartIODevice], sync.Parts[tracer.PartCPU] = 280_000_000, 15_000_000, 5_000_000
			slow = append(slow, sync)
		}
	}
	return Report{
		Slow:    slow,
		Members: members,
		Series:  series,
		Phases: []PhaseResult{
			{Phase: Phase{Name: "healthy"}, Start: at(0), End: at(20)},
			{Phase: Phase{Name: "leader's disk throttled", Fault: DiskThrottle}, Target: "etcd-1", Start: at(20), End: at(40)},
			{Phase: Phase{Name: "recovered"}, Start: at(40), End: at(60)},
		},
		Leaders: []LeaderChange{{At: at(0), Leader: "etcd-1"}, {At: at(30), Leader: ""}, {At: at(31), Leader: "etcd-2"}},
	}
}

// The picture renders in a real headless Chromium: its DOM holds the three
// members, the fault window and the leader change, and the screenshot's
// pixels show the shaded window where the layout puts it, etcd-1's slow
// syncs inside it, and no shade outside.
func TestPictureInChromium(t *testing.T) {
	if _, err := Chromium(); err != nil {
		bpftest.SkipOrFail(t, err.Error())
	}
	t0 := time.Unix(1_800_000_000, 0)
	r := syntheticReport(t0)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	require.NoError(t, err)
	require.NoError(t, r.WriteHTML(f))
	require.NoError(t, f.Close())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dom, err := DumpDOM(ctx, page)
	require.NoError(t, err)
	members := regexp.MustCompile(`<g class="member" id="member-([^"]+)"`).FindAllStringSubmatch(dom, -1)
	require.Len(t, members, 3, "three member panels in the parsed DOM")
	for i, m := range members {
		assert.Equal(t, r.Members[i].Name, m[1])
	}
	assert.Regexp(t, `<rect class="fault" data-phase="leader's disk throttled" data-fault="disk throttled" data-target="etcd-1"`, dom)
	assert.Contains(t, dom, `class="leader-change" data-leader="etcd-2"`)
	assert.Contains(t, dom, `class="leading" data-member="etcd-2"`, "the member elected leader gets its bar")
	assert.Contains(t, dom, `class="cause" data-part="io_queue"`)

	shot := filepath.Join(dir, "report.png")
	require.NoError(t, Screenshot(ctx, page, shot, len(r.Members)))
	img := decodePNG(t, shot)
	if keep := os.Getenv("ETCDEBPF_KEEP_PICTURE"); keep != "" {
		data, _ := os.ReadFile(shot)
		require.NoError(t, os.WriteFile(keep, data, 0o644))
	}
	require.Equal(t, picWidth, img.Bounds().Dx())
	require.Equal(t, PictureHeight(3), img.Bounds().Dy())

	p := &picture{start: t0, end: t0.Add(60 * time.Second)}
	// The strip just above the first panel: shaded inside the window, white outside.
	stripY := titleHeight + stripHeight - 3
	inside := img.At(int(p.x(t0.Add(35*time.Second))), stripY)
	outside := img.At(int(p.x(t0.Add(10*time.Second))), stripY)
	assert.True(t, near(inside, blend(FaultColour, faultOpacity), 8), "the fault window is shaded: got %v", inside)
	assert.True(t, near(outside, [3]uint8{255, 255, 255}, 2), "outside the window, no shade: got %v", outside)
	// etcd-1's 300 ms syncs are drawn in the window, in blue over the shade.
	slow := img.At(int(p.x(t0.Add(25*time.Second))), int(y(panelTop(0), 0.27))) // under the p50 and p99 lines
	r8, _, b8 := rgb(slow)
	assert.Greater(t, int(b8), int(r8)+30, "a blue heatmap cell at etcd-1's 300 ms during the fault: got %v", slow)
	// etcd-2 has no 300 ms syncs: only the shade there.
	calm := img.At(int(p.x(t0.Add(25*time.Second))), int(y(panelTop(1), 0.3)))
	assert.True(t, near(calm, blend(FaultColour, faultOpacity), 8), "etcd-2 at 300 ms: shade only, got %v", calm)
	// Under etcd-1's heatmap, its slow syncs' band is mostly the queue's colour.
	band := img.At(int(p.x(t0.Add(25*time.Second+500*time.Millisecond))), int(causeTop(0)+causeHeight-4))
	assert.True(t, near(band, hexRGB(PartColours[tracer.PartIOQueue]), 8), "etcd-1's slow syncs waited in the queue: got %v", band)
	// etcd-2 leads from the election's end: its red bar.
	bar := img.At(int(p.x(t0.Add(45*time.Second))), int(panelTop(1)+1))
	assert.True(t, near(bar, hexRGB(leaderColour), 8), "etcd-2's leading bar: got %v", bar)
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	return img
}

func rgb(c interface{ RGBA() (r, g, b, a uint32) }) (uint8, uint8, uint8) {
	r, g, b, _ := c.RGBA()
	return uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)
}

// hexRGB is a #rrggbb colour's components.
func hexRGB(hex string) [3]uint8 { return blend(hex, 1) }

// blend is colour at opacity over white.
func blend(hex string, opacity float64) [3]uint8 {
	var out [3]uint8
	for i := range 3 {
		v, err := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		if err != nil {
			panic(err)
		}
		out[i] = uint8(math.Round(255*(1-opacity) + float64(v)*opacity))
	}
	return out
}

func near(c interface{ RGBA() (r, g, b, a uint32) }, want [3]uint8, tolerance int) bool {
	r, g, b := rgb(c)
	for i, v := range []uint8{r, g, b} {
		if d := int(v) - int(want[i]); d > tolerance || d < -tolerance {
			return false
		}
	}
	return true
}
