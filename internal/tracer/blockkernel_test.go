//go:build linux && (amd64 || arm64)

package tracer

import (
	"bytes"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kernelSpec builds a BTF spec holding the given types, as a kernel's would.
func kernelSpec(t *testing.T, types ...btf.Type) *btf.Spec {
	t.Helper()
	b, err := btf.NewBuilder(types)
	require.NoError(t, err)
	raw, err := b.Marshal(nil, nil)
	require.NoError(t, err)
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	require.NoError(t, err)
	return spec
}

// tracepointProto is btf_trace_<name>: a pointer to a function of (void *data, params...).
func tracepointProto(name string, params ...string) *btf.Typedef {
	fn := &btf.FuncProto{Return: (*btf.Void)(nil), Params: []btf.FuncParam{{Name: "__data", Type: &btf.Pointer{Target: (*btf.Void)(nil)}}}}
	for _, p := range params {
		fn.Params = append(fn.Params, btf.FuncParam{Name: p, Type: &btf.Pointer{Target: &btf.Struct{Name: p}}})
	}
	return &btf.Typedef{Name: "btf_trace_" + name, Type: &btf.Pointer{Target: fn}}
}

// The prototypes the kernels here have: 5.10.223 (Debian 11) kept block_bio_queue's
// request_queue after its request tracepoints lost theirs; 6.1 and later take none.
func TestTakesQueue(t *testing.T) {
	for _, tc := range []struct {
		kernel    string
		rq, bio   []string
		rqQ, bioQ bool
	}{
		{"5.4", []string{"request_queue", "request"}, []string{"request_queue", "bio"}, true, true},
		{"5.10.223", []string{"request"}, []string{"request_queue", "bio"}, false, true},
		{"6.1", []string{"request"}, []string{"bio"}, false, false},
	} {
		t.Run(tc.kernel, func(t *testing.T) {
			spec := kernelSpec(t, tracepointProto("block_rq_issue", tc.rq...), tracepointProto("block_bio_queue", tc.bio...))
			rqQ, err := takesQueue(spec, "block_rq_issue")
			require.NoError(t, err)
			bioQ, err := takesQueue(spec, "block_bio_queue")
			require.NoError(t, err)
			assert.Equal(t, tc.rqQ, rqQ, "request tracepoints")
			assert.Equal(t, tc.bioQ, bioQ, "block_bio_queue")
		})
	}
	_, err := takesQueue(kernelSpec(t, tracepointProto("block_rq_issue", "request")), "block_bio_queue")
	assert.ErrorContains(t, err, "block: false", "a kernel without the tracepoint is told how to run without the view")
}

// RQF_FLUSH_SEQ and RQF_IO_STAT: from the enum where BTF has it, else by the era.
func TestRequestFlagBits(t *testing.T) {
	enum := &btf.Enum{Name: "rqf_flags", Size: 4, Values: []btf.EnumValue{
		{Name: "__RQF_STARTED", Value: 0}, {Name: "__RQF_FLUSH_SEQ", Value: 2}, {Name: "__RQF_IO_STAT", Value: 9},
	}}
	other := &btf.Int{Name: "int", Size: 4}
	for _, tc := range []struct {
		name             string
		spec             *btf.Spec
		enumEra          bool
		flushSeq, ioStat uint32
	}{
		{"the enum in BTF, as on 6.18", kernelSpec(t, enum), true, 1 << 2, 1 << 9},
		{"6.12 without the enum in BTF", kernelSpec(t, other), true, 1 << 1, 1 << 8},
		{"before 6.12: the macros", kernelSpec(t, other), false, 1 << 4, 1 << 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, s := requestFlagBits(tc.spec, tc.enumEra)
			assert.Equal(t, tc.flushSeq, f, "RQF_FLUSH_SEQ")
			assert.Equal(t, tc.ioStat, s, "RQF_IO_STAT")
		})
	}
}
