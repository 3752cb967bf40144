// Package scenario runs the failure the receiver exists for: a three-member
// etcd cluster on loopback under a put load, traced by the collector with one
// receiver, while faults are injected and removed on a schedule (a member's
// disk throttled through a cgroup I/O limit, a noisy neighbour writing to the
// same disk, CPU contention on one member's CPU). It records, per phase, what
// etcd said about itself, and keeps what the receiver sent, so that the two
// can be set side by side. The demo's second act and the e2e test run it.
package scenario
