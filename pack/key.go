package pack

import (
	"fmt"
	"os"
)

// NewKeySize is the length of a key made by WriteNewKey: 32 random bytes,
// like the Azure encfs sidecar's keyfiles.
const NewKeySize = 32

// WriteNewKey creates path (mode 0600; it must not exist) holding
// NewKeySize random bytes, and returns them. On failure nothing is left.
func WriteNewKey(path string) ([]byte, error) {
	key := randBytes(NewKeySize)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pack: new key: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("pack: new key %s: %w", path, err)
	}
	return key, nil
}
