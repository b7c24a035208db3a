package xts

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
)

// XTS is AES-XTS (IEEE 1619) over dm-crypt sectors with the plain64 or,
// when plain32 is set, the plain IV generator. It is safe for concurrent use.
type XTS struct {
	k1, k2  cipher.Block // data and tweak ciphers (portable path)
	plain32 bool
	generic bool // use the portable path even where assembly exists
	asm     asmKeys
}

// NewXTS returns AES-XTS for a key of 32, 48 or 64 bytes: the first half
// keys the data cipher, the second half the tweak cipher.
func NewXTS(key []byte, plain32 bool) (*XTS, error) {
	switch len(key) {
	case 32, 48, 64:
	default:
		return nil, fmt.Errorf("%w: %d bytes (want 32, 48 or 64)", ErrKeySize, len(key))
	}
	half := len(key) / 2
	k1, err := aes.NewCipher(key[:half])
	if err != nil {
		return nil, err
	}
	k2, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, err
	}
	x := &XTS{k1: k1, k2: k2, plain32: plain32, generic: true}
	x.initAsm(key)
	return x, nil
}

// EncryptSectors implements SectorCipher.
func (x *XTS) EncryptSectors(dst, src []byte, sectorSize int, firstIV uint64) {
	checkArgs(dst, src, sectorSize)
	x.crypt(dst, src, sectorSize, firstIV, false)
}

// DecryptSectors implements SectorCipher.
func (x *XTS) DecryptSectors(dst, src []byte, sectorSize int, firstIV uint64) {
	checkArgs(dst, src, sectorSize)
	x.crypt(dst, src, sectorSize, firstIV, true)
}

// crypt processes whole data units of unitSize bytes (any multiple of 16;
// the IV advances by unitSize/512 per unit). Arguments are already checked.
func (x *XTS) crypt(dst, src []byte, unitSize int, n uint64, decrypt bool) {
	if x.generic {
		x.cryptGeneric(dst, src, unitSize, n, decrypt)
		return
	}
	x.cryptAsm(dst, src, unitSize, n, decrypt)
}

// Implementation names the code path x uses: "generic", "aesni", "vaes256",
// "vaes512" (amd64) or "armv8" (arm64).
func (x *XTS) Implementation() string {
	if x.generic {
		return "generic"
	}
	return x.asm.implName()
}

// cryptGeneric is the portable path: crypto/aes per block, the tweak kept in
// two uint64 words and doubled in GF(2^128) without branches.
func (x *XTS) cryptGeneric(dst, src []byte, sectorSize int, n uint64, decrypt bool) {
	step := uint64(sectorSize / 512)
	for off := 0; off < len(src); off += sectorSize {
		sd := dst[off : off+sectorSize]
		ss := src[off : off+sectorSize]
		// Read the first block before dst (which may alias src) is used as
		// scratch for the tweak: this keeps the loop free of allocations.
		b0lo, b0hi := le64(ss[0:8]), le64(ss[8:16])
		iv := n
		if x.plain32 {
			iv = uint64(uint32(iv))
		}
		putLE64(sd[0:8], iv)
		putLE64(sd[8:16], 0)
		x.k2.Encrypt(sd[:16], sd[:16])
		tlo, thi := le64(sd[0:8]), le64(sd[8:16])
		for b := 0; b < sectorSize; b += 16 {
			var lo, hi uint64
			if b == 0 {
				lo, hi = b0lo, b0hi
			} else {
				lo, hi = le64(ss[b:b+8]), le64(ss[b+8:b+16])
			}
			blk := sd[b : b+16]
			putLE64(blk[0:8], lo^tlo)
			putLE64(blk[8:16], hi^thi)
			if decrypt {
				x.k1.Decrypt(blk, blk)
			} else {
				x.k1.Encrypt(blk, blk)
			}
			putLE64(blk[0:8], le64(blk[0:8])^tlo)
			putLE64(blk[8:16], le64(blk[8:16])^thi)
			tlo, thi = mulAlpha(tlo, thi)
		}
		n += step
	}
}

// mulAlpha multiplies the tweak by x in GF(2^128) (IEEE 1619 byte order:
// little-endian, reduction polynomial x^128 + x^7 + x^2 + x + 1).
func mulAlpha(lo, hi uint64) (uint64, uint64) {
	carry := hi >> 63
	hi = hi<<1 | lo>>63
	lo = lo<<1 ^ (0x87 & -carry)
	return lo, hi
}

// ivBlocks writes the IV blocks of consecutive units, the first being unit
// n and each step 512-byte sectors after the last, for the assembly paths
// to encrypt into tweaks: le64 of the sector number (plain64), or of its
// low 32 bits (plain), zero-padded to 16 bytes.
func (x *XTS) ivBlocks(dst []byte, n, step uint64) {
	for i := 0; i < len(dst)/16; i++ {
		iv := n + uint64(i)*step
		if x.plain32 {
			iv = uint64(uint32(iv))
		}
		putLE64(dst[16*i:], iv)
		putLE64(dst[16*i+8:], 0)
	}
}
