package xts

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
)

// AES-CBC with the plain64, plain and essiv:sha256 IV generators: the
// sector cipher of old LUKS1 volumes (cryptsetup's default before 1.6).

// cbcCipher implements the AES-CBC dm-crypt modes. Each call creates one
// crypto/cipher CBC object (its assembly pipelines CBC decryption) and
// resets its IV per sector.
type cbcCipher struct {
	block   cipher.Block
	essiv   cipher.Block // nil unless essiv
	plain32 bool
}

type ivSetter interface{ SetIV([]byte) }

func newCBC(key []byte, ivgen string) (*cbcCipher, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: %d bytes (want 16, 24 or 32)", ErrKeySize, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	c := &cbcCipher{block: b, plain32: ivgen == "plain"}
	if ivgen == "essiv:sha256" {
		salt := sha256.Sum256(key)
		c.essiv, err = aes.NewCipher(salt[:])
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cbcCipher) iv(out *[16]byte, n uint64) {
	*out = [16]byte{}
	if c.plain32 {
		n = uint64(uint32(n))
	}
	putLE64(out[:8], n)
	if c.essiv != nil {
		c.essiv.Encrypt(out[:], out[:])
	}
}

func (c *cbcCipher) EncryptSectors(dst, src []byte, sectorSize int, firstIV uint64) {
	c.crypt(dst, src, sectorSize, firstIV, false)
}

func (c *cbcCipher) DecryptSectors(dst, src []byte, sectorSize int, firstIV uint64) {
	c.crypt(dst, src, sectorSize, firstIV, true)
}

func (c *cbcCipher) crypt(dst, src []byte, sectorSize int, n uint64, decrypt bool) {
	checkArgs(dst, src, sectorSize)
	if len(src) == 0 {
		return
	}
	iv := new([16]byte)
	c.iv(iv, n)
	var m cipher.BlockMode
	if decrypt {
		m = cipher.NewCBCDecrypter(c.block, iv[:])
	} else {
		m = cipher.NewCBCEncrypter(c.block, iv[:])
	}
	setter, _ := m.(ivSetter)
	step := uint64(sectorSize / 512)
	for off := 0; off < len(src); off += sectorSize {
		if off > 0 {
			c.iv(iv, n)
			if setter != nil {
				setter.SetIV(iv[:])
			} else if decrypt {
				m = cipher.NewCBCDecrypter(c.block, iv[:])
			} else {
				m = cipher.NewCBCEncrypter(c.block, iv[:])
			}
		}
		m.CryptBlocks(dst[off:off+sectorSize], src[off:off+sectorSize])
		n += step
	}
}
