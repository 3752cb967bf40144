// Package checkout locates this repository's checkout and the go command, for
// the tooling that builds or runs something from it (the collector, etcd's
// install script, the writer).
package checkout

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is the receiver's Go module, the root of this repository.
const ModulePath = "github.com/etcdebpf/etcdebpfreceiver"

// Root finds the checkout: the directory holding this module's go.mod, from
// the working directory upwards.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modulePathOf(data) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside a checkout of %s (no go.mod declaring it above the working directory): run from the repository", ModulePath)
		}
		dir = parent
	}
}

func modulePathOf(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// GoTool is the go command: from PATH, else where the Go installer puts it
// (sudo's secure_path often leaves /usr/local/go/bin out).
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
