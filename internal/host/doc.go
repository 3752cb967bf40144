// Package host reads what the host's kernel says of its disks, its files and its
// processes: /sys/block, the mount table, procfs. It keeps no state: the tracer,
// the converters, the host watch and the process registry ask it, so that each
// of these facts is read one way, in one place.
package host
