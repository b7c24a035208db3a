package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const nobody = 65534

// userSandbox is a fresh world-readable directory with copies of the demo
// image and key, a mountpoint owned by nobody and a 0666 FUSE device node of
// its own (made with mknod, never touching the host's /dev/fuse), for tests
// that run chestfs as an ordinary user. CI's checkout may sit under a
// directory nobody cannot enter, hence the copies.
type userSandbox struct{ dir, img, key, mnt, fuse string }

func newUserSandbox(t *testing.T) userSandbox {
	t.Helper()
	requireFUSE(t)
	base, err := os.MkdirTemp("/tmp", "chestfs-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	s := userSandbox{dir: base, img: filepath.Join(base, "demo.img"), key: filepath.Join(base, "demo.key"),
		mnt: filepath.Join(base, "mnt"), fuse: filepath.Join(base, "fuse")}
	for _, cp := range [][2]string{{demoImg, s.img}, {demoKey, s.key}} {
		b, err := os.ReadFile(cp[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp[1], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(s.mnt, 0o755)
	os.Chown(s.mnt, nobody, nobody)
	if err := syscall.Mknod(s.fuse, syscall.S_IFCHR|0o666, 10<<8|229); err != nil {
		t.Fatal(err)
	}
	os.Chmod(s.fuse, 0o666)
	return s
}

// shQuote quotes s for sh.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestRunInUserNamespace: as an ordinary user inside `unshare --user
// --map-root-user --mount` with /dev/fuse bound in, chestfs run mounts with
// mount(2) itself (fusermount3 is hidden) and the command reads through it.
func TestRunInUserNamespace(t *testing.T) {
	s := newUserSandbox(t)
	empty := filepath.Join(s.dir, "no-fusermount")
	os.WriteFile(empty, nil, 0o644)
	script := "mount --bind " + shQuote(s.fuse) + " /dev/fuse && " +
		"{ ! command -v fusermount3 >/dev/null || mount --bind " + shQuote(empty) + " \"$(command -v fusermount3)\"; } && " +
		"exec " + shQuote(binPath) + " run --key-file " + shQuote(s.key) + " " + shQuote(s.img) + " " + shQuote(s.mnt) +
		" -- cat " + shQuote(filepath.Join(s.mnt, "README.txt"))
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("chestfs run in a user namespace: %v\n%s", err, se.String())
	}
	want, _ := os.ReadFile(filepath.Join(demoSrc, "README.txt"))
	if so.String() != string(want) {
		t.Errorf("read through the mount: %q", so.String())
	}
	if !strings.Contains(se.String(), "mounted") {
		t.Errorf("no 'mounted' line: %s", se.String())
	}
}

// TestRunAsUserThroughFusermount: an ordinary user outside any user
// namespace mounts through the setuid fusermount3 (in a private mount
// namespace that binds the test's own FUSE node over /dev/fuse).
func TestRunAsUserThroughFusermount(t *testing.T) {
	s := newUserSandbox(t)
	script := "mount --bind " + shQuote(s.fuse) + " /dev/fuse && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- " +
		shQuote(binPath) + " run --key-file " + shQuote(s.key) + " " + shQuote(s.img) + " " + shQuote(s.mnt) +
		" -- sh -c " + shQuote("cat "+filepath.Join(s.mnt, "docs/numbers.txt")+" && grep -c ' "+s.mnt+" ' /proc/self/mountinfo")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("chestfs run as nobody: %v\n%s", err, se.String())
	}
	want, _ := os.ReadFile(filepath.Join(demoSrc, "docs/numbers.txt"))
	if !strings.HasPrefix(so.String(), string(want)) || !strings.HasSuffix(so.String(), "1\n") {
		t.Errorf("output %q", so.String())
	}
}

// TestRunExitStatusAndSignals: run exits with the command's status and
// leaves no mount; SIGTERM to chestfs reaches the command first, then the
// mount goes.
func TestRunExitStatusAndSignals(t *testing.T) {
	requireFUSE(t)
	mp := t.TempDir()
	r := run(t, "run", "--key-file", demoKey, demoImg, mp, "--", "sh", "-c", "test -s "+mp+"/README.txt && exit 7")
	if r.code != 7 || isMounted(mp) {
		t.Errorf("exit %d (want the command's 7), still mounted %v; %s", r.code, isMounted(mp), r.stderr)
	}
	r = run(t, "run", "--key-file", demoKey, demoImg, mp, "--", "/nonexistent/cmd")
	if r.code != 127 || isMounted(mp) {
		t.Errorf("missing command: exit %d, want 127; %s", r.code, r.stderr)
	}

	cmd := exec.Command(binPath, "run", "--key-file", demoKey, demoImg, mp, "--", "sh", "-c",
		`trap 'test -s `+mp+`/README.txt && echo term-while-mounted; exit 3' TERM; echo ready; while :; do sleep 0.05; done`)
	out, _ := cmd.StdoutPipe()
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("child did not start: %s", se.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("exit %v, want the command's 3; %s", err, se.String())
	}
	if len(rest) != 1 || rest[0] != "term-while-mounted" || isMounted(mp) {
		t.Errorf("child saw %q; still mounted %v", rest, isMounted(mp))
	}
}

// TestReadyFileNotifyAndSIGHUP: --ready-file appears only once the mount
// serves (a read right away succeeds), systemd's NOTIFY_SOCKET gets READY=1
// and STOPPING=1, and SIGHUP unmounts like SIGTERM and removes the file.
func TestReadyFileNotifyAndSIGHUP(t *testing.T) {
	requireFUSE(t)
	dir, mp := t.TempDir(), t.TempDir()
	ready := filepath.Join(dir, "ready")
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(binPath, "mount", "--key-file", demoKey, "--ready-file", ready, demoImg, mp)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready file: %s", se.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "README.txt")); err != nil || len(b) == 0 {
		t.Fatalf("read as soon as the ready file appeared: %v", err)
	}
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := conn.ReadFrom(buf); err != nil || string(buf[:n]) != "READY=1" {
		t.Errorf("sd_notify: %q, %v", buf[:n], err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGHUP: %v; %s", err, se.String())
	}
	if n, _, err := conn.ReadFrom(buf); err != nil || string(buf[:n]) != "STOPPING=1" {
		t.Errorf("sd_notify at stop: %q, %v", buf[:n], err)
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) || isMounted(mp) {
		t.Errorf("after SIGHUP: ready file %v, mounted %v", err, isMounted(mp))
	}
	if !strings.Contains(se.String(), "msg=mounted") {
		t.Errorf("no 'mounted' log line by default: %s", se.String())
	}
}

// TestDaemonAndUnmount: --daemon returns once the mount serves; chestfs
// unmount ends it, and the background server exits.
func TestDaemonAndUnmount(t *testing.T) {
	requireFUSE(t)
	mp := t.TempDir()
	r := run(t, "mount", "--daemon", "--key-file", demoKey, demoImg, mp)
	if r.code != 0 {
		t.Fatalf("mount --daemon: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() {
		if isMounted(mp) {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	if b, err := os.ReadFile(filepath.Join(mp, "README.txt")); err != nil || len(b) == 0 {
		t.Fatalf("read right after --daemon returned: %v", err)
	}
	var pid int
	if _, err := fmtSscan(r.stderr, &pid); err != nil {
		t.Fatalf("no pid in %q", r.stderr)
	}
	mustRun(t, "unmount", mp)
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("background server %d still running after unmount", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if isMounted(mp) {
		t.Error("still mounted")
	}
	if r := run(t, "unmount", mp); r.code == 0 || !strings.Contains(r.stderr, "not mounted") {
		t.Errorf("unmount of nothing: exit %d, %q", r.code, r.stderr)
	}
}

// fmtSscan finds "(pid N)" in s.
func fmtSscan(s string, pid *int) (int, error) {
	i := strings.Index(s, "(pid ")
	if i < 0 {
		return 0, os.ErrNotExist
	}
	return 1, json.Unmarshal([]byte(strings.TrimRight(strings.Fields(s[i+5:])[0], ");")), pid)
}

// TestDeadMountIsCleared: after SIGKILL the mountpoint is dead
// ("Transport endpoint is not connected"); the next mount clears it.
func TestDeadMountIsCleared(t *testing.T) {
	requireFUSE(t)
	mp := t.TempDir()
	m := startMount(t, nil, "--key-file", demoKey, demoImg, mp)
	m.cmd.Process.Kill()
	<-m.done
	if _, err := os.ReadDir(mp); err == nil {
		t.Fatal("after SIGKILL the mount still answers: the test proves nothing")
	}
	// The mount table still lists the dead mount: wait for the new server's word instead.
	m2 := startMount(t, nil, "--key-file", demoKey, demoImg, mp)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(m2.stderr.String(), "msg=mounted") {
		if time.Now().After(deadline) {
			t.Fatalf("the second mount did not come up: %s", m2.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "README.txt")); err != nil || len(b) == 0 {
		t.Errorf("read after recovery: %v", err)
	}
	if !strings.Contains(m2.stderr.String(), "dead FUSE mount") {
		t.Errorf("no word of the cleared mount: %s", m2.stderr)
	}
	if err := m2.stop(t); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestInterruptDuringKeyRelease: SIGINT while key release waits on a
// service that never answers ends the mount within 2 s, exit status 130.
func TestInterruptDuringKeyRelease(t *testing.T) {
	requireFUSE(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // accept and never answer
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	blob := filepath.Join(t.TempDir(), "key.json")
	ep := "https://" + l.Addr().String()
	os.WriteFile(blob, []byte(`{"kid":"k","kty":"oct-HSM","authority":{"endpoint":"`+ep+`"},"akv":{"endpoint":"`+ep+`"}}`), 0o600)
	cmd := exec.Command(binPath, "mount", "--skr", blob, "--attestation", "fake", "--akv-token", "x", demoImg, t.TempDir())
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("exit %v, want 130; %s", err, se.String())
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v after SIGINT", d)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 30 s after SIGINT: %s", se.String())
	}
}

// TestMetricsEndpoint: --metrics-addr serves /metrics with counters that
// move during a read, and /readyz answers 200 only while mounted.
func TestMetricsEndpoint(t *testing.T) {
	requireFUSE(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	mp := t.TempDir()
	m := startMount(t, nil, "--key-file", demoKey, "--metrics-addr", addr, demoImg, mp)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for code, _ := get("/readyz"); code != 200; code, _ = get("/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never 200: %s", m.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	readBytes := func() float64 {
		_, body := get("/metrics")
		var total float64
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "chestfs_fuse_read_bytes_total") {
				var v float64
				fmt.Sscan(strings.Fields(line)[1], &v)
				total += v
			}
		}
		return total
	}
	before := readBytes()
	if _, err := os.ReadFile(filepath.Join(mp, "docs/numbers.txt")); err != nil {
		t.Fatal(err)
	}
	if after := readBytes(); after <= before {
		t.Errorf("chestfs_fuse_read_bytes_total did not move: %v -> %v", before, after)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if err := m.stop(t); err != nil {
		t.Errorf("exit: %v", err)
	}
	if code, _ := get("/readyz"); code == 200 {
		t.Error("/readyz 200 after the mount went")
	}
}
