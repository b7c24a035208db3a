package luks

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"
)

// hashByName maps cryptsetup's hash names to Go constructors.
func hashByName(name string) (func() hash.Hash, error) {
	// cryptsetup's crypto backends take hash names in any case.
	switch strings.ToLower(name) {
	case "sha1":
		return sha1.New, nil
	case "sha224":
		return sha256.New224, nil
	case "sha256":
		return sha256.New, nil
	case "sha384":
		return sha512.New384, nil
	case "sha512":
		return sha512.New, nil
	case "sha3-256":
		return func() hash.Hash { return sha3.New256() }, nil
	case "sha3-512":
		return func() hash.Hash { return sha3.New512() }, nil
	}
	return nil, fmt.Errorf("%w: hash %q", ErrUnsupported, name)
}

// maxAFBytes bounds key_size*stripes so that a hostile header cannot make us
// allocate much (a real 512-bit key with 4000 stripes needs 256000 bytes).
const maxAFBytes = 16 << 20

func afCheck(keySize, stripes int) error {
	if keySize <= 0 || keySize > 1024 || stripes <= 0 || stripes > 1<<16 || keySize*stripes > maxAFBytes {
		return fmt.Errorf("%w: anti-forensic split of %d bytes x %d stripes", ErrCorrupt, keySize, stripes)
	}
	return nil
}

// diffuse hashes buf in place in digest-sized chunks: chunk j becomes
// H(be32(j) || chunk) truncated to the chunk's length (cryptsetup's af.c).
func diffuse(h hash.Hash, buf []byte) {
	ds := h.Size()
	var iv [4]byte
	sum := make([]byte, 0, ds)
	for j := 0; j*ds < len(buf); j++ {
		chunk := buf[j*ds : min((j+1)*ds, len(buf))]
		h.Reset()
		binary.BigEndian.PutUint32(iv[:], uint32(j))
		h.Write(iv[:])
		h.Write(chunk)
		sum = h.Sum(sum[:0])
		copy(chunk, sum)
	}
}

func xorInto(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}

// AFMerge recovers a keySize-byte key from its anti-forensic split of
// stripes stripes (the LUKS AF merge with hash hashName).
func AFMerge(hashName string, split []byte, keySize, stripes int) ([]byte, error) {
	if err := afCheck(keySize, stripes); err != nil {
		return nil, err
	}
	if len(split) < keySize*stripes {
		return nil, fmt.Errorf("%w: anti-forensic split is %d bytes, want %d", ErrCorrupt, len(split), keySize*stripes)
	}
	newHash, err := hashByName(hashName)
	if err != nil {
		return nil, err
	}
	h := newHash()
	x := make([]byte, keySize)
	for i := 0; i < stripes-1; i++ {
		xorInto(x, split[i*keySize:(i+1)*keySize])
		diffuse(h, x)
	}
	xorInto(x, split[(stripes-1)*keySize:stripes*keySize])
	return x, nil
}

// AFSplit spreads key over stripes stripes with random filler, the inverse of
// AFMerge; the result is len(key)*stripes bytes.
func AFSplit(hashName string, key []byte, stripes int) ([]byte, error) {
	keySize := len(key)
	if err := afCheck(keySize, stripes); err != nil {
		return nil, err
	}
	newHash, err := hashByName(hashName)
	if err != nil {
		return nil, err
	}
	h := newHash()
	out := make([]byte, keySize*stripes)
	if _, err := rand.Read(out[:keySize*(stripes-1)]); err != nil {
		return nil, err
	}
	x := make([]byte, keySize)
	for i := 0; i < stripes-1; i++ {
		xorInto(x, out[i*keySize:(i+1)*keySize])
		diffuse(h, x)
	}
	last := out[(stripes-1)*keySize:]
	copy(last, x)
	xorInto(last, key)
	return out, nil
}
