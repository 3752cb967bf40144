//go:build linux && (amd64 || arm64)

package bpf

import "crypto/sha256"

// ObjectsDigest is the SHA-256 of the embedded BPF objects, etcd_monitor.c's then
// block.c's: what identifies this build's programs in the kernel, so that an agent
// tells programs another build pinned from its own.
func ObjectsDigest() [sha256.Size]byte {
	h := sha256.New()
	h.Write(_MonitorBytes)
	h.Write(_BlockBytes)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
