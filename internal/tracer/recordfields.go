//go:build linux && (amd64 || arm64)

package tracer

import (
	"encoding/binary"
	"fmt"

	"github.com/etcdebpf/etcdebpfreceiver/bpf"
)

// RecordFields are a record's fields as plain values. Tests and tools lay
// records out from them (EncodeRecord, NewRecord) rather than from the
// generated kernel types, so that the layout is known to this package alone;
// ParseRecord reads a record that left the receiver (its raw attribute) back
// into them.
type RecordFields struct {
	Syscall     Syscall
	FDKind      FDKind
	PID, TID    uint32
	FD          int32
	Dev         uint32 // the file's device, as the kernel encodes it
	CgroupID    uint64
	Inode       uint64
	Count       uint64
	Offset      int64 // negative for a call that is not positional
	Ret         int64
	StartNs     uint64
	DurationNs  uint64
	Comm        string // cut, as the kernel cuts it, to CommLen-1 bytes
	FileName    string // cut to the record's name field, less its NUL
	Waits       *Waits // nil: the scheduler part did not measure the call
	OtherWaitIP uint64
	Payload     []byte // at most PayloadMax bytes
	// PayloadArea, when more than len(Payload), is how many bytes follow the
	// fixed part: with payload_bytes set, the kernel reserves the whole area
	// for every call, whatever it wrote.
	PayloadArea int
}

// EncodeRecord lays f out as the BPF programs write a record: little endian,
// no padding (the layout has none).
func EncodeRecord(f RecordFields) []byte {
	if len(f.Payload) > PayloadMax {
		panic(fmt.Sprintf("a payload of %d bytes: a record carries at most %d", len(f.Payload), PayloadMax))
	}
	ev := bpf.MonitorEvent{
		Version: bpf.RecordVersion, Type: uint16(f.Syscall), FdKind: uint8(f.FDKind), PayloadLen: uint16(len(f.Payload)),
		Pid: f.PID, Tid: f.TID, Fd: f.FD, Dev: f.Dev, CgroupId: f.CgroupID, Inode: f.Inode, Count: f.Count,
		Offset: f.Offset, Ret: f.Ret, StartNs: f.StartNs, DurationNs: f.DurationNs, OtherWaitIp: f.OtherWaitIP,
	}
	putCString(ev.Comm[:], f.Comm)
	putCString(ev.FileName[:], f.FileName)
	if f.Waits != nil {
		ev.WaitNs, ev.IoDeviceNs = f.Waits.Ns, f.Waits.IODeviceNs
		ev.Measured = uint32(bpf.MonitorRecordMeasuredMEASURED_SCHED)
		if f.Waits.IODeviceKnown {
			ev.Measured |= uint32(bpf.MonitorRecordMeasuredMEASURED_IO_DEVICE)
		}
	}
	raw, err := binary.Append(make([]byte, 0, eventSize+max(f.PayloadArea, len(f.Payload))), binary.LittleEndian, ev)
	if err != nil {
		panic(err) // a fixed-size struct always encodes
	}
	raw = append(raw, f.Payload...)
	return append(raw, make([]byte, max(f.PayloadArea-len(f.Payload), 0))...)
}

// NewRecord is the Record that EncodeRecord(f) decodes to.
func NewRecord(f RecordFields) Record {
	rec, err := decodeRecord(EncodeRecord(f))
	if err != nil {
		panic(err) // EncodeRecord writes the layout decodeRecord reads
	}
	return rec
}

// ParseRecord reads the raw bytes of a record that left the receiver (a log
// record's etcd.syscall.raw) into their fields, copying them.
func ParseRecord(raw []byte) (RecordFields, error) {
	rec, err := decodeRecord(raw)
	if err != nil {
		return RecordFields{}, err
	}
	return rec.Fields(), nil
}

// Fields is a copy of the record's fields: EncodeRecord of them is the record's bytes.
func (r Record) Fields() RecordFields {
	f := RecordFields{
		Syscall: r.Syscall(), FDKind: r.FDKind(), PID: r.PID(), TID: r.TID(), FD: r.FD(), Dev: r.ev.Dev,
		CgroupID: r.ev.CgroupId, Inode: r.Inode(), Count: r.Count(), Offset: r.Offset(), Ret: r.Ret(),
		StartNs: r.StartNs(), DurationNs: r.DurationNs(), Comm: string(r.CommName()), FileName: string(r.FileName()),
		OtherWaitIP: r.OtherWaitIP(),
	}
	if area := len(r.raw) - eventSize; area > int(r.ev.PayloadLen) {
		f.PayloadArea = area
	}
	if w, ok := r.Waits(); ok {
		f.Waits = &w
	}
	if p := r.Payload(); len(p) > 0 {
		f.Payload = append([]byte(nil), p...)
	}
	return f
}

// putCString writes s into name NUL-padded, cut to leave room for the NUL.
func putCString(name []int8, s string) {
	for i := range min(len(s), len(name)-1) {
		name[i] = int8(s[i])
	}
}
