//go:build linux

package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Chromium finds a Chromium to render the picture with: Debian's chromium,
// or another build by its usual names.
func Chromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium in PATH: apt-get install chromium")
}

// headless runs Chromium headless on the page at htmlPath with args, as root
// (hence no sandbox), with a profile of its own that is removed afterwards.
func headless(ctx context.Context, htmlPath string, args ...string) ([]byte, error) {
	bin, err := Chromium()
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "etcdebpf-chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	abs, err := filepath.Abs(htmlPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--hide-scrollbars", "--force-device-scale-factor=1",
		"--user-data-dir=" + profile}, append(args, "file://"+abs)...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Screenshot renders the picture at htmlPath into a PNG at pngPath, the
// window the picture's size for n members.
func Screenshot(ctx context.Context, htmlPath, pngPath string, members int) error {
	abs, err := filepath.Abs(pngPath)
	if err != nil {
		return err
	}
	if _, err := headless(ctx, htmlPath, "--screenshot="+abs, fmt.Sprintf("--window-size=%d,%d", picWidth, PictureHeight(members))); err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("chromium wrote no screenshot: %w", err)
	}
	return nil
}

// DumpDOM is the page at htmlPath as Chromium parsed it.
func DumpDOM(ctx context.Context, htmlPath string) (string, error) {
	out, err := headless(ctx, htmlPath, "--dump-dom")
	return string(out), err
}
