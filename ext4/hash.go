package ext4

import "math/bits"

// htree hash versions (dx_root_info.hash_version); the unsigned variants
// are the stored value + 3 when the superblock says so.
const (
	hashLegacy = iota
	hashHalfMD4
	hashTea
	hashLegacyUnsigned
	hashHalfMD4Unsigned
	hashTeaUnsigned
)

// nameChar is a name byte as the kernel's signed or unsigned char.
func nameChar(c byte, signed bool) uint32 {
	if signed {
		return uint32(int32(int8(c)))
	}
	return uint32(c)
}

func dxHackHash(name []byte, signed bool) uint32 {
	hash0, hash1 := uint32(0x12a3fe2d), uint32(0x37abe8f9)
	for _, c := range name {
		hash := hash1 + (hash0 ^ nameChar(c, signed)*7152373)
		if hash&0x80000000 != 0 {
			hash -= 0x7fffffff
		}
		hash1, hash0 = hash0, hash
	}
	return hash0 << 1
}

// str2hashbuf packs up to num*4 name bytes into buf[:num], padded with
// the length (the kernel's str2hashbuf_signed/unsigned).
func str2hashbuf(msg []byte, num int, signed bool, buf *[8]uint32) {
	l := len(msg)
	pad := uint32(l) | uint32(l)<<8
	pad |= pad << 16
	val := pad
	if l > num*4 {
		l = num * 4
	}
	k := 0
	for i := 0; i < l; i++ {
		val = nameChar(msg[i], signed) + (val << 8)
		if i%4 == 3 {
			buf[k] = val
			k++
			val = pad
			num--
		}
	}
	if num--; num >= 0 {
		buf[k] = val
		k++
	}
	for num--; num >= 0; num-- {
		buf[k] = pad
		k++
	}
}

func halfMD4Transform(buf *[4]uint32, in []uint32) {
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	const k2, k3 = 0x5A827999, 0x6ED9EBA1
	r := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s int) {
		*a = bits.RotateLeft32(*a+fn(b, c, d)+x, s)
	}
	r(f, &a, b, c, d, in[0], 3)
	r(f, &d, a, b, c, in[1], 7)
	r(f, &c, d, a, b, in[2], 11)
	r(f, &b, c, d, a, in[3], 19)
	r(f, &a, b, c, d, in[4], 3)
	r(f, &d, a, b, c, in[5], 7)
	r(f, &c, d, a, b, in[6], 11)
	r(f, &b, c, d, a, in[7], 19)

	r(g, &a, b, c, d, in[1]+k2, 3)
	r(g, &d, a, b, c, in[3]+k2, 5)
	r(g, &c, d, a, b, in[5]+k2, 9)
	r(g, &b, c, d, a, in[7]+k2, 13)
	r(g, &a, b, c, d, in[0]+k2, 3)
	r(g, &d, a, b, c, in[2]+k2, 5)
	r(g, &c, d, a, b, in[4]+k2, 9)
	r(g, &b, c, d, a, in[6]+k2, 13)

	r(h, &a, b, c, d, in[3]+k3, 3)
	r(h, &d, a, b, c, in[7]+k3, 9)
	r(h, &c, d, a, b, in[2]+k3, 11)
	r(h, &b, c, d, a, in[6]+k3, 15)
	r(h, &a, b, c, d, in[1]+k3, 3)
	r(h, &d, a, b, c, in[5]+k3, 9)
	r(h, &c, d, a, b, in[0]+k3, 11)
	r(h, &b, c, d, a, in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

func teaTransform(buf *[4]uint32, in []uint32) {
	var sum uint32
	b0, b1 := buf[0], buf[1]
	a, b, c, d := in[0], in[1], in[2], in[3]
	for n := 0; n < 16; n++ {
		sum += 0x9E3779B9
		b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >> 5) + b)
		b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >> 5) + d)
	}
	buf[0] += b0
	buf[1] += b1
}

// dirHash computes the major and minor htree hashes of name
// (ext4fs_dirhash), the major with its low bit cleared as stored in index
// entries. ok is false for an unknown hash version.
func dirHash(name []byte, version int, seed [4]uint32) (hash, minor uint32, ok bool) {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != ([4]uint32{}) {
		buf = seed
	}
	var in [8]uint32
	switch version {
	case hashLegacy, hashLegacyUnsigned:
		hash = dxHackHash(name, version == hashLegacy)
	case hashHalfMD4, hashHalfMD4Unsigned:
		for p := name; len(p) > 0; p = p[min(32, len(p)):] {
			str2hashbuf(p, 8, version == hashHalfMD4, &in)
			halfMD4Transform(&buf, in[:])
		}
		hash, minor = buf[1], buf[2]
	case hashTea, hashTeaUnsigned:
		for p := name; len(p) > 0; p = p[min(16, len(p)):] {
			str2hashbuf(p, 4, version == hashTea, &in)
			teaTransform(&buf, in[:4])
		}
		hash, minor = buf[0], buf[1]
	default:
		return 0, 0, false
	}
	hash &^= 1
	if hash == 0x7fffffff<<1 {
		hash = (0x7fffffff - 1) << 1
	}
	return hash, minor, true
}
