// Package luks opens LUKS2, LUKS1 and plain dm-crypt volumes in user space:
// it parses the on-disk headers, unlocks a keyslot with a passphrase and
// exposes the decrypted data segment as a blockdev.Volume.
package luks

import "errors"

var (
	// ErrNotLUKS means the source does not start with a LUKS magic.
	ErrNotLUKS = errors.New("luks: not a LUKS header")
	// ErrWrongKey means no keyslot accepts the passphrase.
	ErrWrongKey = errors.New("luks: no keyslot accepts this key")
	// ErrUnsupported wraps features this reader refuses (reencryption,
	// integrity, unknown ciphers or KDFs, absurd KDF parameters, ...).
	ErrUnsupported = errors.New("luks: unsupported")
	// ErrCorrupt wraps malformed or inconsistent header data.
	ErrCorrupt = errors.New("luks: corrupt header")
	// ErrTruncated means the source ends before the data the header describes.
	ErrTruncated = errors.New("luks: source truncated")
)
