//go:build linux

package secret

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary re-runs itself in two roles, chosen by this variable:
// "reader" starts a "holder" child, hands it a random marker and tries to
// read the marker back through /proc/PID/mem; "holder" (hardened or not)
// keeps the marker in a Buffer until its stdin closes.
const roleEnv = "CHESTFS_SECRET_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "holder", "holder-unhardened":
		os.Exit(holder(os.Getenv(roleEnv) == "holder"))
	case "reader":
		os.Exit(reader())
	}
	os.Exit(m.Run())
}

// holder reads the marker from stdin into a Buffer, prints its address and
// waits for EOF.
func holder(harden bool) int {
	if harden {
		if err := Harden(); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	in := bufio.NewReader(os.Stdin)
	var n int
	if _, err := fmt.Fscanln(in, &n); err != nil {
		fmt.Println("error", err)
		return 1
	}
	b, err := New(n)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer b.Destroy()
	if _, err := io.ReadFull(in, b.Bytes()); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Printf("ready %d\n", uintptr(unsafe.Pointer(&b.Bytes()[0])))
	io.Copy(io.Discard, in)
	return 0
}

// reader runs a holder (as its own child, so that a Yama ptrace scope of 1
// would not be what stops it), then reports on stdout: "limits <core line>"
// and "mem ok" (marker read back), "mem mismatch" or "mem errno NAME".
func reader() int {
	role := os.Args[len(os.Args)-1]
	marker := make([]byte, 32)
	rand.Read(marker)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Println("error start", err)
		return 1
	}
	defer cmd.Wait()
	defer stdin.Close()
	fmt.Fprintf(stdin, "%d\n", len(marker))
	stdin.Write(marker)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		fmt.Printf("error holder said %q: %v\n", line, err)
		return 1
	}
	addr, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "ready ")), 10, 64)
	pid := cmd.Process.Pid
	if lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err == nil {
		for _, l := range strings.Split(string(lim), "\n") {
			if strings.HasPrefix(l, "Max core file size") {
				fmt.Println("limits", strings.Join(strings.Fields(l), " "))
			}
		}
	}
	got := make([]byte, len(marker))
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err == nil {
		_, err = f.ReadAt(got, int64(addr))
		f.Close()
	}
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		fmt.Println("mem errno", unix.ErrnoName(errno))
	case err != nil:
		fmt.Println("mem error", err)
	case bytes.Equal(got, marker):
		fmt.Println("mem ok")
	default:
		fmt.Println("mem mismatch", hex.EncodeToString(got))
	}
	return 0
}

// runReader runs the reader role (and through it a holder) as an ordinary
// user: as root, nobody (65534), since root's CAP_SYS_PTRACE reads anything.
func runReader(t *testing.T, holderRole string) map[string]string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot find the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^$", holderRole)
	cmd.Env = append(os.Environ(), roleEnv+"=reader")
	if os.Geteuid() == 0 {
		// The build directory is root's and private: copy the binary where nobody can run it.
		dir, err := os.MkdirTemp("", "secret-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "secret.test")
		data, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd.Path, cmd.Args[0] = bin, bin
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Skipf("cannot run the helper processes as an ordinary user (%v): %s %s", err, out, ee.Stderr)
		}
		t.Skipf("cannot run the helper processes as an ordinary user: %v", err)
	}
	res := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		res[k] = v
	}
	if e, ok := res["error"]; ok {
		t.Fatalf("helper: %s", e)
	}
	return res
}

// TestHardenBlocksSameUserMemoryReads: a process of the same (ordinary)
// uid reads the marker out of an unhardened process's Buffer, and cannot
// out of a hardened one; the hardened one has a core size limit of 0.
func TestHardenBlocksSameUserMemoryReads(t *testing.T) {
	control := runReader(t, "holder-unhardened")
	if control["mem"] != "ok" {
		t.Skipf("this system already stops same-uid reads of /proc/PID/mem (%q), so hardening cannot be shown", control["mem"])
	}
	res := runReader(t, "holder")
	t.Logf("unhardened: %v; hardened: %v", control, res)
	switch res["mem"] {
	case "errno EACCES", "errno EPERM", "errno EIO":
	default:
		t.Errorf("reading a hardened process's memory: %q, want EACCES, EPERM or EIO", res["mem"])
	}
	if res["limits"] != "Max core file size 0 0 bytes" {
		t.Errorf("hardened process limits: %q, want core size 0", res["limits"])
	}
}

// smapsEntry returns the /proc/self/smaps block of the mapping holding addr.
func smapsEntry(t *testing.T, addr uintptr) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	var cur strings.Builder
	var hit bool
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			if hit {
				return cur.String()
			}
			cur.Reset()
			lo, hi, _ := strings.Cut(f[0], "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			b, _ := strconv.ParseUint(hi, 16, 64)
			hit = uint64(addr) >= a && uint64(addr) < b
		}
		cur.WriteString(l + "\n")
	}
	if hit {
		return cur.String()
	}
	t.Fatalf("no mapping holds %#x", addr)
	return ""
}

// TestBufferMemory: the Buffer is its own mapping, excluded from dumps
// ("dd"), locked when RLIMIT_MEMLOCK allows; Destroy wipes and unmaps it.
func TestBufferMemory(t *testing.T) {
	b, err := New(100)
	if err != nil {
		t.Fatal(err)
	}
	p := b.Bytes()
	if len(p) != 100 || cap(p) != 100 {
		t.Fatalf("Bytes: len %d cap %d", len(p), cap(p))
	}
	copy(p, "secret material")
	addr := uintptr(unsafe.Pointer(&p[0]))
	e := smapsEntry(t, addr)
	if !strings.Contains(e, " dd") {
		t.Errorf("mapping lacks VmFlags dd (MADV_DONTDUMP):\n%s", e)
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil && lim.Cur >= uint64(os.Getpagesize()) {
		if !strings.Contains(e, " lo") {
			t.Errorf("mapping not locked although RLIMIT_MEMLOCK is %d:\n%s", lim.Cur, e)
		}
	}
	b.Destroy()
	if b.Bytes() != nil || b.Len() != 0 {
		t.Error("Bytes after Destroy")
	}
	b.Destroy() // twice is fine
	data, _ := os.ReadFile("/proc/self/maps")
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		z, _ := strconv.ParseUint(hi, 16, 64)
		if uint64(addr) >= a && uint64(addr) < z && strings.Contains(l, "rw") && len(f) == 5 {
			// An anonymous mapping may have been reused by the runtime;
			// only a mapping still flagged dd would be ours.
			if strings.Contains(smapsEntry(t, addr), " dd") {
				t.Errorf("mapping still present after Destroy: %s", l)
			}
		}
	}
}

func TestFromBytesWipesSource(t *testing.T) {
	src := []byte("passphrase")
	b, err := FromBytes(src)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy()
	if string(b.Bytes()) != "passphrase" {
		t.Errorf("buffer holds %q", b.Bytes())
	}
	if !bytes.Equal(src, make([]byte, len(src))) {
		t.Errorf("source not wiped: %q", src)
	}
	if z, err := New(0); err != nil || z.Len() != 0 || z.Bytes() != nil {
		t.Errorf("New(0): %v", err)
	}
}

func TestHardenInProcess(t *testing.T) {
	// Harden is irreversible for this process; check it in a child only.
	if os.Getenv(roleEnv) != "" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDumpableChild$")
	cmd.Env = append(os.Environ(), "CHESTFS_SECRET_DUMPABLE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dumpable=0 core=0") {
		t.Fatalf("child: %v: %s", err, out)
	}
}

func TestDumpableChild(t *testing.T) {
	if os.Getenv("CHESTFS_SECRET_DUMPABLE_CHILD") == "" {
		t.Skip("run by TestHardenInProcess")
	}
	if err := Harden(); err != nil {
		t.Fatal(err)
	}
	d, err := Dumpable()
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_CORE, &lim)
	fmt.Printf("dumpable=%d core=%d err=%v\n", d, lim.Cur, err)
}

func TestWipeBigInt(t *testing.T) {
	x, _ := new(big.Int).SetString("123456789012345678901234567890123456789", 10)
	words := x.Bits()
	WipeBigInt(x)
	if x.Sign() != 0 {
		t.Error("not zero")
	}
	for _, w := range words[:cap(words)] {
		if w != 0 {
			t.Fatalf("word left: %x", w)
		}
	}
}
