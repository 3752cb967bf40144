package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/etcdtest"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/logtest"
)

// record is the part of a log record the demo prints and summarizes.
type record struct {
	ts       time.Time
	name     string // syscall
	fdKind   string
	fd       int64
	file     string
	ret      int64
	duration time.Duration
}

func fromLog(lr logtest.Record) record {
	return record{
		ts:       lr.Timestamp().AsTime(),
		name:     lr.Body().Str(), // the syscall's name
		fdKind:   lr.Str("etcd.syscall.fd_kind"),
		fd:       lr.Int("etcd.syscall.fd"),
		file:     lr.Str("file.name"),
		ret:      lr.Int("etcd.syscall.ret"),
		duration: time.Duration(lr.Int("etcd.syscall.duration_ns")),
	}
}

func (r record) isWALSync() bool {
	return r.name == "fdatasync" && strings.HasSuffix(r.file, ".wal")
}

func (r record) isWrite() bool { return strings.Contains(r.name, "write") }

// fileClass groups etcd's files: its WAL segments, its bbolt database, its
// snapshots, other files; "" for what is not a file.
func (r record) fileClass() string {
	switch {
	case r.fdKind != "file" && r.fdKind != "directory":
		return ""
	case r.fdKind == "directory":
		return r.file + "/"
	case strings.HasSuffix(r.file, ".wal"):
		return "*.wal"
	case strings.HasSuffix(r.file, ".snap"):
		return "*.snap"
	case r.file == "db":
		return "db"
	default:
		return "other"
	}
}

// line is the one-line form of a record, e.g.
// "12:00:01.234 fdatasync file 0000000000000000-0000000000000000.wal 244µs".
func (r record) line() string {
	target := r.file
	if target == "" {
		target = fmt.Sprintf("fd %d", r.fd)
	}
	var size string
	if r.isWrite() {
		if r.ret >= 0 {
			size = fmt.Sprintf(" %dB", r.ret)
		} else {
			size = fmt.Sprintf(" err=%d", r.ret)
		}
	} else if r.ret < 0 {
		size = fmt.Sprintf(" err=%d", r.ret)
	}
	return fmt.Sprintf("%s %-9s %-7s %s%s %s", r.ts.Local().Format("15:04:05.000"), r.name, r.fdKind, target, size, fmtDur(r.duration))
}

// fmtDur prints a latency compactly: 812ns, 244µs, 2.21ms, 1.05s.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func fmtBytes(n int64) string {
	switch {
	case n == 0:
		return "-"
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

// printer prints records as they arrive, at most perSecond lines a second,
// and a line for what it left out.
type printer struct {
	w         io.Writer
	perSecond int

	mu      sync.Mutex
	window  time.Time
	printed int
	skipped int
	all     []record
}

func (p *printer) logs(logs plog.Logs) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lrs := logtest.Flatten(logs)
	for _, lr := range lrs {
		r := fromLog(lr)
		p.all = append(p.all, r)
		now := time.Now().Truncate(time.Second)
		if !now.Equal(p.window) {
			p.window, p.printed = now, 0
		}
		if p.printed < p.perSecond {
			fmt.Fprintln(p.w, r.line())
			p.printed++
		} else {
			p.skipped++
		}
	}
}

// takeSkipped returns how many records were not printed since the last call.
func (p *printer) takeSkipped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.skipped
	p.skipped = 0
	return n
}

func (p *printer) records() []record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.all)
}

// quantile is the q-quantile (0..1) of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// bucketize counts durations into cumulative buckets with the given bounds.
func bucketize(ds []time.Duration, bounds etcdtest.Histogram) etcdtest.Histogram {
	out := make(etcdtest.Histogram, len(bounds))
	for b := range bounds {
		n := 0
		for _, d := range ds {
			if math.IsInf(b, 1) || d.Seconds() <= b {
				n++
			}
		}
		out[b] = float64(n)
	}
	return out
}

// row of the summary: one syscall on one fd kind (and class of file).
type row struct {
	name, fdKind, file string
	count              int
	bytes              int64
	durations          []time.Duration
}

// summarize groups records by syscall and fd kind, most frequent first.
func summarize(records []record) []row {
	byKey := map[[3]string]*row{}
	for _, r := range records {
		k := [3]string{r.name, r.fdKind, r.fileClass()}
		g := byKey[k]
		if g == nil {
			g = &row{name: r.name, fdKind: r.fdKind, file: k[2]}
			byKey[k] = g
		}
		g.count++
		if r.isWrite() && r.ret > 0 {
			g.bytes += r.ret
		}
		g.durations = append(g.durations, r.duration)
	}
	rows := make([]row, 0, len(byKey))
	for _, g := range byKey {
		slices.Sort(g.durations)
		rows = append(rows, *g)
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(b.count, a.count), cmp.Compare(a.name, b.name), cmp.Compare(a.fdKind, b.fdKind), cmp.Compare(a.file, b.file))
	})
	return rows
}

func writeSyscallTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "syscall\tfd kind\tfile\tcount\tbytes\tp50\tp99\tmax\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", r.name, r.fdKind, r.file, r.count, fmtBytes(r.bytes),
			fmtDur(quantile(r.durations, 0.5)), fmtDur(quantile(r.durations, 0.99)), fmtDur(r.durations[len(r.durations)-1]))
	}
	tw.Flush()
}

// walComparison is the WAL fdatasync figures of the kernel beside etcd's histogram.
type walComparison struct {
	window        time.Duration
	kernel        []time.Duration // sorted durations of WAL fdatasync records in the window
	etcdCount     float64
	etcdBuckets   etcdtest.Histogram // growth over the window
	bucketsMissed bool
	histogram     *histogramFigures // the receiver's histogram; nil if it could not be read
}

// histogramFigures are a count and quantiles (seconds) read from a histogram.
type histogramFigures struct{ count, p50, p99 float64 }

func (c walComparison) write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "source\tcount\tp50\tp99\t")
	fmt.Fprintf(tw, "kernel, this receiver (exact)\t%d\t%s\t%s\t\n", len(c.kernel), fmtDur(quantile(c.kernel, 0.5)), fmtDur(quantile(c.kernel, 0.99)))
	if h := c.histogram; h != nil {
		fmt.Fprintf(tw, "kernel, receiver's histogram (scale 3)\t%.0f\t%s\t%s\t\n", h.count, fmtDur(seconds(h.p50)), fmtDur(seconds(h.p99)))
	} else {
		fmt.Fprintf(tw, "kernel, receiver's histogram (scale 3)\t?\t?\t?\t\n")
	}
	if !c.bucketsMissed {
		kb := bucketize(c.kernel, c.etcdBuckets)
		k50, _ := kb.Quantile(0.5)
		k99, _ := kb.Quantile(0.99)
		fmt.Fprintf(tw, "kernel, in etcd's buckets\t%d\t%s\t%s\t\n", len(c.kernel), fmtDur(seconds(k50)), fmtDur(seconds(k99)))
		e50, ok50 := c.etcdBuckets.Quantile(0.5)
		e99, ok99 := c.etcdBuckets.Quantile(0.99)
		p50, p99 := "-", "-"
		if ok50 && ok99 {
			p50, p99 = fmtDur(seconds(e50)), fmtDur(seconds(e99))
		}
		fmt.Fprintf(tw, "etcd_disk_wal_fsync_duration_seconds\t%.0f\t%s\t%s\t\n", c.etcdCount, p50, p99)
	} else {
		fmt.Fprintf(tw, "etcd_disk_wal_fsync_duration_seconds\t%.0f\t?\t?\t\n", c.etcdCount)
	}
	tw.Flush()
	diff := float64(len(c.kernel)) - c.etcdCount
	switch {
	case c.etcdCount == 0:
		fmt.Fprintln(w, "etcd counted no WAL syncs in the window.")
	case math.Abs(diff) <= max(2, 0.03*c.etcdCount):
		fmt.Fprintf(w, "The counts agree (difference %+.0f: syncs in flight at the edges of the window).\n", diff)
	default:
		fmt.Fprintf(w, "The counts differ by %+.0f (%.1f%%): check the collector's log for lost records.\n", diff, 100*diff/c.etcdCount)
	}
	fmt.Fprintln(w, "etcd's percentiles are interpolated inside its histogram buckets (1 ms, 2 ms, 4 ms, ...), so they can")
	fmt.Fprintln(w, "only be compared with the kernel's figures put into the same buckets; etcd also times the Go call, which")
	fmt.Fprintln(w, "adds tens of microseconds to each sync. The receiver's histogram counts every call in the kernel (no record")
	fmt.Fprintln(w, "each) in buckets 9% wide, read back from VictoriaMetrics from its last collection before the workload on.")
}
