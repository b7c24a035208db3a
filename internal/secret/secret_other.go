//go:build !linux

package secret

// Harden does nothing on this system.
func Harden() error { return nil }

// Dumpable is always 1 here: there is no PR_SET_DUMPABLE.
func Dumpable() (int, error) { return 1, nil }

// alloc falls back to the Go heap: still wiped on Destroy.
func (b *Buffer) alloc(n int) error {
	b.mem = make([]byte, n)
	return nil
}

func (b *Buffer) free() {}
