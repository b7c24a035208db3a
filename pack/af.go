package pack

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// afSplit is LUKS's anti-forensic split (AF_split in cryptsetup) with sha256
// diffusion: stripes-1 random stripes, each XORed into a running block that
// is diffused after every stripe; the last stripe is key XOR that block.
// rnd fills a buffer with random bytes.
func afSplit(key []byte, stripes int, rnd func([]byte) (int, error)) ([]byte, error) {
	n := len(key)
	out := make([]byte, n*stripes)
	if _, err := rnd(out[:n*(stripes-1)]); err != nil {
		return nil, fmt.Errorf("pack: random: %w", err)
	}
	block := make([]byte, n)
	for i := 0; i < stripes-1; i++ {
		xorBytes(block, out[i*n:(i+1)*n])
		diffuse(block)
	}
	last := out[(stripes-1)*n:]
	for i := range last {
		last[i] = block[i] ^ key[i]
	}
	return out, nil
}

func xorBytes(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}

// diffuse replaces each sha256-sized chunk j of b by sha256(be32(j) || chunk),
// the last chunk truncated to its length.
func diffuse(b []byte) {
	var iv [4]byte
	for j := 0; j*sha256.Size < len(b); j++ {
		chunk := b[j*sha256.Size : min((j+1)*sha256.Size, len(b))]
		binary.BigEndian.PutUint32(iv[:], uint32(j))
		h := sha256.New()
		h.Write(iv[:])
		h.Write(chunk)
		copy(chunk, h.Sum(nil))
	}
}
