package pack

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY returns a pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Skipf("ptsname: %v", e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestProgressOnTerminal: on a terminal Pack draws its bar up to 100%; the
// same writer type on a plain file gets nothing.
func TestProgressOnTerminal(t *testing.T) {
	needTools(t, "mkfs.ext4")
	master, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Fatal("a pty slave is not a terminal")
	}
	var got bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&got, master) // ends with EIO once the slave is closed
	}()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "src")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(dir, filepath.Join(tmp, "img"), []byte("k"))
	opts.Progress = slave
	if _, err := Pack(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	<-done
	out := got.String()
	for _, want := range []string{"building ext4", "encrypting [", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q: %q", want, out)
		}
	}

	plain, err := os.Create(filepath.Join(tmp, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	opts.Image, opts.Progress = filepath.Join(tmp, "img2"), plain
	if _, err := Pack(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	if fi, _ := plain.Stat(); fi.Size() != 0 {
		t.Errorf("progress written to a plain file (%d bytes)", fi.Size())
	}
}
