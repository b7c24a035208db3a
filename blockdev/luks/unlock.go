package luks

import (
	"crypto/pbkdf2"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/crypto/argon2"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/xts"
)

// KDF bounds. cryptsetup itself caps Argon2 at 4 GiB and 4 threads; threads
// are allowed a little more room here since they only cost time.
const (
	maxPBKDF2Iterations = 1 << 31
	maxArgon2MemoryKiB  = 4 << 20 // 4 GiB
	maxArgon2Time       = 1 << 20
	maxArgon2CPUs       = 16
	maxSaltLen          = 1024
)

// segment is the part of the header a Volume needs.
type segment struct {
	offset     uint64 // bytes, in the data source
	size       uint64 // bytes; 0 with dynamic
	dynamic    bool
	ivTweak    uint64 // 512-byte units
	cipher     string
	sectorSize int
}

func pbkdf2Key(hashName string, password, salt []byte, iter int64, keyLen int) ([]byte, error) {
	newHash, err := hashByName(hashName)
	if err != nil {
		return nil, err
	}
	if iter < 1 || iter > maxPBKDF2Iterations {
		return nil, fmt.Errorf("%w: pbkdf2 iterations %d", ErrUnsupported, iter)
	}
	if len(salt) > maxSaltLen {
		return nil, fmt.Errorf("%w: salt of %d bytes", ErrCorrupt, len(salt))
	}
	return pbkdf2.Key(newHash, string(password), salt, int(iter), keyLen)
}

// DeriveKey runs the keyslot KDF k over password, giving the keyLen-byte
// key of the keyslot's area. Parameters beyond the bounds this reader
// accepts are refused, so a writer cannot make a keyslot the reader rejects.
func (k *KDF) DeriveKey(password []byte, keyLen int) ([]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: keyslot has no kdf", ErrCorrupt)
	}
	switch k.Type {
	case "pbkdf2":
		return pbkdf2Key(k.Hash, password, k.Salt, k.Iterations, keyLen)
	case "argon2i", "argon2id":
		if k.Memory < 8 || k.Memory > maxArgon2MemoryKiB {
			return nil, fmt.Errorf("%w: %s memory %d KiB (allowed 8 KiB .. 4 GiB)", ErrUnsupported, k.Type, k.Memory)
		}
		if k.Time < 1 || k.Time > maxArgon2Time {
			return nil, fmt.Errorf("%w: %s time cost %d", ErrUnsupported, k.Type, k.Time)
		}
		if k.CPUs < 1 || k.CPUs > maxArgon2CPUs {
			return nil, fmt.Errorf("%w: %s cpus %d (allowed 1..%d)", ErrUnsupported, k.Type, k.CPUs, maxArgon2CPUs)
		}
		if len(k.Salt) > maxSaltLen {
			return nil, fmt.Errorf("%w: salt of %d bytes", ErrCorrupt, len(k.Salt))
		}
		if k.Type == "argon2i" {
			return argon2.Key(password, k.Salt, uint32(k.Time), uint32(k.Memory), uint8(k.CPUs), uint32(keyLen)), nil
		}
		return argon2.IDKey(password, k.Salt, uint32(k.Time), uint32(k.Memory), uint8(k.CPUs), uint32(keyLen)), nil
	}
	return nil, fmt.Errorf("%w: kdf %q", ErrUnsupported, k.Type)
}

// decryptAF reads the AF split of keySize*stripes bytes at off and decrypts
// it with cipherSpec under areaKey (512-byte sectors, IV from 0).
func decryptAF(src blockdev.Source, off uint64, limit uint64, cipherSpec string, areaKey []byte, keySize, stripes int) ([]byte, error) {
	if err := afCheck(keySize, stripes); err != nil {
		return nil, err
	}
	n := afAreaSize(keySize, stripes)
	if limit != 0 && n > limit {
		return nil, fmt.Errorf("%w: key material of %d bytes does not fit its %d-byte area", ErrCorrupt, n, limit)
	}
	if off > uint64(src.Size()) || uint64(src.Size())-off < n {
		return nil, fmt.Errorf("%w: key material [%d,+%d) beyond the %d-byte header source", ErrTruncated, off, n, src.Size())
	}
	c, err := newCipher(cipherSpec, areaKey)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if err := readFull(src, buf, int64(off)); err != nil {
		return nil, err
	}
	c.DecryptSectors(buf, buf, 512, 0)
	return buf, nil
}

// newCipher maps xts's unsupported-cipher error onto ErrUnsupported.
func newCipher(spec string, key []byte) (xts.SectorCipher, error) {
	c, err := xts.New(spec, key)
	if err != nil {
		if errors.Is(err, xts.ErrUnsupportedCipher) {
			return nil, fmt.Errorf("%w: cipher %q", ErrUnsupported, spec)
		}
		return nil, fmt.Errorf("%w: cipher %q with a %d-byte key: %v", ErrCorrupt, spec, len(key), err)
	}
	return c, nil
}

// checkSupported refuses LUKS2 headers whose data this reader cannot present
// faithfully, naming the reason.
func (h *Header) checkSupported() (segID string, seg *Segment, err error) {
	md := h.Metadata
	if r := md.Config.Requirements; r != nil && len(r.Mandatory) > 0 {
		return "", nil, fmt.Errorf("%w: mandatory requirements %q (e.g. a reencryption in progress)", ErrUnsupported, r.Mandatory)
	}
	for _, id := range sortedIDs(md.Keyslots) {
		if md.Keyslots[id].Type == "reencrypt" {
			return "", nil, fmt.Errorf("%w: keyslot %s is a reencryption keyslot (reencryption in progress)", ErrUnsupported, id)
		}
	}
	if len(md.Segments) != 1 {
		return "", nil, fmt.Errorf("%w: %d data segments (only one is supported)", ErrUnsupported, len(md.Segments))
	}
	for id, s := range md.Segments {
		segID, seg = id, s
	}
	if seg.Type != "crypt" {
		return "", nil, fmt.Errorf("%w: segment %s of type %q", ErrUnsupported, segID, seg.Type)
	}
	if len(seg.Flags) > 0 {
		return "", nil, fmt.Errorf("%w: segment %s has flags %q (reencryption in progress)", ErrUnsupported, segID, seg.Flags)
	}
	if len(seg.Integrity) > 0 && string(seg.Integrity) != "null" {
		return "", nil, fmt.Errorf("%w: segment %s uses dm-integrity", ErrUnsupported, segID)
	}
	if !validSectorSize(seg.SectorSize) {
		return "", nil, fmt.Errorf("%w: segment %s sector_size %d", ErrCorrupt, segID, seg.SectorSize)
	}
	if uint64(seg.Offset)%512 != 0 {
		return "", nil, fmt.Errorf("%w: segment %s offset %d is not a multiple of 512", ErrCorrupt, segID, seg.Offset)
	}
	if seg.Size != "dynamic" {
		n, _ := strconv.ParseUint(seg.Size, 10, 64)
		if n%uint64(seg.SectorSize) != 0 {
			return "", nil, fmt.Errorf("%w: segment %s size %d is not a multiple of its sector size", ErrCorrupt, segID, n)
		}
	}
	return segID, seg, nil
}

func validSectorSize(n int) bool {
	return n >= 512 && n <= 4096 && n&(n-1) == 0
}

// VolumeKey unlocks the header with passphrase and returns the volume key.
// hdrSrc is the source the header was read from (it holds the keyslots).
func (h *Header) VolumeKey(hdrSrc blockdev.Source, passphrase []byte) ([]byte, error) {
	key, _, err := h.unlock(hdrSrc, passphrase)
	return key, err
}

func (h *Header) unlock(hdrSrc blockdev.Source, passphrase []byte) ([]byte, *segment, error) {
	switch {
	case h.Version == 1 && h.V1 != nil:
		return h.unlockLUKS1(hdrSrc, passphrase)
	case h.Version == 2 && h.Metadata != nil:
		return h.unlockLUKS2(hdrSrc, passphrase)
	}
	return nil, nil, fmt.Errorf("%w: empty header", ErrCorrupt)
}

func (h *Header) unlockLUKS2(src blockdev.Source, passphrase []byte) ([]byte, *segment, error) {
	segID, seg, err := h.checkSupported()
	if err != nil {
		return nil, nil, err
	}
	md := h.Metadata
	// As cryptsetup's LUKS2_keyslot_open: preferred (2) keyslots, then
	// normal ones (1, the default); ignored (0) and invalid priorities are
	// never tried without an explicit keyslot. cryptsetup addresses
	// keyslots by number, so only canonical decimal ids can be opened.
	prio := func(id string) int {
		if p := md.Keyslots[id].Priority; p != nil {
			return *p
		}
		return 1
	}
	var ids []string
	for _, p := range []int{2, 1} {
		for _, id := range sortedIDs(md.Keyslots) {
			if prio(id) == p && canonicalID(id) {
				ids = append(ids, id)
			}
		}
	}

	var skipped []error
	tried := 0
	for _, id := range ids {
		d := digestFor(md, id, segID)
		if d == nil {
			continue // not bound to the data segment (e.g. an unbound key)
		}
		key, err := unlockKeyslot(src, id, md.Keyslots[id], d, passphrase)
		if err == nil {
			s := &segment{
				offset:     uint64(seg.Offset),
				ivTweak:    uint64(seg.IVTweak),
				cipher:     seg.Encryption,
				sectorSize: seg.SectorSize,
				dynamic:    seg.Size == "dynamic",
			}
			if !s.dynamic {
				s.size, _ = strconv.ParseUint(seg.Size, 10, 64)
			}
			return key, s, nil
		}
		if errors.Is(err, ErrWrongKey) {
			tried++
			continue
		}
		skipped = append(skipped, fmt.Errorf("keyslot %s: %w", id, err))
	}
	if tried == 0 && len(skipped) > 0 {
		return nil, nil, fmt.Errorf("luks2: no usable keyslot: %w", errors.Join(skipped...))
	}
	if len(skipped) > 0 {
		return nil, nil, fmt.Errorf("%w (also not usable: %v)", ErrWrongKey, errors.Join(skipped...))
	}
	if tried == 0 {
		return nil, nil, fmt.Errorf("%w: no keyslot is bound to segment %s", ErrWrongKey, segID)
	}
	return nil, nil, ErrWrongKey
}

// digestFor returns the digest that covers both keyslot ks and segment seg.
func digestFor(md *Metadata, ks, seg string) *Digest {
	for _, id := range sortedIDs(md.Digests) {
		d := md.Digests[id]
		if slices.Contains(d.Keyslots, ks) && slices.Contains(d.Segments, seg) {
			return d
		}
	}
	return nil
}

// unlockKeyslot returns the volume key from one LUKS2 keyslot, ErrWrongKey if
// the passphrase does not open it, or another error if it cannot be tried.
func unlockKeyslot(src blockdev.Source, id string, ks *Keyslot, d *Digest, passphrase []byte) ([]byte, error) {
	if ks.Type != "luks2" {
		return nil, fmt.Errorf("%w: keyslot type %q", ErrUnsupported, ks.Type)
	}
	if ks.AF == nil || ks.Area == nil || ks.KDF == nil {
		return nil, fmt.Errorf("%w: keyslot %s lacks af, area or kdf", ErrCorrupt, id)
	}
	if ks.KDF.bad || d.bad {
		return nil, fmt.Errorf("%w: keyslot %s: a salt or digest is not valid base64", ErrCorrupt, id)
	}
	if ks.AF.Type != "luks1" {
		return nil, fmt.Errorf("%w: anti-forensic splitter %q", ErrUnsupported, ks.AF.Type)
	}
	if ks.Area.Type != "raw" {
		return nil, fmt.Errorf("%w: keyslot area type %q", ErrUnsupported, ks.Area.Type)
	}
	if d.Type != "pbkdf2" {
		return nil, fmt.Errorf("%w: digest type %q", ErrUnsupported, d.Type)
	}
	if len(d.Digest) == 0 || len(d.Digest) > 64 {
		return nil, fmt.Errorf("%w: digest of %d bytes", ErrCorrupt, len(d.Digest))
	}
	if err := afCheck(ks.KeySize, ks.AF.Stripes); err != nil {
		return nil, err
	}
	if ks.Area.KeySize <= 0 || ks.Area.KeySize > 1024 {
		return nil, fmt.Errorf("%w: keyslot area key_size %d", ErrCorrupt, ks.Area.KeySize)
	}
	if _, err := hashByName(ks.AF.Hash); err != nil {
		return nil, err
	}
	if _, err := hashByName(d.Hash); err != nil {
		return nil, err
	}
	if d.Iterations < 1 || d.Iterations > maxPBKDF2Iterations {
		return nil, fmt.Errorf("%w: digest iterations %d", ErrUnsupported, d.Iterations)
	}
	// Check the cipher before spending time in the KDF.
	if _, err := newCipher(ks.Area.Encryption, make([]byte, ks.Area.KeySize)); err != nil {
		return nil, err
	}
	areaKey, err := ks.KDF.DeriveKey(passphrase, ks.Area.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(areaKey)
	split, err := decryptAF(src, uint64(ks.Area.Offset), uint64(ks.Area.Size), ks.Area.Encryption, areaKey, ks.KeySize, ks.AF.Stripes)
	if err != nil {
		return nil, err
	}
	defer clear(split)
	key, err := AFMerge(ks.AF.Hash, split, ks.KeySize, ks.AF.Stripes)
	if err != nil {
		return nil, err
	}
	check, err := pbkdf2Key(d.Hash, key, d.Salt, d.Iterations, len(d.Digest))
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(check, d.Digest) != 1 {
		clear(key)
		return nil, ErrWrongKey
	}
	return key, nil
}

func (h *Header) unlockLUKS1(src blockdev.Source, passphrase []byte) ([]byte, *segment, error) {
	p := h.V1
	spec := p.CipherName + "-" + p.CipherMode
	keyLen := int(p.KeyBytes)
	if _, err := newCipher(spec, make([]byte, keyLen)); err != nil {
		return nil, nil, err
	}
	if _, err := hashByName(p.HashSpec); err != nil {
		return nil, nil, err
	}
	if p.MKDigestIterations < 1 || p.MKDigestIterations > maxPBKDF2Iterations {
		return nil, nil, fmt.Errorf("%w: mkDigestIterations %d", ErrUnsupported, p.MKDigestIterations)
	}
	seg := &segment{offset: uint64(p.PayloadOffset) * 512, dynamic: true, cipher: spec, sectorSize: 512}
	var skipped []error
	tried := 0
	for i := range p.KeyBlocks {
		kb := &p.KeyBlocks[i]
		if !kb.Enabled() {
			continue
		}
		derived, err := pbkdf2Key(p.HashSpec, passphrase, kb.PasswordSalt, int64(kb.PasswordIterations), keyLen)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key slot %d: %w", i, err))
			continue
		}
		split, err := decryptAF(src, uint64(kb.KeyMaterialOffset)*512, 0, spec, derived, keyLen, int(kb.Stripes))
		clear(derived)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key slot %d: %w", i, err))
			continue
		}
		key, err := AFMerge(p.HashSpec, split, keyLen, int(kb.Stripes))
		clear(split)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key slot %d: %w", i, err))
			continue
		}
		check, err := pbkdf2Key(p.HashSpec, key, p.MKDigestSalt, int64(p.MKDigestIterations), luks1DigestSize)
		if err != nil {
			return nil, nil, err
		}
		if subtle.ConstantTimeCompare(check, p.MKDigest) == 1 {
			return key, seg, nil
		}
		clear(key)
		tried++
	}
	if tried == 0 && len(skipped) > 0 {
		return nil, nil, fmt.Errorf("luks1: no usable key slot: %w", errors.Join(skipped...))
	}
	if len(skipped) > 0 {
		return nil, nil, fmt.Errorf("%w (also not usable: %v)", ErrWrongKey, errors.Join(skipped...))
	}
	return nil, nil, ErrWrongKey
}
