package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrossBuild builds chestfs for every released platform, and every
// package for linux/arm64, so that a Linux-only call or constant in a file
// without a build tag fails here rather than on a user's Mac or Windows box.
func TestCrossBuild(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to cross-compile with")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ goos, goarch, pkg string }{
		{"darwin", "arm64", "./cmd/chestfs"},
		{"darwin", "amd64", "./cmd/chestfs"},
		{"windows", "amd64", "./cmd/chestfs"},
		{"linux", "arm64", "./..."},
	} {
		t.Run(c.goos+"_"+c.goarch, func(t *testing.T) {
			args := []string{"build", "-o", os.DevNull, c.pkg}
			if c.pkg == "./..." {
				args = []string{"build", c.pkg} // several packages: nothing is written
			}
			cmd := exec.Command(goBin, args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS="+c.goos, "GOARCH="+c.goarch, "CGO_ENABLED=0", "GOFLAGS=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "unsupported GOOS/GOARCH") {
					t.Skipf("this Go toolchain cannot cross-compile to %s/%s: %s", c.goos, c.goarch, out)
				}
				t.Fatalf("GOOS=%s GOARCH=%s go build %s: %v\n%s", c.goos, c.goarch, c.pkg, err, out)
			}
		})
	}
}
