package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// podman runs podman with its storage and state in dir, so the test writes
// nothing under /var/lib/containers or /run, and without a network. Images
// cannot be pulled here: the test image is built FROM scratch from local
// files.
type podman struct {
	bin     string
	global  []string
	runArgs []string
}

func (p *podman) cmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, p.bin, append(append([]string{}, p.global...), args...)...)
}

// run runs `podman run` of image with extra podman flags and the
// container's arguments; it returns the output and the error.
func (p *podman) run(t *testing.T, podFlags []string, image string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append(append(append([]string{"run", "--rm"}, p.runArgs...), podFlags...), image)
	out, err := p.cmd(ctx, append(full, args...)...).CombinedOutput()
	return string(out), err
}

// newPodman finds podman and a runtime that works on this machine, or
// skips. crun refuses hybrid cgroup hierarchies, where runc works.
func newPodman(t *testing.T) *podman {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("deploy: the image test runs podman as root (CI runs as root)")
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("deploy: podman is not installed (apt-get install podman runc): the image was not built or run")
	}
	dir := t.TempDir()
	p := &podman{bin: bin, global: []string{
		"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "none",
	},
		// Podman lowers its own RLIMIT_NPROC and cannot give a container
		// more than it has; lower limits can always be set.
		runArgs: []string{"--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"},
	}
	t.Cleanup(func() {
		// vfs layers are plain directories, but a failed run can leave a
		// mount behind; podman cleans its own state up.
		p.cmd(context.Background(), "system", "reset", "--force").Run()
	})
	return p
}

// libsOf lists the shared libraries (and loader) of a dynamic executable.
func libsOf(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	var libs []string
	for _, m := range regexp.MustCompile(`(?m)(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs
}

// install copies src to root/dst with mode (following symlinks).
func install(t *testing.T, root, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, dst)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode goes through the umask
		t.Fatal(err)
	}
}

// buildContext lays out the test image: the static chestfs at the
// Dockerfile's path, a setuid fusermount3 and cat with their libraries, the
// image's user and fuse.conf, and the demo image and key.
func buildContext(t *testing.T, chestfs string) string {
	t.Helper()
	ctx := t.TempDir()
	root := filepath.Join(ctx, "rootfs")
	install(t, root, chestfs, binPath, 0o755)
	for _, tool := range []struct {
		name string
		mode os.FileMode
	}{{"fusermount3", 0o755 | os.ModeSetuid}, {"cat", 0o755}} {
		path, err := exec.LookPath(tool.name)
		if err != nil {
			t.Skipf("deploy: %s is not installed here to copy into the test image", tool.name)
		}
		install(t, root, path, "/usr/bin/"+tool.name, tool.mode)
		for _, lib := range libsOf(t, path) {
			install(t, root, lib, lib, 0o755)
		}
	}
	files := map[string]string{
		"/etc/passwd":    fmt.Sprintf("root:x:0:0::/root:/sbin/nologin\nchestfs:x:%d:%d::/nonexistent:/sbin/nologin\n", imageUser, imageUser),
		"/etc/group":     fmt.Sprintf("root:x:0:\nchestfs:x:%d:\n", imageUser),
		"/etc/fuse.conf": "user_allow_other\n",
	}
	for p, s := range files {
		if err := os.WriteFile(filepath.Join(ctx, "f"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		install(t, root, filepath.Join(ctx, "f"), p, 0o644)
	}
	os.Remove(filepath.Join(ctx, "f"))
	install(t, root, "../testdata/demo.img", "/data/demo.img", 0o644)
	install(t, root, "../testdata/demo.key", "/data/demo.key", 0o644)
	for _, d := range []string{"mnt/chestfs", "run/chestfs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(root, d), imageUser, imageUser); err != nil {
			t.Fatal(err)
		}
	}
	containerfile := fmt.Sprintf("FROM scratch\nCOPY rootfs/ /\nUSER %d:%d\nENTRYPOINT [%q]\nCMD [\"--help\"]\n", imageUser, imageUser, binPath)
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// buildStatic builds chestfs as the Dockerfile does (no cgo) and checks it
// is static.
func buildStatic(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "chestfs")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "../cmd/chestfs")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	if b, err := exec.Command("ldd", out).CombinedOutput(); err == nil || !strings.Contains(string(b), "not a dynamic executable") {
		t.Fatalf("the binary is not static: ldd says %s", b)
	}
	return out
}

// TestImage builds an image from the static binary and runs it: --help,
// a read of the demo image without FUSE, and, once the binary has
// `chestfs run`, a FUSE mount in the container read by the wrapped command,
// as root and as the image's non-root user through the setuid fusermount3.
func TestImage(t *testing.T) {
	p := newPodman(t)
	chestfs := buildStatic(t)
	ctxDir := buildContext(t, chestfs)
	const image = "localhost/chestfs-deploy-test:latest"
	bctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := p.cmd(bctx, "build", "--network", "none", "-t", image, ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	out, err := p.run(t, nil, image)
	if err != nil && strings.Contains(out, "hybrid mode") {
		if _, lerr := exec.LookPath("runc"); lerr != nil {
			t.Skipf("deploy: crun cannot run containers on this cgroup layout and runc is not installed: %s", out)
		}
		p.global = append(p.global, "--runtime", "runc")
		out, err = p.run(t, nil, image)
	}
	if err != nil || !strings.Contains(out, "chestfs") || !strings.Contains(out, "COMMANDS") {
		t.Fatalf("chestfs --help in the container: %v\n%s", err, out)
	}
	t.Logf("podman: %v", p.global)

	out, err = p.run(t, nil, image, "ls", "--key-file", "/data/demo.key", "/data/demo.img", "/")
	if err != nil || !strings.Contains(out, "README.txt") {
		t.Fatalf("chestfs ls in the container: %v\n%s", err, out)
	}

	t.Run("daemon", func(t *testing.T) { mountInContainer(t, p, image) })

	t.Run("run", func(t *testing.T) {
		if err := exec.Command(chestfs, "run", "--help").Run(); err != nil {
			t.Skip("deploy: this build has no `chestfs run` yet: the mount in a container was not run")
		}
		want, err := os.ReadFile("../testdata/demo-src/README.txt")
		if err != nil {
			t.Fatal(err)
		}
		for _, user := range []string{"0:0", fmt.Sprintf("%d:%d", imageUser, imageUser)} {
			out, err := p.run(t, append([]string{"--user", user}, fuseFlags(t, user)...), image,
				"run", "--key-file", "/data/demo.key", "/data/demo.img", "/mnt/chestfs", "--", "/usr/bin/cat", "/mnt/chestfs/README.txt")
			if err != nil || !bytes.Contains([]byte(out), want) {
				t.Errorf("as %s: chestfs run ... -- cat: %v\n%s", user, err, out)
			}
		}
	})
}

// fuseFlags give a container /dev/fuse and SYS_ADMIN, all other
// capabilities dropped, as the Kubernetes example does. The host's
// /dev/fuse may be 0600 root; fusermount3 opens it as the calling user, so a
// non-root user gets a 0666 node of the same device made in a temporary
// directory (the host's node is never changed).
func fuseFlags(t *testing.T, user string) []string {
	t.Helper()
	dev := "/dev/fuse"
	if !strings.HasPrefix(user, "0:") {
		dev = filepath.Join(t.TempDir(), "fuse")
		if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 229))); err != nil {
			t.Skipf("deploy: cannot make a FUSE device node for the non-root user: %v", err)
		}
		if err := os.Chmod(dev, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"--device", dev + ":/dev/fuse", "--cap-drop", "ALL", "--cap-add", "SYS_ADMIN"}
}

// mountInContainer runs `chestfs mount` in a detached container, as root
// and as the image's user (through the setuid fusermount3), reads a file
// of the mount with podman exec, then stops the container: SIGTERM must
// unmount and exit 0.
func mountInContainer(t *testing.T, p *podman, image string) {
	want, err := os.ReadFile("../testdata/demo-src/README.txt")
	if err != nil {
		t.Fatal(err)
	}
	for i, user := range []string{"0:0", fmt.Sprintf("%d:%d", imageUser, imageUser)} {
		name := fmt.Sprintf("chestfs-deploy-test-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		args := append(append(append([]string{"run", "-d", "--name", name, "--user", user}, p.runArgs...), fuseFlags(t, user)...),
			image, "mount", "--key-file", "/data/demo.key", "/data/demo.img", "/mnt/chestfs")
		if out, err := p.cmd(ctx, args...).CombinedOutput(); err != nil {
			cancel()
			t.Fatalf("as %s: podman run -d: %v\n%s", user, err, out)
		}
		// The mount comes up after key derivation (argon2): wait until the
		// container's mount table shows it, or the container stops.
		for ctx.Err() == nil {
			mounts, _ := p.cmd(ctx, "exec", name, "/usr/bin/cat", "/proc/mounts").Output()
			if strings.Contains(string(mounts), " /mnt/chestfs fuse") {
				break
			}
			state, _ := p.cmd(ctx, "inspect", "-f", "{{.State.Running}}", name).Output()
			if strings.TrimSpace(string(state)) != "true" {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		got, err := p.cmd(ctx, "exec", name, "/usr/bin/cat", "/mnt/chestfs/README.txt").Output()
		if !bytes.Equal(got, want) {
			logs, _ := p.cmd(context.Background(), "logs", name).CombinedOutput()
			t.Errorf("as %s: read through the mount in the container: %v\n%s", user, err, logs)
		}
		// Stop with a context of its own: the wait above may have used ctx up.
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if out, err := p.cmd(sctx, "stop", "-t", "20", name).CombinedOutput(); err != nil {
			t.Errorf("as %s: podman stop: %v\n%s", user, err, out)
		}
		code, _ := p.cmd(sctx, "inspect", "-f", "{{.State.ExitCode}}", name).Output()
		if strings.TrimSpace(string(code)) != "0" {
			logs, _ := p.cmd(sctx, "logs", name).CombinedOutput()
			t.Errorf("as %s: exit code %s after SIGTERM, want 0\n%s", user, code, logs)
		}
		p.cmd(sctx, "rm", "-f", name).Run()
		cancel()
	}
}
