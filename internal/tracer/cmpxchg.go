//go:build linux && (amd64 || arm64)

package tracer

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// haveCmpXchg probes for BPF's compare-and-exchange (5.12+), which hist.h's
// raise_to uses to keep each histogram's minimum and maximum exact. Once per
// process: both objects ask, at every Start.
var haveCmpXchg = sync.OnceValue(func() error {
	xchg := asm.CmpXchg.Mem(asm.RFP, asm.R1, asm.DWord, -8)
	// cilium/ebpf v0.20's Marshal takes the immediate before it encodes the
	// atomic operation there: left 0, the probe would be a plain atomic add,
	// which every kernel accepts. (Instructions read from an ELF carry it.)
	xchg.Constant = int64(asm.CmpXchg >> 8)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
			asm.Mov.Imm(asm.R1, 1),
			xchg,
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	return prog.Close()
})

// fitAtomicsToKernel makes spec loadable where the kernel lacks compare-and-exchange.
func fitAtomicsToKernel(spec *ebpf.CollectionSpec) {
	if haveCmpXchg() != nil {
		storeInsteadOfCmpXchg(spec)
	}
}

// storeInsteadOfCmpXchg rewrites, for kernels without it, every 64-bit
// compare-and-exchange in spec's programs into the store it makes when nothing
// races: *(dst + off) = src, with R0 left holding the compared value, as a
// successful exchange leaves it. The kernels before 5.12 reject the program
// that holds one, even where the program never reaches it, so it cannot be
// gated by a variable. hist.h's raise_to is the only user.
func storeInsteadOfCmpXchg(spec *ebpf.CollectionSpec) {
	xchg := asm.CmpXchg.OpCode(asm.DWord)
	for _, prog := range spec.Programs {
		for i, ins := range prog.Instructions {
			if ins.OpCode == xchg {
				store := asm.StoreMem(ins.Dst, ins.Offset, ins.Src, asm.DWord)
				store.Metadata = ins.Metadata
				prog.Instructions[i] = store
			}
		}
	}
}
