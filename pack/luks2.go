package pack

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"

	"golang.org/x/crypto/argon2"

	"github.com/chestfs/chestfs/xts"
)

// The LUKS2 layout written here is cryptsetup 2.x's default for
// `luksFormat --type luks2 --sector-size 4096` with a 512-bit aes-xts key:
// two 16 KiB header copies, one keyslot area from 32 KiB, data at 16 MiB.
const (
	hdrSize        = 16384                           // binary header + JSON area, each copy
	binHdrSize     = 4096                            // the binary part of hdrSize
	jsonSize       = hdrSize - binHdrSize            // 12288
	keyslotsOffset = 2 * hdrSize                     // 32768
	dataOffset     = 16 << 20                        // cryptsetup's default data offset
	keyslotsSize   = dataOffset - keyslotsOffset     // 16744448
	volumeKeySize  = 64                              // AES-256-XTS
	afStripes      = 4000                            // LUKS_STRIPES
	cipherSpec     = "aes-xts-plain64"               // segment and keyslot area cipher
	dataSectorSize = 4096                            // segment sector_size
	areaSectorSize = 512                             // keyslot areas always use 512-byte sectors
	saltSize       = 32                              // LUKS_SALTSIZE
	afMaterialSize = volumeKeySize * afStripes       // 256000, a multiple of 512
	keyslotArea    = (afMaterialSize + 4095) &^ 4095 // cryptsetup rounds the area to 4096: 258048
)

// Binary header field offsets (LUKS2 on-disk format specification, all
// integers big-endian).
const (
	offMagic     = 0
	offVersion   = 6
	offHdrSize   = 8
	offSeqID     = 16
	offLabel     = 24
	offCsumAlg   = 72
	offSalt      = 104
	offUUID      = 168
	offSubsystem = 208
	offHdrOffset = 256
	offCsum      = 448
	labelLen     = 48
	csumAlgLen   = 32
	hdrSaltLen   = 64
	uuidLen      = 40
)

var (
	magicPrimary   = []byte("LUKS\xba\xbe")
	magicSecondary = []byte("SKUL\xba\xbe")
)

// kdfParams is the keyslot's passphrase KDF, already validated.
type kdfParams struct {
	Type       string // "argon2id", "argon2i" or "pbkdf2"
	Time       uint32 // argon2 passes or pbkdf2 iterations
	MemoryKiB  uint32 // argon2 only
	Parallel   uint8  // argon2 only
	DigestIter int    // iterations of the volume key digest (pbkdf2-sha256)
}

// JSON metadata, field names as in the LUKS2 specification. uint64 values
// are decimal strings there; small counts are plain numbers.
type luksJSON struct {
	Keyslots map[string]keyslotJSON `json:"keyslots"`
	Tokens   map[string]any         `json:"tokens"`
	Segments map[string]segmentJSON `json:"segments"`
	Digests  map[string]digestJSON  `json:"digests"`
	Config   configJSON             `json:"config"`
}

type keyslotJSON struct {
	Type    string   `json:"type"`
	KeySize int      `json:"key_size"`
	AF      afJSON   `json:"af"`
	Area    areaJSON `json:"area"`
	KDF     kdfJSON  `json:"kdf"`
}

type afJSON struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes"`
	Hash    string `json:"hash"`
}

type areaJSON struct {
	Type       string `json:"type"`
	Offset     string `json:"offset"`
	Size       string `json:"size"`
	Encryption string `json:"encryption"`
	KeySize    int    `json:"key_size"`
}

type kdfJSON struct {
	Type       string `json:"type"`
	Hash       string `json:"hash,omitempty"`
	Iterations int    `json:"iterations,omitempty"`
	Time       int    `json:"time,omitempty"`
	Memory     int    `json:"memory,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	Salt       string `json:"salt"`
}

type segmentJSON struct {
	Type       string `json:"type"`
	Offset     string `json:"offset"`
	Size       string `json:"size"`
	IVTweak    string `json:"iv_tweak"`
	Encryption string `json:"encryption"`
	SectorSize int    `json:"sector_size"`
}

type digestJSON struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int      `json:"iterations"`
	Salt       string   `json:"salt"`
	Digest     string   `json:"digest"`
}

type configJSON struct {
	JSONSize     string `json:"json_size"`
	KeyslotsSize string `json:"keyslots_size"`
}

// deriveAreaKey runs the keyslot KDF over the passphrase.
func deriveAreaKey(k kdfParams, passphrase, salt []byte) ([]byte, error) {
	switch k.Type {
	case "argon2id":
		return argon2.IDKey(passphrase, salt, k.Time, k.MemoryKiB, k.Parallel, volumeKeySize), nil
	case "argon2i":
		return argon2.Key(passphrase, salt, k.Time, k.MemoryKiB, k.Parallel, volumeKeySize), nil
	case "pbkdf2":
		return pbkdf2.Key(sha256.New, string(passphrase), salt, int(k.Time), volumeKeySize)
	}
	return nil, fmt.Errorf("pack: unknown pbkdf %q", k.Type)
}

// luksHeader is everything before the data segment: both header copies and
// the keyslots area, keyslotsOffset+keyslotsSize = dataOffset bytes.
// volumeKey is the 64-byte aes-xts key of the data segment.
func luksHeader(passphrase, volumeKey []byte, k kdfParams, label string) ([]byte, error) {
	if len(volumeKey) != volumeKeySize {
		return nil, fmt.Errorf("pack: volume key must be %d bytes", volumeKeySize)
	}
	if len(label) >= labelLen {
		return nil, fmt.Errorf("pack: label longer than %d bytes", labelLen-1)
	}
	buf := make([]byte, dataOffset)

	// Keyslot 0: area key = KDF(passphrase); material = AF split of the
	// volume key, encrypted under the area key with 512-byte sectors.
	kdfSalt := randBytes(saltSize)
	areaKey, err := deriveAreaKey(k, passphrase, kdfSalt)
	if err != nil {
		return nil, err
	}
	material, err := afSplit(volumeKey, afStripes, rand.Read)
	if err != nil {
		return nil, err
	}
	c, err := xts.New(cipherSpec, areaKey)
	if err != nil {
		return nil, fmt.Errorf("pack: keyslot cipher: %w", err)
	}
	c.EncryptSectors(buf[keyslotsOffset:keyslotsOffset+afMaterialSize], material, areaSectorSize, 0)
	clear(areaKey)
	clear(material)
	// The unused rest of the keyslots area is random, as cryptsetup leaves it.
	if _, err := rand.Read(buf[keyslotsOffset+afMaterialSize:]); err != nil {
		return nil, fmt.Errorf("pack: random: %w", err)
	}

	digestSalt := randBytes(saltSize)
	digest, err := pbkdf2.Key(sha256.New, string(volumeKey), digestSalt, k.DigestIter, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("pack: digest: %w", err)
	}

	kj := kdfJSON{Type: k.Type, Salt: base64.StdEncoding.EncodeToString(kdfSalt)}
	if k.Type == "pbkdf2" {
		kj.Hash, kj.Iterations = "sha256", int(k.Time)
	} else {
		kj.Time, kj.Memory, kj.CPUs = int(k.Time), int(k.MemoryKiB), int(k.Parallel)
	}
	meta := luksJSON{
		Keyslots: map[string]keyslotJSON{"0": {
			Type:    "luks2",
			KeySize: volumeKeySize,
			AF:      afJSON{Type: "luks1", Stripes: afStripes, Hash: "sha256"},
			Area: areaJSON{Type: "raw", Offset: strconv.Itoa(keyslotsOffset), Size: strconv.Itoa(keyslotArea),
				Encryption: cipherSpec, KeySize: volumeKeySize},
			KDF: kj,
		}},
		Tokens: map[string]any{},
		Segments: map[string]segmentJSON{"0": {Type: "crypt", Offset: strconv.Itoa(dataOffset), Size: "dynamic",
			IVTweak: "0", Encryption: cipherSpec, SectorSize: dataSectorSize}},
		Digests: map[string]digestJSON{"0": {Type: "pbkdf2", Keyslots: []string{"0"}, Segments: []string{"0"},
			Hash: "sha256", Iterations: k.DigestIter, Salt: base64.StdEncoding.EncodeToString(digestSalt),
			Digest: base64.StdEncoding.EncodeToString(digest)}},
		Config: configJSON{JSONSize: strconv.Itoa(jsonSize), KeyslotsSize: strconv.Itoa(keyslotsSize)},
	}
	js, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("pack: metadata: %w", err)
	}
	if len(js) >= jsonSize { // the JSON area must keep a terminating NUL
		return nil, fmt.Errorf("pack: metadata of %d bytes does not fit the %d-byte JSON area", len(js), jsonSize)
	}

	uuid := newUUID()
	writeBinaryHeader(buf[0:hdrSize], magicPrimary, 0, label, uuid, js)
	writeBinaryHeader(buf[hdrSize:2*hdrSize], magicSecondary, hdrSize, label, uuid, js)
	return buf, nil
}

// writeBinaryHeader fills one hdrSize copy: binary header then JSON area,
// checksummed with sha256 over both with the csum field zero.
func writeBinaryHeader(b, magic []byte, hdrOffset uint64, label, uuid string, js []byte) {
	clear(b)
	copy(b[offMagic:], magic)
	binary.BigEndian.PutUint16(b[offVersion:], 2)
	binary.BigEndian.PutUint64(b[offHdrSize:], hdrSize)
	binary.BigEndian.PutUint64(b[offSeqID:], 1)
	copy(b[offLabel:offLabel+labelLen-1], label)
	copy(b[offCsumAlg:offCsumAlg+csumAlgLen-1], "sha256")
	copy(b[offSalt:offSalt+hdrSaltLen], randBytes(hdrSaltLen)) // per copy, as cryptsetup does
	copy(b[offUUID:offUUID+uuidLen-1], uuid)
	binary.BigEndian.PutUint64(b[offHdrOffset:], hdrOffset)
	copy(b[binHdrSize:], js)
	sum := sha256.Sum256(b[:hdrSize])
	copy(b[offCsum:], sum[:])
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
