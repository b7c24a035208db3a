// Package verity reads and writes dm-verity hash trees in the on-disk format
// of veritysetup (cryptsetup) and the Linux kernel, and checks every block
// read from an image against such a tree.
//
// chestfs puts the tree over the encrypted image bytes (the ciphertext, LUKS
// header included), not over the plaintext: the tree then tells a storage
// host nothing about the plaintext, the same tree serves every key holder,
// and each block is checked before it is decrypted, so that a flipped or
// replayed ciphertext sector is refused (EIO) instead of decrypting to random
// bytes. AES-XTS alone gives confidentiality, not integrity. With the root
// hash pinned (for example in an attested configuration), an older image
// served in place of the current one is refused at open: rollback is
// detected too.
//
// Layout (format version 1, as veritysetup writes it): an optional 512-byte
// superblock at the hash offset; the tree starts at the next hash block, top
// level first and the level that hashes the data blocks last. Each hash block
// holds 2^k digests (the largest power of two that fits), each digest padded
// with zeros to a power of two bytes for hash type 1; a block's digest is
// H(salt || block) for hash type 1 and H(block || salt) for hash type 0. The
// root hash is the digest of the single top-level block, or of the only data
// block when there is one.
package verity
