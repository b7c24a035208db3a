// Package xts holds dm-crypt's sector ciphers: AES-XTS, what LUKS2 and
// current LUKS1 volumes use, and AES-CBC (plain64, plain, essiv:sha256) for
// old LUKS1 volumes. Each call processes a run of whole sectors, so that the
// AES-XTS path can pipeline many blocks.
//
// AES-XTS (plain64 and plain IVs; xts_cipher.go) on amd64 runs in assembly,
// picked once at start-up from the CPU's features: VAES on zmm registers
// (AVX-512), VAES on ymm registers (AVX2, e.g. AMD Zen 3), or AES-NI on xmm
// registers. On arm64 it runs in assembly on the ARMv8 cryptography
// extensions (AESE/AESD, PMULL for the tweak) where the CPU has them.
// Elsewhere, with AES-192 keys, with the build tag purego, or with
// CHESTFS_XTS=generic in the environment, it runs portable Go on crypto/aes.
// CHESTFS_XTS=aesni or =vaes256 caps the choice at that path.
// XTS.Implementation reports the path in use. Parallel spreads long runs
// over several cores.
//
// AES-CBC (cbc.go) uses crypto/cipher's CBC mode (itself assembly on common
// CPUs).
package xts

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// ErrUnsupportedCipher is wrapped by New for cipher specs it does not know.
var ErrUnsupportedCipher = errors.New("unsupported cipher")

// ErrKeySize is wrapped by New and NewXTS for keys of the wrong length.
var ErrKeySize = errors.New("invalid key size")

// SectorCipher encrypts/decrypts runs of whole sectors in one call.
//
// len(src) must be a multiple of sectorSize (512..4096, a power of two) and
// len(dst) >= len(src); dst and src may alias exactly but must not otherwise
// overlap. Violating this is a programming error and panics.
//
// firstIV is the IV (dm-crypt sector number, in 512-byte units) of the first
// sector; each following sector's IV is the previous one plus sectorSize/512
// (cryptsetup's behaviour for large sectors without iv_large_sectors).
//
// Implementations are safe for concurrent use.
type SectorCipher interface {
	EncryptSectors(dst, src []byte, sectorSize int, firstIV uint64)
	DecryptSectors(dst, src []byte, sectorSize int, firstIV uint64)
}

// New returns the cipher for a dm-crypt cipher spec and key:
//
//	aes-xts-plain64       key 32, 48 or 64 bytes (AES-128/192/256-XTS), tweak = le64(IV)
//	aes-xts-plain         the same with the IV truncated to 32 bits
//	aes-cbc-essiv:sha256  key 16, 24 or 32 bytes; IV = AES-256(sha256(key), le64(IV))
//	aes-cbc-plain64       key 16, 24 or 32 bytes; IV = le64(IV)
//	aes-cbc-plain         the same with the IV truncated to 32 bits
//
// The kernel crypto API spelling used by cryptsetup ("capi:xts(aes)-plain64")
// is accepted too. Errors never contain key bytes.
func New(spec string, key []byte) (SectorCipher, error) {
	mode, ivgen, err := parseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch mode {
	case "xts":
		c, err := NewXTS(key, ivgen == "plain")
		if err != nil {
			return nil, fmt.Errorf("xts: cipher %q: %w", spec, err)
		}
		return c, nil
	case "cbc":
		c, err := newCBC(key, ivgen)
		if err != nil {
			return nil, fmt.Errorf("xts: cipher %q: %w", spec, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("xts: cipher %q: %w", spec, ErrUnsupportedCipher)
}

// parseSpec splits "aes-MODE-IVGEN" (or "capi:MODE(aes)-IVGEN") and checks
// that the combination is one this package implements.
func parseSpec(spec string) (mode, ivgen string, err error) {
	s := strings.ToLower(strings.TrimSpace(spec))
	if rest, ok := strings.CutPrefix(s, "capi:"); ok {
		// capi:xts(aes)-plain64 -> aes-xts-plain64
		open := strings.IndexByte(rest, '(')
		closing := strings.Index(rest, ")-")
		if open > 0 && closing > open {
			s = rest[open+1:closing] + "-" + rest[:open] + rest[closing+1:]
		}
	}
	parts := strings.SplitN(s, "-", 3)
	if len(parts) == 3 && parts[0] == "aes" {
		mode, ivgen = parts[1], parts[2]
		switch {
		case mode == "xts" && (ivgen == "plain64" || ivgen == "plain"):
			return mode, ivgen, nil
		case mode == "cbc" && (ivgen == "plain64" || ivgen == "plain" || ivgen == "essiv:sha256"):
			return mode, ivgen, nil
		}
	}
	return "", "", fmt.Errorf("xts: cipher %q: %w", spec, ErrUnsupportedCipher)
}

// checkArgs panics on the programming errors the SectorCipher contract rules out.
func checkArgs(dst, src []byte, sectorSize int) {
	if sectorSize < 512 || sectorSize > 4096 || sectorSize&(sectorSize-1) != 0 {
		panic(fmt.Sprintf("xts: invalid sector size %d", sectorSize))
	}
	if len(src)%sectorSize != 0 {
		panic(fmt.Sprintf("xts: input length %d is not a multiple of the sector size %d", len(src), sectorSize))
	}
	if len(dst) < len(src) {
		panic("xts: output smaller than input")
	}
	if inexactOverlap(dst[:len(src)], src) {
		panic("xts: invalid buffer overlap")
	}
}

// inexactOverlap reports whether x and y share memory at different offsets.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	xs, xe := sliceBounds(x)
	ys, ye := sliceBounds(y)
	return xs < ye && ys < xe
}

func putLE64(b []byte, v uint64) {
	_ = b[7]
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	b[4], b[5], b[6], b[7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func sliceBounds(b []byte) (start, end uintptr) {
	start = uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return start, start + uintptr(len(b))
}
