package pack

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/internal/progress"
	"github.com/chestfs/chestfs/internal/ptytest"
)

// TestProgressOnTerminal: on a terminal Pack draws its steps and bar up to
// 100%; a plain file gets at most plain progress lines; a quiet Printer
// gets nothing. Result.UUID is the header's UUID as cryptsetup reads it.
func TestProgressOnTerminal(t *testing.T) {
	needTools(t, "mkfs.ext4")
	master, slave := ptytest.Open(t)
	if !progress.IsTerminal(slave) {
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
	res, err := Pack(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	slave.Close()
	<-done
	out := got.String()
	for _, want := range []string{"\x1b[Kchestfs pack: building ext4", "chestfs pack: encrypting", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q: %q", want, out)
		}
	}
	if len(res.UUID) != 36 {
		t.Errorf("Result.UUID %q", res.UUID)
	} else if _, err := exec.LookPath("cryptsetup"); err == nil {
		if u := strings.TrimSpace(mustRun(t, "cryptsetup", "luksUUID", opts.Image)); u != res.UUID {
			t.Errorf("Result.UUID %q, cryptsetup luksUUID %q", res.UUID, u)
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
	log, err := os.ReadFile(plain.Name())
	if err != nil {
		t.Fatal(err)
	}
	// Off a terminal: only periodic lines of the encryption (if it lasts
	// 5 s), no steps, no control characters.
	for _, l := range strings.Split(strings.TrimSuffix(string(log), "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, "chestfs pack: encrypting") {
			t.Errorf("log line %q", l)
		}
	}
	if strings.ContainsAny(string(log), "\r\x1b") {
		t.Errorf("terminal control characters in a log file: %q", log)
	}

	var quiet bytes.Buffer
	opts.Image, opts.Progress = filepath.Join(tmp, "img3"), progress.New(&quiet, progress.Options{Mode: progress.ModeQuiet})
	if _, err := Pack(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	if quiet.Len() != 0 {
		t.Errorf("quiet printer got %q", quiet.String())
	}
}
