package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
)

// readKey returns the key bytes k names, or nil when it names none. The
// caller clears them once the volume is unlocked.
func readKey(ctx context.Context, k keyConfig, r releaseConfig) ([]byte, error) {
	switch k.Kind {
	case keyFile:
		if k.File == "-" {
			key, err := io.ReadAll(os.Stdin)
			if err != nil {
				return nil, fmt.Errorf("key from standard input: %w", err)
			}
			return key, nil
		}
		key, err := os.ReadFile(k.File)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		return key, nil
	case keyHex:
		key, err := hex.DecodeString(k.Hex)
		if err != nil {
			return nil, errors.New("key: not a hex string")
		}
		return key, nil
	case keyRelease:
		return releaseKey(ctx, k.Blob, r)
	}
	return nil, nil
}

// releaseKey performs attestation-gated secure key release for the sidecar
// key blob. The key goes straight to the caller's memory, never to disk.
func releaseKey(ctx context.Context, blob *skr.KeyBlob, r releaseConfig) ([]byte, error) {
	if err := blob.Validate(); err != nil {
		return nil, err
	}
	provider, err := attest.New(r.Attestation)
	if err != nil {
		return nil, err
	}
	key, err := skr.Release(ctx, blob, provider, skr.Options{Token: r.Token, CAPEM: r.CAPEM, TokenHosts: r.TokenHosts, Insecure: r.Insecure})
	if err != nil {
		return nil, fmt.Errorf("key release: %w", err)
	}
	return key, nil
}
