//go:build linux && (amd64 || arm64)

package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// Wait is what a call waited for while it was off the CPU (bpf/wait.h).
type Wait uint8

// The waits, as the kernel's wait_kind numbers them.
const (
	WaitRunnable  = Wait(bpf.MonitorWaitKindWAIT_RUNNABLE)
	WaitFlush     = Wait(bpf.MonitorWaitKindWAIT_FLUSH)
	WaitWriteback = Wait(bpf.MonitorWaitKindWAIT_WRITEBACK)
	WaitMetadata  = Wait(bpf.MonitorWaitKindWAIT_METADATA)
	WaitJournal   = Wait(bpf.MonitorWaitKindWAIT_JOURNAL)
	WaitLock      = Wait(bpf.MonitorWaitKindWAIT_LOCK)
	WaitThrottle  = Wait(bpf.MonitorWaitKindWAIT_THROTTLE)
	WaitOther     = Wait(bpf.MonitorWaitKindWAIT_OTHER)
	WaitKinds     = int(bpf.MonitorWaitKindWAIT_KINDS)
	// waitSkip marks a scheduler or generic wait helper in the kernel's table.
	waitSkip = Wait(bpf.MonitorWaitKindWAIT_SKIP)
)

// Waits are a call's (or many calls') nanoseconds off the CPU by what they waited
// for, and of the waits for their own I/O, the time that I/O was on the device.
type Waits struct {
	Ns         [WaitKinds]uint64
	IODeviceNs uint64
	// IODeviceKnown says IODeviceNs was measured: the disks' view (Options.Block)
	// counts what the calls' own requests spent on the device.
	IODeviceKnown bool
}

// Part is one share of a call's duration: the parts of a call add up to it.
type Part uint8

// The parts of a call's time, in the order Parts lists them.
const (
	PartCPU      Part = iota // on a CPU
	PartRunnable             // runnable, waiting for a CPU
	PartIOQueue              // waiting for its own I/O while the I/O was in the kernel, before the device
	PartIODevice             // waiting for its own I/O while the I/O was on the device
	PartJournal              // waiting for the file system's journal
	PartLock                 // waiting for a sleeping lock
	PartThrottle             // throttled before its I/O was made
	PartOther                // any other wait
	PartIO                   // waiting for its own I/O, where the disks' view is off to split it
	PartCount
)

var partNames = [PartCount]string{"cpu", "runnable", "io_queue", "io_device", "journal", "lock", "throttle", "other", "io"}

// String is the part's name, as attributes and metrics carry it.
func (p Part) String() string {
	if p < PartCount {
		return partNames[p]
	}
	return "unknown"
}

// Parts is a duration split into its parts.
type Parts [PartCount]uint64

// Own I/O is what a call itself wrote and then waited for: its cache flush, its
// data's writeback and its metadata writes.
func (w *Waits) ownIONs() uint64 {
	return w.Ns[WaitFlush] + w.Ns[WaitWriteback] + w.Ns[WaitMetadata]
}

// Split partitions durationNs, the time of the calls w is the account of: what w
// does not account for was spent on a CPU. The waits for the calls' own I/O are
// split between the device (as much as their requests spent there) and the kernel
// before it, where that is known.
func (w *Waits) Split(durationNs uint64) Parts {
	var p Parts
	off := uint64(0)
	for _, ns := range w.Ns {
		off += ns
	}
	if durationNs > off {
		p[PartCPU] = durationNs - off
	}
	own := w.ownIONs()
	if w.IODeviceKnown {
		device := min(w.IODeviceNs, own)
		p[PartIOQueue] = own - device
		p[PartIODevice] = device
	} else {
		p[PartIO] = own
	}
	p[PartRunnable] = w.Ns[WaitRunnable]
	p[PartJournal] = w.Ns[WaitJournal]
	p[PartLock] = w.Ns[WaitLock]
	p[PartThrottle] = w.Ns[WaitThrottle]
	p[PartOther] = w.Ns[WaitOther]
	return p
}

// Dominant is the largest part (the first of equals).
func (p *Parts) Dominant() Part {
	best := PartCPU
	for i := range p {
		if p[i] > p[best] {
			best = Part(i)
		}
	}
	return best
}

// waitFunctions are the kernel functions that name a wait, by the symbol's name
// without a compiler suffix (.constprop.0, .isra.0): the innermost of them on a
// blocked thread's stack, past the scheduler's own (waitSkip), says what it waits
// for. Functions a kernel lacks are left out; names differ across 5.10-6.18, so both
// spellings are listed where they changed (pages became folios in 5.16-6.x).
var waitFunctions = map[string]Wait{
	// The scheduler and generic waits: passed over to their caller.
	"__schedule": waitSkip, "schedule": waitSkip, "schedule_timeout": waitSkip,
	"io_schedule": waitSkip, "io_schedule_timeout": waitSkip, "schedule_preempt_disabled": waitSkip,
	"schedule_hrtimeout_range_clock": waitSkip, "schedule_hrtimeout_range": waitSkip,
	"bit_wait_io": waitSkip, "bit_wait": waitSkip, "__wait_on_bit": waitSkip,
	"out_of_line_wait_on_bit": waitSkip, "__wait_on_bit_lock": waitSkip, "out_of_line_wait_on_bit_lock": waitSkip,
	"wait_for_completion": waitSkip, "wait_for_completion_io": waitSkip, "wait_for_completion_timeout": waitSkip,
	"wait_for_completion_io_timeout": waitSkip, "wait_for_common": waitSkip, "wait_for_common_io": waitSkip,
	"__wait_for_common": waitSkip, "do_wait_for_common": waitSkip,
	"folio_wait_bit_common": waitSkip, "wait_on_page_bit_common": waitSkip,
	"submit_bio_wait": waitSkip, "blk_execute_rq": waitSkip,

	// The device's cache flush, issued by the sync itself.
	"blkdev_issue_flush": WaitFlush, "xfs_blkdev_issue_flush": WaitFlush,

	// The writeback of the call's own data.
	"folio_wait_writeback": WaitWriteback, "wait_on_page_writeback": WaitWriteback,
	"__filemap_fdatawait_range": WaitWriteback, "filemap_fdatawait_range": WaitWriteback,
	"filemap_fdatawait_range_keep_errors": WaitWriteback, "file_write_and_wait_range": WaitWriteback,
	"filemap_write_and_wait_range": WaitWriteback, "__filemap_fdatawrite_range": WaitWriteback,

	// An inode or another metadata block, written and waited for by the call.
	"__sync_dirty_buffer": WaitMetadata, "sync_dirty_buffer": WaitMetadata, "__wait_on_buffer": WaitMetadata,
	"sync_mapping_buffers": WaitMetadata, "sync_inode_metadata": WaitMetadata, "write_inode_now": WaitMetadata,
	"xfs_buf_iowait": WaitMetadata,

	// The journal: ext4's jbd2, XFS's log, btrfs's tree log.
	"jbd2_log_wait_commit": WaitJournal, "jbd2_complete_transaction": WaitJournal,
	"wait_transaction_locked": WaitJournal, "wait_transaction_switching": WaitJournal,
	"add_transaction_credits": WaitJournal, "start_this_handle": WaitJournal,
	"__jbd2_log_wait_for_space": WaitJournal, "jbd2_journal_lock_updates": WaitJournal,
	"xlog_wait": WaitJournal, "xlog_wait_on_iclog": WaitJournal, "xfs_log_force_seq": WaitJournal,
	"xfs_log_force_lsn": WaitJournal, "__xfs_log_force_lsn": WaitJournal, "xfs_log_force": WaitJournal,
	"xlog_grant_head_wait": WaitJournal, "wait_log_commit": WaitJournal, "wait_for_writer": WaitJournal,

	// Sleeping locks.
	"__mutex_lock": WaitLock, "mutex_lock": WaitLock, "__mutex_lock_slowpath": WaitLock,
	"mutex_lock_killable": WaitLock, "__mutex_lock_killable_slowpath": WaitLock,
	"mutex_lock_interruptible": WaitLock, "__mutex_lock_interruptible_slowpath": WaitLock,
	"rwsem_down_write_slowpath": WaitLock, "rwsem_down_read_slowpath": WaitLock,
	"down_write": WaitLock, "down_read": WaitLock, "down_write_killable": WaitLock, "down_read_killable": WaitLock,
	"__down": WaitLock, "__down_common": WaitLock, "__down_killable": WaitLock,
	"percpu_rwsem_wait": WaitLock, "__percpu_down_read": WaitLock, "percpu_down_write": WaitLock,
	"__folio_lock": WaitLock, "__lock_page": WaitLock, "__folio_lock_killable": WaitLock, "__lock_page_killable": WaitLock,

	// Throttled before the I/O was made: dirty pages, writeback throttling and the
	// other rq_qos policies (iocost, iolatency), no free request tag.
	"balance_dirty_pages": WaitThrottle, "balance_dirty_pages_ratelimited_flags": WaitThrottle,
	"balance_dirty_pages_ratelimited": WaitThrottle,
	"rq_qos_wait":                     WaitThrottle, "wbt_wait": WaitThrottle, "__rq_qos_throttle": WaitThrottle,
	"ioc_rqos_throttle": WaitThrottle, "blkcg_maybe_throttle_current": WaitThrottle, "blk_mq_get_tag": WaitThrottle,
}

// kallsymsPath is where the kernel lists its symbols; a variable for tests.
var kallsymsPath = "/proc/kallsyms"

// errNoSymbolAddresses says why the waits cannot be told apart.
var errNoSymbolAddresses = errors.New("/proc/kallsyms shows no kernel addresses to this process: it needs CAP_SYSLOG " +
	"(or kernel.kptr_restrict=0 with kernel.perf_event_paranoid<=1); until then every blocked wait is counted as " +
	"\"other\", with no function named")

// textSymbol is a function of the kernel's text (or a module's) and where it starts.
type textSymbol struct {
	addr   uint64
	name   string
	module bool // in a loaded module's text, not the kernel image's
}

// parseTextSymbol reads one line of /proc/kallsyms ("ffffffff818965c0 T
// jbd2_log_wait_commit\t[module]"); ok is false for a symbol that is no function.
func parseTextSymbol(line string) (sym textSymbol, ok bool, err error) {
	addrText, rest, found := strings.Cut(line, " ")
	if !found || len(rest) < 3 || (rest[0] != 't' && rest[0] != 'T') {
		return textSymbol{}, false, nil
	}
	name := rest[2:]
	if i := strings.IndexAny(name, "\t "); i >= 0 {
		name = name[:i]
	}
	addr, err := strconv.ParseUint(addrText, 16, 64)
	if err != nil {
		return textSymbol{}, false, fmt.Errorf("%q: %w", line, err)
	}
	return textSymbol{addr: addr, name: name, module: strings.Contains(rest, "\t[")}, true, nil
}

// readTextSymbols reads the kernel's functions, sorted by address, keeping the
// names keep accepts and, for every other symbol, its address alone: where the
// previous function ends.
func readTextSymbols(r io.Reader, keep func(name string) bool) ([]textSymbol, error) {
	var syms []textSymbol
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	nonZero := false
	for sc.Scan() {
		sym, ok, err := parseTextSymbol(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", kallsymsPath, err)
		}
		if !ok {
			continue
		}
		addr, name := sym.addr, sym.name
		nonZero = nonZero || addr != 0
		if base, _, _ := strings.Cut(name, "."); !keep(base) {
			name = ""
		}
		syms = append(syms, textSymbol{addr: addr, name: name, module: sym.module})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", kallsymsPath, err)
	}
	if !nonZero {
		return nil, errNoSymbolAddresses
	}
	slices.SortStableFunc(syms, func(a, b textSymbol) int {
		if a.addr < b.addr {
			return -1
		}
		if a.addr > b.addr {
			return 1
		}
		return 0
	})
	return syms, nil
}

// waitPages lays the wait functions out as the kernel looks them up: by the page of
// a stack frame's address, each page listing the functions in it. A function ends
// where the next symbol at a higher address starts.
func waitPages(syms []textSymbol) (map[uint64]*bpf.MonitorWaitPage, int) {
	pages := map[uint64]*bpf.MonitorWaitPage{}
	resolved := 0
	for i, s := range syms {
		if s.name == "" {
			continue
		}
		kind, ok := waitFunctions[strings.SplitN(s.name, ".", 2)[0]]
		if !ok {
			continue // a landmark (_stext, _etext), not a wait
		}
		end := uint64(0)
		for _, next := range syms[i+1:] {
			if next.addr > s.addr {
				end = next.addr
				break
			}
		}
		if end == 0 {
			continue
		}
		resolved++
		shift := uint64(bpf.MonitorWaitLayoutWAIT_PAGE_SHIFT)
		for page := s.addr >> shift; page <= (end-1)>>shift; page++ {
			p := pages[page]
			if p == nil {
				p = &bpf.MonitorWaitPage{}
				pages[page] = p
			}
			for j := range p.Ranges {
				if p.Ranges[j].Start == 0 {
					p.Ranges[j].Start, p.Ranges[j].End, p.Ranges[j].Kind = s.addr, end, uint32(kind)
					break
				}
			}
		}
	}
	return pages, resolved
}

// waitText is what the stack scan checks a word against before the table: the filter
// of the table's pages and the spans of the kernel's code.
func waitText(syms []textSymbol, pages map[uint64]*bpf.MonitorWaitPage) *bpf.MonitorWaitText {
	var t bpf.MonitorWaitText
	bits := uint64(len(t.PageBits) * 64)
	for page := range pages {
		t.PageBits[(page%bits)/64] |= 1 << (page % 64)
	}
	for _, s := range syms {
		switch {
		case s.module:
			if t.ModulesStart == 0 || s.addr < t.ModulesStart {
				t.ModulesStart = s.addr
			}
			t.ModulesEnd = max(t.ModulesEnd, s.addr)
		case s.name == "_stext":
			t.CoreStart = s.addr
		case s.name == "_etext":
			t.CoreEnd = s.addr
		}
	}
	return &t
}

// loadWaitFunctions fills the kernel's table of wait functions, and the scan's filter
// in front of it, from the running kernel's symbols. It reports how many it found.
func loadWaitFunctions(m, text *ebpf.Map) (int, error) {
	f, err := os.Open(kallsymsPath)
	if err != nil {
		return 0, fmt.Errorf("reading the kernel's functions to tell waits apart: %w", err)
	}
	defer f.Close()
	syms, err := readTextSymbols(f, func(name string) bool {
		_, ok := waitFunctions[name]
		return ok || name == "_stext" || name == "_etext"
	})
	if err != nil {
		return 0, err
	}
	pages, resolved := waitPages(syms)
	if len(pages) > int(m.MaxEntries()) {
		return 0, fmt.Errorf("the wait functions span %d pages of kernel text, more than the table's %d", len(pages), m.MaxEntries())
	}
	for page, p := range pages {
		if err := m.Put(page, p); err != nil {
			return 0, fmt.Errorf("filling the table of wait functions: %w", err)
		}
	}
	if err := text.Put(uint32(0), waitText(syms, pages)); err != nil {
		return 0, fmt.Errorf("filling the filter of wait functions: %w", err)
	}
	return resolved, nil
}

// functionNames caches KernelFunction's answers: a few wait sites recur.
var functionNames = struct {
	sync.Mutex
	m map[uint64]string
}{m: map[uint64]string{}}

// KernelFunction is the name of the kernel function holding ip, "" when it cannot
// be read. The first question about an address reads /proc/kallsyms (tens of
// milliseconds); it is asked only for a slow call's unknown wait.
func KernelFunction(ip uint64) string {
	if ip == 0 {
		return ""
	}
	functionNames.Lock()
	defer functionNames.Unlock()
	if name, ok := functionNames.m[ip]; ok {
		return name
	}
	name := ""
	if f, err := os.Open(kallsymsPath); err == nil {
		var best textSymbol
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if sym, ok, err := parseTextSymbol(sc.Text()); ok && err == nil && sym.addr <= ip && sym.addr >= best.addr {
				best = sym
			}
		}
		f.Close()
		name = best.name
	}
	if len(functionNames.m) >= 1024 {
		clear(functionNames.m)
	}
	functionNames.m[ip] = name
	return name
}
