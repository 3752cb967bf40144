// Package hostwatch watches the host for what the kernel filters depend on: the
// executable file being replaced, selected processes exiting, processes losing
// records. Whether a process still runs, it asks the process registry.
package hostwatch
