//go:build linux && (amd64 || arm64)

package hostwatch

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/etcdebpf/etcdebpfreceiver/internal/host"
)

// ExecutableFilter is the kernel's set of allowed executables.
type ExecutableFilter interface {
	AllowExecutable(host.FileID) error
	ForbidExecutable(host.FileID) error
}

// maxOldExecutables is how many replaced executables stay allowed while processes
// still run them: the kernel's target_exes map holds the current one and these.
const maxOldExecutables = 7

// Executable keeps the kernel's allowed executables in step with the file at path:
// an upgrade replaces the file, and the new one must be traced from its first
// exec, while an etcd still running the old one stays traced until it exits.
type Executable struct {
	path    string
	current host.FileID
	old     []host.FileID // replaced, allowed while a process runs them
	missing bool          // the path was missing at the last check (logged once)
	logger  *zap.Logger
}

// NewExecutable resolves path, the file the kernel filter will allow, and
// returns its watch; ID is what to allow at the start.
func NewExecutable(path string, logger *zap.Logger) (*Executable, error) {
	id, err := host.ExecutableID(path)
	if err != nil {
		return nil, fmt.Errorf("%w; set executable to the path of the etcd binary the traced etcd runs (ls -l /proc/<etcd pid>/exe)", err)
	}
	return &Executable{path: path, current: id, logger: logger}, nil
}

// ID is the file at path as last seen: the one the kernel filter allows.
func (w *Executable) ID() host.FileID { return w.current }

// Check picks up a changed file at path and retires replaced files nothing runs.
func (w *Executable) Check(t ExecutableFilter) {
	id, err := host.ExecutableID(w.path)
	switch {
	case err != nil && !w.missing:
		w.missing = true
		w.logger.Warn("The executable is gone (an upgrade in progress?); the files already allowed stay allowed",
			zap.String("executable", w.path), zap.Error(err))
	case err == nil && id != w.current:
		w.missing = false
		if err := t.AllowExecutable(id); err != nil {
			w.logger.Error("Cannot trace the new executable", zap.String("executable", w.path), zap.Error(err))
			return
		}
		w.logger.Info("The executable changed: tracing the new file, and the old one while processes run it",
			zap.String("executable", w.path), zap.Uint64("inode", id.Ino), zap.Uint64("old_inode", w.current.Ino))
		w.old = append(w.old, w.current)
		w.current = id
	case err == nil:
		w.missing = false
	}
	if len(w.old) == 0 {
		return
	}
	running := host.Proc.RunningExecutables(w.old)
	kept := w.old[:0]
	for i, old := range w.old {
		// An inode nothing runs may be freed and its number reused by another file.
		if running[old] && len(w.old)-i <= maxOldExecutables {
			kept = append(kept, old)
			continue
		}
		if err := t.ForbidExecutable(old); err != nil {
			w.logger.Warn("Removing a replaced executable from the kernel filter failed", zap.Error(err))
		}
	}
	w.old = kept
}
