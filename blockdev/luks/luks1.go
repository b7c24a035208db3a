package luks

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/chestfs/chestfs/blockdev"
)

// LUKS1 on-disk constants (cryptsetup's lib/luks1/luks.h).
const (
	luks1PhdrSize     = 592
	luks1NumKeys      = 8
	luks1KeyActive    = 0x00AC71F3
	luks1KeyDisabled  = 0x0000DEAD
	luks1DigestSize   = 20
	luks1SaltSize     = 32
	luks1SectorSize   = 512
	luks1KeyblockBase = 208
	luks1KeyblockSize = 48
)

// PHDR is the LUKS1 partition header, with the specification's field names.
type PHDR struct {
	Version            uint16                 `json:"version"`
	CipherName         string                 `json:"cipherName"`
	CipherMode         string                 `json:"cipherMode"`
	HashSpec           string                 `json:"hashSpec"`
	PayloadOffset      uint32                 `json:"payloadOffset"` // 512-byte sectors
	KeyBytes           uint32                 `json:"keyBytes"`
	MKDigest           []byte                 `json:"mkDigest"`
	MKDigestSalt       []byte                 `json:"mkDigestSalt"`
	MKDigestIterations uint32                 `json:"mkDigestIterations"`
	UUID               string                 `json:"uuid"`
	KeyBlocks          [luks1NumKeys]KeyBlock `json:"keyblock"`
}

// KeyBlock is one LUKS1 key slot.
type KeyBlock struct {
	Active             uint32 `json:"active"`
	PasswordIterations uint32 `json:"passwordIterations"`
	PasswordSalt       []byte `json:"passwordSalt"`
	KeyMaterialOffset  uint32 `json:"keyMaterialOffset"` // 512-byte sectors
	Stripes            uint32 `json:"stripes"`
}

// Enabled reports whether the slot holds a key.
func (k *KeyBlock) Enabled() bool { return k.Active == luks1KeyActive }

func readLUKS1(src blockdev.Source) (*Header, error) {
	b := make([]byte, luks1PhdrSize)
	if err := readFull(src, b, 0); err != nil {
		return nil, fmt.Errorf("luks1: header: %w", err)
	}
	p := &PHDR{
		Version: binary.BigEndian.Uint16(b[6:8]),
		// As in cryptsetup, each string ends at the field's last byte at
		// the latest.
		CipherName:         cString(b[8:39]),
		CipherMode:         cString(b[40:71]),
		HashSpec:           cString(b[72:103]),
		PayloadOffset:      binary.BigEndian.Uint32(b[104:108]),
		KeyBytes:           binary.BigEndian.Uint32(b[108:112]),
		MKDigest:           append([]byte(nil), b[112:132]...),
		MKDigestSalt:       append([]byte(nil), b[132:164]...),
		MKDigestIterations: binary.BigEndian.Uint32(b[164:168]),
		UUID:               cString(b[168:207]),
	}
	for i := range p.KeyBlocks {
		kb := b[luks1KeyblockBase+i*luks1KeyblockSize:]
		p.KeyBlocks[i] = KeyBlock{
			Active:             binary.BigEndian.Uint32(kb[0:4]),
			PasswordIterations: binary.BigEndian.Uint32(kb[4:8]),
			PasswordSalt:       append([]byte(nil), kb[8:40]...),
			KeyMaterialOffset:  binary.BigEndian.Uint32(kb[40:44]),
			Stripes:            binary.BigEndian.Uint32(kb[44:48]),
		}
	}
	// A key slot in any state but active is disabled, as for cryptsetup
	// (LUKS_keyslot_info); it is not refused.
	if !luks1Hashes[strings.ToLower(p.HashSpec)] {
		return nil, fmt.Errorf("%w: luks1: requested LUKS hash %q is not supported", ErrCorrupt, p.HashSpec)
	}
	if p.KeyBytes == 0 || p.KeyBytes > 1024 {
		return nil, fmt.Errorf("%w: luks1: keyBytes %d", ErrCorrupt, p.KeyBytes)
	}
	if err := checkLUKS1Keyslots(p, uint64(src.Size())); err != nil {
		return nil, err
	}
	return &Header{Version: 1, UUID: p.UUID, V1: p}, nil
}

// luks1Hashes are the hashes cryptsetup's crypto backend knows with a
// digest of at least 20 bytes (LUKS_DIGESTSIZE), the hashSpec values
// LUKS_read_phdr accepts; names are compared without case, as the backend
// does. Those this package does not implement are refused at unlock as
// unsupported.
var luks1Hashes = map[string]bool{"sha1": true, "sha224": true, "sha256": true, "sha384": true, "sha512": true,
	"sha512-256": true, "ripemd160": true, "whirlpool": true, "sha3-224": true, "sha3-256": true, "sha3-384": true,
	"sha3-512": true, "blake2b-512": true, "blake2s-256": true, "sm3": true}

// afAreaSize is the on-disk size of an AF split, rounded up to 512 bytes.
func afAreaSize(keySize, stripes int) uint64 {
	n := uint64(keySize) * uint64(stripes)
	return (n + 511) / 512 * 512
}

// luks1Stripes is the only stripe count LUKS1 allows (LUKS_STRIPES).
const luks1Stripes = 4000

// checkLUKS1Keyslots applies cryptsetup's LUKS_check_keyslots to every key
// slot, active or not: 4000 stripes, key material after the phdr and below
// the payload, no two slots overlapping; and LUKS_check_device_size: the
// header source holds the last slot.
func checkLUKS1Keyslots(p *PHDR, srcSize uint64) error {
	secs := afAreaSize(int(p.KeyBytes), luks1Stripes) / luks1SectorSize
	order := make([]int, luks1NumKeys)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return p.KeyBlocks[order[a]].KeyMaterialOffset < p.KeyBlocks[order[b]].KeyMaterialOffset
	})
	bad := func(i int, format string, args ...any) error {
		return fmt.Errorf("%w: luks1: keyslot %d is invalid: %s", ErrCorrupt, i, fmt.Sprintf(format, args...))
	}
	for i, k := range p.KeyBlocks {
		off := uint64(k.KeyMaterialOffset)
		switch {
		case k.Stripes != luks1Stripes:
			return bad(i, "%d stripes (LUKS1 has %d)", k.Stripes, luks1Stripes)
		case off*luks1SectorSize < luks1PhdrSize:
			return bad(i, "key material at sector %d overlaps the header", off)
		case p.PayloadOffset != 0 && off+secs > uint64(p.PayloadOffset):
			return bad(i, "key material at sectors [%d,+%d) reaches the payload at sector %d", off, secs, p.PayloadOffset)
		}
	}
	for j := 1; j < luks1NumKeys; j++ {
		prev, next := order[j-1], order[j]
		if uint64(p.KeyBlocks[next].KeyMaterialOffset) < uint64(p.KeyBlocks[prev].KeyMaterialOffset)+secs {
			return bad(prev, "key material overlaps key slot %d", next)
		}
	}
	need := (uint64(p.KeyBlocks[order[luks1NumKeys-1]].KeyMaterialOffset) + secs) * luks1SectorSize
	if srcSize < need {
		return fmt.Errorf("%w: luks1: device too small: the key slots need %d bytes, the header source has %d", ErrTruncated, need, srcSize)
	}
	return nil
}
