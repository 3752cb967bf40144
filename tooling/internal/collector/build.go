//go:build linux

package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/checkout"
	"github.com/etcdebpf/etcdebpfreceiver/internal/testing/subprocess"
)

// BinaryRel is where `make collector` puts the collector, relative to the module root.
const BinaryRel = "_build/otelcol-etcd/otelcol-etcd"

// inputs lists the files the collector binary is built from in this checkout:
// the Go and embedded files of every package of the module that the receiver
// imports, go.mod, go.sum and the ocb manifest.
func inputs(ctx context.Context, root string) ([]string, error) {
	files := []string{"go.mod", "go.sum", "builder-config.yaml"}
	for i, f := range files {
		files[i] = filepath.Join(root, f)
	}
	cmd := exec.CommandContext(ctx, checkout.GoTool(), "list", "-deps",
		"-f", `{{if .Module}}{{if eq .Module.Path "`+checkout.ModulePath+`"}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}`, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	for line := range strings.Lines(string(out)) {
		if line = strings.TrimSpace(line); line != "" {
			files = append(files, line)
		}
	}
	return files, nil
}

// stale reports why the binary at bin must be rebuilt from the checkout at
// root, or "" when it is up to date: `make collector` dates bin+".stamp" from
// the start of its last successful build, and every input must be older.
func stale(ctx context.Context, root, bin string) (string, error) {
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		return bin + " does not exist", nil
	} else if err != nil {
		return "", err
	}
	st, err := os.Stat(bin + ".stamp")
	if errors.Is(err, os.ErrNotExist) {
		return "the last build did not finish (no " + filepath.Base(bin) + ".stamp)", nil
	} else if err != nil {
		return "", err
	}
	files, err := inputs(ctx, root)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		in, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		if in.ModTime().After(st.ModTime()) {
			rel, _ := filepath.Rel(root, f)
			return rel + " changed after the last build", nil
		}
	}
	return "", nil
}

// PrebuiltEnv names a collector binary to use as it is, where there is no
// checkout to build from (make kernels' virtual machines).
const PrebuiltEnv = "ETCDEBPF_COLLECTOR"

// ensure returns the path of a collector binary built from the checkout at
// root, building it with `make collector` (ocb) first when it is stale. Build
// output and progress go to progress. Concurrent callers (a demo and a test)
// take turns on a lock file, and the second finds the binary fresh.
func ensure(ctx context.Context, root string, progress io.Writer) (string, error) {
	bin := filepath.Join(root, BinaryRel)
	if why, err := stale(ctx, root, bin); err != nil {
		return "", err
	} else if why == "" {
		return bin, nil
	}

	if err := os.MkdirAll(filepath.Join(root, "_build"), 0o755); err != nil {
		return "", err
	}
	unlock, err := subprocess.Lock(filepath.Join(root, "_build", ".collector.lock"), progress, "==> waiting for another build of the collector to finish")
	if err != nil {
		return "", err
	}
	defer unlock()

	why, err := stale(ctx, root, bin)
	if err != nil {
		return "", err
	} else if why == "" {
		return bin, nil
	}
	fmt.Fprintf(progress, "==> building the collector with ocb (`make collector`): %s; about 2 minutes cold, seconds warm\n", why)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "collector")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(checkout.GoTool())+string(os.PathListSeparator)+os.Getenv("PATH"))
	if err := subprocess.RunLong(ctx, cmd, progress, ""); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("interrupted while building the collector: %w", err)
		}
		return "", fmt.Errorf("make collector failed after %s: %w (its output is above; is make installed?)", time.Since(start).Round(time.Second), err)
	}
	fmt.Fprintf(progress, "==> collector built in %s\n", time.Since(start).Round(time.Second))
	return bin, nil
}

// Binary is the collector to run: bin when given (it must exist), else the one
// PrebuiltEnv names, else the one built from the checkout, rebuilt first when
// stale (ensure).
func Binary(ctx context.Context, bin string, progress io.Writer) (string, error) {
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("collector %s: %w; build it with `make collector`", bin, err)
		}
		return bin, nil
	}
	if bin := os.Getenv(PrebuiltEnv); bin != "" {
		return bin, nil
	}
	root, err := checkout.Root()
	if err != nil {
		return "", fmt.Errorf("%w, or give a built collector", err)
	}
	return ensure(ctx, root, progress)
}
