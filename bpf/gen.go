// Package bpf holds the kernel side of the receiver: etcd_monitor.c (the syscalls),
// block.c (the disks) and the Go bindings bpf2go generates from them. The generated
// files are committed so that the module builds without clang; `make generate`
// regenerates them.
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -type event -cflags "-O2 -g -Wall -Werror" Monitor etcd_monitor.c
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror" Block block.c
