//go:build linux && (amd64 || arm64)

package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
)

// Find returns the etcd server binary to run: given (the binary or its
// directory) when not empty, else Binary's, else the one scripts/install-etcd.sh
// builds from the Go module proxy (a few minutes, once; its progress goes to
// progress).
func Find(ctx context.Context, given string, progress io.Writer) (string, error) {
	if given != "" {
		p := given
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			p = filepath.Join(p, "etcd")
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("etcd %s: %w; give the etcd server binary or its directory, or none to install etcd", given, err)
		}
		if filepath.Base(p) != "etcd" {
			return "", fmt.Errorf("etcd %s: the binary must be named etcd (the collector's receiver matches that process name)", given)
		}
		return p, nil
	}
	if p, err := Binary(); err == nil {
		return p, nil
	}
	root, err := checkout.Root()
	if err != nil {
		return "", fmt.Errorf("no etcd found and cannot run scripts/install-etcd.sh (%w): give one", err)
	}
	fmt.Fprintln(progress, "etcd: not installed; building it from the Go module proxy with scripts/install-etcd.sh (a few minutes, once)")
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "install-etcd.sh"))
	cmd.Dir = root
	cmd.Stderr = progress
	stdout, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/install-etcd.sh failed: %w (its output is above)", err)
	}
	lines := strings.Fields(strings.TrimSpace(string(stdout)))
	if len(lines) == 0 {
		return "", errors.New("scripts/install-etcd.sh printed no bin directory")
	}
	return filepath.Join(lines[len(lines)-1], "etcd"), nil
}

// Version is what bin --version says first, or "version unknown".
func Version(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "version unknown"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}
