//go:build linux && (amd64 || arm64)

package tracer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// Pin keeps the kernel side in a BPF file system, so that it outlives the agent:
// the programs stay attached and the maps (histograms, counters, the disks' view,
// the ring buffer) keep counting while no agent runs, and the next agent takes
// them over instead of loading its own.
type Pin struct {
	// Path is a directory on a BPF file system (/sys/fs/bpf/etcdebpf); empty:
	// nothing is pinned, and the kernel side lives as long as the tracer.
	Path string
	// Release removes the pinned state at Detach: the agent stops for good.
	Release bool
}

// PinReport is what Start found and did at Options.Pin.Path.
type PinReport struct {
	Path string
	// TookOver: the programs another agent pinned were taken over, and counted on
	// since Start (their StartTime).
	TookOver bool
	// Replaced says why pinned programs were removed and new ones loaded in their
	// place; empty when there were none or they were taken over.
	Replaced string
	// MapBytes is the kernel memory the pinned maps hold (their memlock).
	MapBytes uint64
}

// The layout under Pin.Path. The state is written last, once every map and link
// is pinned: without it, what is there is an agent's unfinished Start.
const (
	pinStateName  = "state"   // an array of one pinState
	pinMonitorDir = "monitor" // etcd_monitor.c's maps, by name
	pinBlockDir   = "block"   // block.c's maps, by name
	pinLinksDir   = "links"   // the links, by attachment point
)

// pinFormat numbers the layout: a layout this build does not know is replaced.
const pinFormat = 1

// pinState identifies the pinned programs and keeps their StartTimestamp.
type pinState struct {
	Format        uint32
	_             uint32
	StartUnixNano int64
	Digest        [sha256.Size]byte
}

// pinLockWait is how long Start waits for another agent to let go of the pinned
// state: a replaced agent may still be draining.
var pinLockWait = 10 * time.Second

// pinned is a tracer's hold on Pin.Path: a lock on the directory, so that two
// agents never share one ring buffer, and what Start decided.
type pinned struct {
	dir      string
	lock     *os.File
	digest   [sha256.Size]byte
	state    *pinState // the state found at Start; nil when there was none
	report   PinReport
	takeover bool
	// unsupported is the kernel's refusal to pin a link: the session then runs
	// unpinned.
	unsupported error
}

// pinDigest identifies the programs opts loads: the objects' bytes and every
// option that shapes what the kernel side does. The pids and executables are
// contents of maps, which a taking-over agent sets to its own; whether there are
// any is a load-time constant.
func pinDigest(opts Options) [sha256.Size]byte {
	shaped := opts
	shaped.PIDs, shaped.Executables, shaped.Pin = nil, nil, Pin{}
	data, err := json.Marshal(struct {
		Options
		FilterPIDs, FilterExecutables bool
	}{shaped, len(opts.PIDs) > 0, len(opts.Executables) > 0})
	if err != nil {
		panic(err) // Options holds no type json cannot encode
	}
	objects := bpf.ObjectsDigest()
	return sha256.Sum256(append(objects[:], data...))
}

// openPin takes the lock on dir and reads what is pinned there.
func openPin(dir string, digest [sha256.Size]byte) (_ *pinned, err error) {
	if err := ensureBPFFS(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pin_path: creating %s: %w", dir, err)
	}
	lock, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("pin_path: opening %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	deadline := time.Now().Add(pinLockWait)
	for {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return nil, fmt.Errorf("pin_path: another agent holds the kernel state pinned at %s (flock: %w): two agents on one node "+
				"would split one ring buffer's records; stop the other agent, or give this one another pin_path", dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := &pinned{dir: dir, lock: lock, digest: digest, report: PinReport{Path: dir}}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinStateName), nil)
	if errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		if len(entries) > 0 {
			p.report.Replaced = "an agent stopped before it had pinned everything"
		}
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pin_path: reading the pinned state at %s: %w; remove it (rm -rf %s) to start afresh", dir, err, dir)
	}
	defer m.Close()
	var raw []byte
	if err := m.Lookup(uint32(0), &raw); err != nil {
		return nil, fmt.Errorf("pin_path: reading the pinned state at %s: %w; remove it (rm -rf %s) to start afresh", dir, err, dir)
	}
	var st pinState
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &st); err != nil || st.Format != pinFormat {
		p.report.Replaced = fmt.Sprintf("the pinned state is of another layout (format %d, this build's %d)", st.Format, pinFormat)
		return p, nil
	}
	if st.Digest != digest {
		p.report.Replaced = "the pinned programs are of another build of the receiver or another configuration"
		return p, nil
	}
	p.state, p.takeover = &st, true
	return p, nil
}

// clear removes everything pinned under the directory: pinned links detach as
// their pins go, unless a running agent still holds them.
func (p *pinned) clear() error {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("pin_path: listing %s: %w", p.dir, err)
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(p.dir, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pin_path: removing what is pinned at %s: %w", p.dir, err)
	}
	return nil
}

// remove removes the directory and everything in it, and lets go of the lock.
func (p *pinned) remove() error {
	err := os.RemoveAll(p.dir)
	if err != nil {
		err = fmt.Errorf("pin_path: removing %s: %w; remove it by hand (rm -rf %s)", p.dir, err, p.dir)
	}
	return errors.Join(err, p.close())
}

// close lets go of the lock; what is pinned stays.
func (p *pinned) close() error {
	if p.lock == nil {
		return nil
	}
	err := p.lock.Close()
	p.lock = nil
	return err
}

// mapDir is the directory the maps of one object are pinned in, created.
func (p *pinned) mapDir(name string) (string, error) {
	dir := filepath.Join(p.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("pin_path: creating %s: %w", dir, err)
	}
	return dir, nil
}

// pinMaps marks every map of spec that the agent reads to be pinned by name
// (the sections' own maps, .rodata and the like, only the programs use).
func pinMaps(spec *ebpf.CollectionSpec) {
	for name, m := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			m.Pinning = ebpf.PinByName
		}
	}
}

// pinLink pins l under name. A kernel that cannot pin it (tracepoints through
// perf events before 5.15) is remembered, not an error: the session runs unpinned.
func (p *pinned) pinLink(name string, l link.Link) error {
	if p == nil || p.unsupported != nil {
		return nil
	}
	dir, err := p.mapDir(pinLinksDir)
	if err != nil {
		return err
	}
	if err := pinLinkAt(l, filepath.Join(dir, name)); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, link.ErrNotSupported) {
			p.unsupported = fmt.Errorf("pin_path: this kernel (Linux %s) cannot pin the link of %s (%w): tracepoints attach "+
				"through BPF links from Linux 5.15; the programs detach when the agent stops and the next one starts "+
				"counting afresh, as without pin_path", kernelRelease(), name, err)
			return nil
		}
		return fmt.Errorf("pin_path: pinning the link of %s: %w", name, err)
	}
	return nil
}

// pinLinkAt pins l at path, a variable so that tests can stand in for a kernel
// whose tracepoint links cannot be pinned.
var pinLinkAt = func(l link.Link, path string) error { return l.Pin(path) }

// loadLink is the link pinned under name.
func (p *pinned) loadLink(name string) (link.Link, error) {
	l, err := link.LoadPinnedLink(filepath.Join(p.dir, pinLinksDir, name), nil)
	if err != nil {
		return nil, fmt.Errorf("loading the pinned link of %s: %w", name, err)
	}
	return l, nil
}

// writeState pins the state, last: from now on an agent takes the rest over.
func (p *pinned) writeState(start time.Time) error {
	st := pinState{Format: pinFormat, StartUnixNano: start.UnixNano(), Digest: p.digest}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, st); err != nil {
		return err
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "etcdebpf_state", Type: ebpf.Array, KeySize: 4, ValueSize: uint32(buf.Len()), MaxEntries: 1,
	})
	if err != nil {
		return fmt.Errorf("pin_path: creating the state map: %w", err)
	}
	defer m.Close()
	if err := m.Put(uint32(0), buf.Bytes()); err != nil {
		return fmt.Errorf("pin_path: writing the state map: %w", err)
	}
	if err := m.Pin(filepath.Join(p.dir, pinStateName)); err != nil {
		return fmt.Errorf("pin_path: pinning the state map: %w", err)
	}
	return nil
}

// bpffsRoot is the BPF file system's usual mount point, the one place Start
// mounts one: mounting elsewhere would hide what the directory holds.
var bpffsRoot = "/sys/fs/bpf"

// ensureBPFFS checks that dir is, or would be created, on a BPF file system, and
// mounts one at bpffsRoot when dir is under it and nothing is mounted there.
func ensureBPFFS(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("pin_path: %q is relative; give a directory on a BPF file system, such as /sys/fs/bpf/etcdebpf", dir)
	}
	existing := dir
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		existing = filepath.Dir(existing)
	}
	if onBPFFS(existing) {
		return nil
	}
	if dir != bpffsRoot && !strings.HasPrefix(dir, bpffsRoot+"/") {
		return fmt.Errorf("pin_path: %s is not on a BPF file system: pins elsewhere are refused by the kernel; give a directory "+
			"under %s, or mount one first (mount -t bpf bpf <dir>)", dir, bpffsRoot)
	}
	if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("pin_path: no BPF file system is mounted at %s and mounting one failed (%w): mount it before starting "+
			"the collector (mount -t bpf bpf %s), or run the collector with CAP_SYS_ADMIN; in a container, mount the host's %s "+
			"(a hostPath volume), or the pins die with the container", bpffsRoot, err, bpffsRoot, bpffsRoot)
	}
	return nil
}

func onBPFFS(dir string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(dir, &fs) == nil && fs.Type == unix.BPF_FS_MAGIC
}

// mapsMemlock sums the kernel memory of the maps in objs, structs of *ebpf.Map
// fields (bpf2go's), each map once.
func mapsMemlock(objs ...any) uint64 {
	seen := map[ebpf.MapID]bool{}
	var total uint64
	for _, o := range objs {
		v := reflect.ValueOf(o).Elem()
		for i := range v.NumField() {
			m, ok := v.Field(i).Interface().(*ebpf.Map)
			if !ok || m == nil {
				continue
			}
			info, err := m.Info()
			if err != nil {
				continue
			}
			id, _ := info.ID()
			if seen[id] {
				continue
			}
			seen[id] = true
			if n, ok := info.Memlock(); ok {
				total += n
			}
		}
	}
	return total
}
