package xts

// AES key expansion (FIPS-197 §5.2) for the assembly paths, which need the
// round keys that crypto/aes keeps to itself. It runs once per key, and in
// constant time: the S-box is computed (inverse in GF(2^8) by exponentiation,
// then the affine map) instead of looked up, so no table index depends on
// key bytes.

// maxRounds is AES-256's round count; schedules hold maxRounds+1 round keys.
const maxRounds = 14

// roundKeys is an expanded AES key: round key i at [16*i : 16*i+16], in the
// byte order the AES instructions load.
type roundKeys [(maxRounds + 1) * 16]byte

// gmul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1 without branches.
func gmul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= a & -(b & 1)
		a = a<<1 ^ 0x1b&-(a>>7)
		b >>= 1
	}
	return p
}

// sbox computes the AES S-box: the affine map of the inverse a^254 (0 -> 0).
func sbox(a byte) byte {
	a2 := gmul(a, a)
	a3 := gmul(a2, a)
	a6 := gmul(a3, a3)
	a12 := gmul(a6, a6)
	a15 := gmul(a12, a3)
	a30 := gmul(a15, a15)
	a60 := gmul(a30, a30)
	a120 := gmul(a60, a60)
	a127 := gmul(a120, gmul(a6, a)) // a^120 * a^7
	inv := gmul(a127, a127)         // a^254
	rotl := func(x byte, n uint) byte { return x<<n | x>>(8-n) }
	return inv ^ rotl(inv, 1) ^ rotl(inv, 2) ^ rotl(inv, 3) ^ rotl(inv, 4) ^ 0x63
}

// expandKey fills rk with the encryption schedule of a 16- or 32-byte key
// and returns the number of rounds (10 or 14); 0 for other key sizes.
func expandKey(rk *roundKeys, key []byte) int {
	nk := len(key) / 4
	if len(key) != 16 && len(key) != 32 {
		return 0
	}
	rounds := nk + 6
	words := 4 * (rounds + 1)
	copy(rk[:], key)
	rcon := byte(1)
	for i := nk; i < words; i++ {
		var t [4]byte
		copy(t[:], rk[4*(i-1):4*i])
		switch {
		case i%nk == 0:
			t = [4]byte{sbox(t[1]) ^ rcon, sbox(t[2]), sbox(t[3]), sbox(t[0])}
			rcon = gmul(rcon, 2)
		case nk > 6 && i%nk == 4:
			t = [4]byte{sbox(t[0]), sbox(t[1]), sbox(t[2]), sbox(t[3])}
		}
		for j := range 4 {
			rk[4*i+j] = rk[4*(i-nk)+j] ^ t[j]
		}
	}
	return rounds
}

// invertKey turns an encryption schedule into the equivalent inverse cipher's
// (FIPS-197 §5.3.5), as AESDEC expects: the round keys in reverse order, all
// but the first and last passed through InvMixColumns.
func invertKey(dk, ek *roundKeys, rounds int) {
	for i := 0; i <= rounds; i++ {
		src := ek[16*(rounds-i) : 16*(rounds-i)+16]
		dst := dk[16*i : 16*i+16]
		if i == 0 || i == rounds {
			copy(dst, src)
			continue
		}
		for c := 0; c < 16; c += 4 {
			a0, a1, a2, a3 := src[c], src[c+1], src[c+2], src[c+3]
			dst[c] = gmul(a0, 14) ^ gmul(a1, 11) ^ gmul(a2, 13) ^ gmul(a3, 9)
			dst[c+1] = gmul(a0, 9) ^ gmul(a1, 14) ^ gmul(a2, 11) ^ gmul(a3, 13)
			dst[c+2] = gmul(a0, 13) ^ gmul(a1, 9) ^ gmul(a2, 14) ^ gmul(a3, 11)
			dst[c+3] = gmul(a0, 11) ^ gmul(a1, 13) ^ gmul(a2, 9) ^ gmul(a3, 14)
		}
	}
}
