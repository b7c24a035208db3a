package pack

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/xts"
)

// The LUKS2 layout written here is cryptsetup 2.x's default for
// `luksFormat --type luks2 --sector-size 4096` with a 512-bit aes-xts key:
// two 16 KiB header copies, one keyslot area from 32 KiB, data at 16 MiB.
// The structures and their encoding are blockdev/luks's; these are the
// choices.
const (
	hdrSize        = 16384                           // binary header + JSON area, each copy
	jsonSize       = hdrSize - luks.BinaryHeaderSize // 12288
	keyslotsOffset = 2 * hdrSize                     // 32768
	dataOffset     = 16 << 20                        // cryptsetup's default data offset
	keyslotsSize   = dataOffset - keyslotsOffset     // 16744448
	volumeKeySize  = 64                              // AES-256-XTS
	afStripes      = 4000                            // LUKS_STRIPES
	afHash         = "sha256"                        // AF diffusion, digest and header checksum hash
	cipherSpec     = "aes-xts-plain64"               // segment and keyslot area cipher
	dataSectorSize = 4096                            // segment sector_size
	areaSectorSize = 512                             // keyslot areas always use 512-byte sectors
	saltSize       = 32                              // LUKS_SALTSIZE
	hdrSaltSize    = 64                              // the binary header's salt, per copy
	afMaterialSize = volumeKeySize * afStripes       // 256000, a multiple of 512
	keyslotArea    = (afMaterialSize + 4095) &^ 4095 // cryptsetup rounds the area to 4096: 258048
)

// kdfParams is the keyslot's passphrase KDF, already validated.
type kdfParams struct {
	Type       string // "argon2id", "argon2i" or "pbkdf2"
	Time       uint32 // argon2 passes or pbkdf2 iterations
	MemoryKiB  uint32 // argon2 only
	Parallel   uint8  // argon2 only
	DigestIter int    // iterations of the volume key digest (pbkdf2-sha256)
}

// luksKDF is k as the keyslot's JSON kdf object, with a new salt.
func (k kdfParams) luksKDF() *luks.KDF {
	kj := &luks.KDF{Type: k.Type, Salt: randBytes(saltSize)}
	if k.Type == "pbkdf2" {
		kj.Hash, kj.Iterations = afHash, int64(k.Time)
	} else {
		kj.Time, kj.Memory, kj.CPUs = int64(k.Time), int64(k.MemoryKiB), int64(k.Parallel)
	}
	return kj
}

// luksHeader is everything before the data segment: both header copies and
// the keyslots area, keyslotsOffset+keyslotsSize = dataOffset bytes.
// volumeKey is the 64-byte aes-xts key of the data segment.
// segmentSize is "dynamic" (to the end of the device) or the ext4's size in
// bytes, when something (a verity tree) follows the data.
func luksHeader(passphrase, volumeKey []byte, k kdfParams, label, segmentSize string) (hdr []byte, uuid string, err error) {
	if len(volumeKey) != volumeKeySize {
		return nil, "", fmt.Errorf("pack: volume key must be %d bytes", volumeKeySize)
	}
	buf := make([]byte, dataOffset)
	kdf := k.luksKDF()
	if err := writeKeyslot(buf[keyslotsOffset:], kdf, passphrase, volumeKey); err != nil {
		return nil, "", err
	}
	digestSalt := randBytes(saltSize)
	digest, err := pbkdf2.Key(sha256.New, string(volumeKey), digestSalt, k.DigestIter, sha256.Size)
	if err != nil {
		return nil, "", fmt.Errorf("pack: digest: %w", err)
	}
	meta := luks.Metadata{
		Keyslots: map[string]*luks.Keyslot{"0": {
			Type:    "luks2",
			KeySize: volumeKeySize,
			AF:      &luks.AF{Type: "luks1", Stripes: afStripes, Hash: afHash},
			Area: &luks.Area{Type: "raw", Offset: keyslotsOffset, Size: keyslotArea,
				Encryption: cipherSpec, KeySize: volumeKeySize},
			KDF: kdf,
		}},
		Tokens: map[string]json.RawMessage{},
		Segments: map[string]*luks.Segment{"0": {Type: "crypt", Offset: dataOffset, Size: segmentSize,
			IVTweak: 0, Encryption: cipherSpec, SectorSize: dataSectorSize}},
		Digests: map[string]*luks.Digest{"0": {Type: "pbkdf2", Keyslots: []string{"0"}, Segments: []string{"0"},
			Hash: afHash, Iterations: int64(k.DigestIter), Salt: digestSalt, Digest: digest}},
		Config: luks.Config{JSONSize: jsonSize, KeyslotsSize: keyslotsSize},
	}
	js, err := json.Marshal(&meta)
	if err != nil {
		return nil, "", fmt.Errorf("pack: metadata: %w", err)
	}
	uuid = newUUID()
	for i, magic := range []string{"LUKS", "SKUL"} {
		off := uint64(i) * hdrSize
		// Each copy has its own salt, as cryptsetup writes them.
		bin := luks.BinaryHeader{Magic: magic, Version: 2, HdrSize: hdrSize, SeqID: 1, Label: label,
			ChecksumAlg: afHash, Salt: randBytes(hdrSaltSize), UUID: uuid, HdrOffset: off}
		if err := bin.Encode(buf[off:off+hdrSize], js); err != nil {
			return nil, "", fmt.Errorf("pack: %w", err)
		}
	}
	return buf, uuid, nil
}

// writeKeyslot fills area (the keyslots area): at its start the AF split of
// volumeKey encrypted under the key kdf derives from passphrase (512-byte
// sectors, IV from 0), then random bytes, as cryptsetup leaves the unused
// rest.
func writeKeyslot(area []byte, kdf *luks.KDF, passphrase, volumeKey []byte) error {
	areaKey, err := kdf.DeriveKey(passphrase, volumeKeySize)
	if err != nil {
		return fmt.Errorf("pack: keyslot: %w", err)
	}
	defer clear(areaKey)
	material, err := luks.AFSplit(afHash, volumeKey, afStripes)
	if err != nil {
		return fmt.Errorf("pack: keyslot: %w", err)
	}
	defer clear(material)
	c, err := xts.New(cipherSpec, areaKey)
	if err != nil {
		return fmt.Errorf("pack: keyslot cipher: %w", err)
	}
	c.EncryptSectors(area[:afMaterialSize], material, areaSectorSize, 0)
	if _, err := rand.Read(area[afMaterialSize:]); err != nil {
		return fmt.Errorf("pack: random: %w", err)
	}
	return nil
}

// newUUID is a random (version 4) UUID in its canonical text form.
func newUUID() string {
	u := randBytes(16)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// randBytes returns n bytes from crypto/rand, which never fails on Linux
// (Go 1.24+ crashes the program instead of returning an error).
func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// defaultParallel is the argon2 lane count: cryptsetup's default maximum,
// fixed so that the image does not depend on the packing machine.
const defaultParallel = 4
