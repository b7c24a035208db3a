package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type observation struct {
	op  string
	d   time.Duration
	n   int
	err error
}

// TestObserve: Options.Observe sees every request once, with the bytes
// each read returned and the errno of failed ones; with Debug as well, the
// trace still logs.
func TestObserve(t *testing.T) {
	requireFUSE(t)
	fsys := markerImage(t)
	logs := captureLogs(t)
	var mu sync.Mutex
	var seen []observation
	obs := func(op string, d time.Duration, n int, err error) {
		mu.Lock()
		seen = append(seen, observation{op, d, n, err})
		mu.Unlock()
	}
	mnt, srv := mountFUSE(t, fsys, Options{Observe: obs, Debug: true, KeepXattrs: true})
	want, err := os.ReadFile(filepath.Join(mnt, markerName))
	if err != nil || !strings.Contains(string(want), markerData) {
		t.Fatalf("read through the mount: %q %v", want, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat absent: %v", err)
	}
	// An absent name is a negative entry (OK, node 0), so an absent xattr
	// is the failing request.
	if _, err := unix.Getxattr(filepath.Join(mnt, markerName), "user.absent", make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("getxattr of an absent name: %v", err)
	}
	if err := srv.Unmount(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	readBytes, reads, enodata := 0, 0, 0
	for _, o := range seen {
		if o.d < 0 {
			t.Errorf("%s: negative duration %v", o.op, o.d)
		}
		switch {
		case o.op == "read":
			reads++
			readBytes += o.n
			if o.err != nil {
				t.Errorf("read failed: %v", o.err)
			}
		case o.n != 0:
			t.Errorf("%s reported %d bytes", o.op, o.n)
		}
		if o.op == "getxattr" && errors.Is(o.err, syscall.ENODATA) {
			enodata++
		}
	}
	if reads == 0 || readBytes != len(want) {
		t.Errorf("observed %d reads of %d bytes in all; the file has %d", reads, readBytes, len(want))
	}
	if enodata == 0 {
		t.Errorf("no getxattr observed failing with ENODATA: %v", seen)
	}
	if !strings.Contains(logs.String(), "op=read ") {
		t.Error("Debug with Observe: the trace lacks reads")
	}
}
