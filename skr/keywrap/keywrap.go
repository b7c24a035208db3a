// Package keywrap implements AES Key Wrap with Padding (RFC 5649), the
// symmetric half of Key Vault's CKM_RSA_AES_KEY_WRAP / RSA_AES_KEY_WRAP_*
// release formats.
package keywrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrIntegrity means the wrapped key failed the RFC 5649 integrity check:
// wrong key-encryption key or corrupted ciphertext.
var ErrIntegrity = errors.New("keywrap: integrity check failed (wrong KEK or corrupt data)")

// MaxKeyLen bounds the plaintext size accepted by Wrap and implied by Unwrap
// inputs; released keys are at most a few KiB (an RSA-4096 PKCS#8 key).
const MaxKeyLen = 1 << 16

// aiv is the RFC 5649 alternative initial value's constant half.
var aiv = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// Wrap wraps key under kek (16, 24 or 32 bytes) per RFC 5649 section 4.1.
func Wrap(kek, key []byte) ([]byte, error) {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return nil, fmt.Errorf("keywrap: key length %d out of range 1..%d", len(key), MaxKeyLen)
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	n := (len(key) + 7) / 8
	var a [8]byte
	copy(a[:4], aiv[:])
	binary.BigEndian.PutUint32(a[4:], uint32(len(key)))
	padded := make([]byte, 8*n)
	copy(padded, key)
	if n == 1 {
		out := make([]byte, 16)
		copy(out, a[:])
		copy(out[8:], padded)
		b.Encrypt(out, out)
		return out, nil
	}
	out := make([]byte, 8+8*n)
	copy(out[8:], padded)
	var buf [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], out[8*i:8*i+8])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			copy(a[:], buf[:8])
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(a[:])^t)
			copy(out[8*i:8*i+8], buf[8:])
		}
	}
	copy(out[:8], a[:])
	return out, nil
}

// Unwrap reverses Wrap (RFC 5649 section 4.2) and checks the integrity value,
// the message length indicator and the zero padding.
func Unwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) < 16 || len(wrapped)%8 != 0 || len(wrapped) > MaxKeyLen+16 {
		return nil, fmt.Errorf("keywrap: wrapped length %d is not a multiple of 8 in 16..%d", len(wrapped), MaxKeyLen+16)
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	n := len(wrapped)/8 - 1
	var a [8]byte
	p := make([]byte, 8*n)
	if n == 1 {
		var buf [16]byte
		b.Decrypt(buf[:], wrapped)
		copy(a[:], buf[:8])
		copy(p, buf[8:])
		clear(buf[:]) // key bytes
	} else {
		unwrapW(b, wrapped, &a, p, n)
	}
	return checkAIV(a, p)
}

func unwrapW(b cipher.Block, wrapped []byte, a *[8]byte, p []byte, n int) {
	copy(a[:], wrapped[:8])
	copy(p, wrapped[8:])
	var buf [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a[:])^t)
			copy(buf[8:], p[8*(i-1):8*i])
			b.Decrypt(buf[:], buf[:])
			copy(a[:], buf[:8])
			copy(p[8*(i-1):8*i], buf[8:])
		}
	}
	clear(buf[:]) // key bytes
}

func checkAIV(a [8]byte, p []byte) ([]byte, error) {
	mli := int(binary.BigEndian.Uint32(a[4:]))
	ok := subtle.ConstantTimeCompare(a[:4], aiv[:]) == 1
	ok = ok && mli > len(p)-8 && mli <= len(p)
	if ok {
		var pad byte
		for _, c := range p[mli:] {
			pad |= c
		}
		ok = pad == 0
	}
	if !ok {
		clear(p)
		return nil, ErrIntegrity
	}
	return p[:mli], nil
}
