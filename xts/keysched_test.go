package xts

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"testing"
)

func TestSbox(t *testing.T) {
	// FIPS-197 Figure 7 spot checks, and that the computed box is a permutation.
	for in, want := range map[byte]byte{0x00: 0x63, 0x01: 0x7c, 0x53: 0xed, 0xff: 0x16, 0x10: 0xca, 0xc9: 0xdd} {
		if got := sbox(in); got != want {
			t.Errorf("sbox(%#02x) = %#02x, want %#02x", in, got, want)
		}
	}
	var seen [256]bool
	for i := range 256 {
		seen[sbox(byte(i))] = true
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("sbox is not a permutation: %#02x never produced", i)
		}
	}
}

func TestExpandKeyFIPS197(t *testing.T) {
	// FIPS-197 Appendix A.1 and A.3: the last word of each schedule.
	for _, tc := range []struct{ key, last string }{
		{"2b7e151628aed2a6abf7158809cf4f3c", "b6630ca6"},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "706c631e"},
	} {
		var rk roundKeys
		rounds := expandKey(&rk, mustHex(t, tc.key))
		end := 16 * (rounds + 1)
		if got := hex.EncodeToString(rk[end-4 : end]); got != tc.last {
			t.Errorf("key %s: last word %s, want %s", tc.key, got, tc.last)
		}
	}
	if expandKey(new(roundKeys), make([]byte, 24)) != 0 {
		t.Error("expandKey accepted a 24-byte key")
	}
}

// TestScheduleMatchesCryptoAES encrypts with a straightforward AES built on
// the expanded schedule and compares with crypto/aes, so the schedule is
// checked on every architecture, not only through the assembly.
func TestScheduleMatchesCryptoAES(t *testing.T) {
	for _, n := range []int{16, 32} {
		for seed := range 20 {
			key := make([]byte, n)
			for i := range key {
				key[i] = byte(seed*31 + i*7 + n)
			}
			var ek, dk roundKeys
			rounds := expandKey(&ek, key)
			invertKey(&dk, &ek, rounds)
			blk, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			pt := bytes.Repeat([]byte{byte(seed)}, 16)
			pt[3] ^= 0x5c
			want := make([]byte, 16)
			blk.Encrypt(want, pt)
			if got := refEncrypt(&ek, rounds, pt); !bytes.Equal(got, want) {
				t.Fatalf("key %d bytes seed %d: schedule encrypts to %x, crypto/aes %x", n, seed, got, want)
			}
			if got := refDecryptEquivalent(&dk, rounds, want); !bytes.Equal(got, pt) {
				t.Fatalf("key %d bytes seed %d: inverse schedule decrypts to %x, want %x", n, seed, got, pt)
			}
		}
	}
}

// refEncrypt is textbook AES (FIPS-197 §5.1) for the test only.
func refEncrypt(rk *roundKeys, rounds int, in []byte) []byte {
	var s [16]byte
	copy(s[:], in)
	xorKey(&s, rk[:16])
	for r := 1; r <= rounds; r++ {
		for i := range s {
			s[i] = sbox(s[i])
		}
		s = shiftRows(s)
		if r != rounds {
			s = mixColumns(s, [4]byte{2, 3, 1, 1})
		}
		xorKey(&s, rk[16*r:16*r+16])
	}
	return s[:]
}

// refDecryptEquivalent is FIPS-197 §5.3.5's equivalent inverse cipher, which
// is what AESDEC computes with the schedule from invertKey.
func refDecryptEquivalent(dk *roundKeys, rounds int, in []byte) []byte {
	var inv [256]byte
	for i := range 256 {
		inv[sbox(byte(i))] = byte(i)
	}
	var s [16]byte
	copy(s[:], in)
	xorKey(&s, dk[:16])
	for r := 1; r <= rounds; r++ {
		for i := range s {
			s[i] = inv[s[i]]
		}
		s = invShiftRows(s)
		if r != rounds {
			s = mixColumns(s, [4]byte{14, 11, 13, 9})
		}
		xorKey(&s, dk[16*r:16*r+16])
	}
	return s[:]
}

func xorKey(s *[16]byte, k []byte) {
	for i := range s {
		s[i] ^= k[i]
	}
}

func shiftRows(s [16]byte) (o [16]byte) {
	for c := range 4 {
		for r := range 4 {
			o[4*c+r] = s[4*((c+r)%4)+r]
		}
	}
	return o
}

func invShiftRows(s [16]byte) (o [16]byte) {
	for c := range 4 {
		for r := range 4 {
			o[4*((c+r)%4)+r] = s[4*c+r]
		}
	}
	return o
}

func mixColumns(s [16]byte, m [4]byte) (o [16]byte) {
	for c := range 4 {
		for r := range 4 {
			var v byte
			for k := range 4 {
				v ^= gmul(m[(k-r+4)%4], s[4*c+k])
			}
			o[4*c+r] = v
		}
	}
	return o
}
