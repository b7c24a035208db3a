package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/internal/secret"
	"github.com/chestfs/chestfs/skr"
)

// maxKeyFile is cryptsetup's default limit on a key file (--keyfile-size).
const maxKeyFile = 8 << 20

// readKey returns the key bytes k names in secret memory (outside the Go
// heap, locked, wiped on Destroy), or nil when it names none. The caller
// destroys the buffer once the volume is unlocked.
func readKey(ctx context.Context, k keyConfig, r releaseConfig) (*secret.Buffer, error) {
	switch k.Kind {
	case keyFile:
		return readKeyFile(k.File)
	case keyHex:
		hexBytes := []byte(k.Hex)
		defer secret.Wipe(hexBytes)
		key, err := secret.New(hex.DecodedLen(len(hexBytes)))
		if err != nil {
			return nil, err
		}
		if _, err := hex.Decode(key.Bytes(), hexBytes); err != nil {
			key.Destroy()
			return nil, errors.New("key: not a hex string")
		}
		return key, nil
	case keyRelease:
		return releaseKey(ctx, k.Blob, r)
	}
	return nil, nil
}

// readKeyFile reads a key file (or standard input for "-") whole, as
// cryptsetup --key-file does, straight into secret memory.
func readKeyFile(path string) (*secret.Buffer, error) {
	f := os.Stdin
	if path != "-" {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		defer f.Close()
	}
	// Sized to the file where it has a size (stdin, a pipe, has none): no
	// need to map and lock 8 MiB for a 32-byte key.
	limit := maxKeyFile + 1
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() < maxKeyFile {
		limit = int(st.Size()) + 1
	}
	tmp, err := secret.New(limit)
	if err != nil {
		return nil, err
	}
	defer tmp.Destroy()
	n, err := io.ReadFull(f, tmp.Bytes())
	switch {
	case n > maxKeyFile:
		return nil, fmt.Errorf("key file: longer than %d bytes", maxKeyFile)
	case n == limit:
		return nil, errors.New("key file: it grew while it was read")
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("key file: %w", err)
	}
	key, err := secret.New(n)
	if err != nil {
		return nil, err
	}
	copy(key.Bytes(), tmp.Bytes()[:n])
	return key, nil
}

// releaseKey performs attestation-gated secure key release for the sidecar
// key blob. The key goes straight to the caller's memory, never to disk.
func releaseKey(ctx context.Context, blob *skr.KeyBlob, r releaseConfig) (*secret.Buffer, error) {
	if err := blob.Validate(); err != nil {
		return nil, err
	}
	provider, err := attest.New(r.Attestation)
	if err != nil {
		return nil, err
	}
	key, err := skr.ReleaseSecret(ctx, blob, provider, skr.Options{Token: r.Token, CAPEM: r.CAPEM, TokenHosts: r.TokenHosts, Insecure: r.Insecure})
	if err != nil {
		return nil, fmt.Errorf("key release: %w", err)
	}
	return key, nil
}
