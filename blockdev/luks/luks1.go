package luks

import (
	"encoding/binary"
	"fmt"

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
		Version:            binary.BigEndian.Uint16(b[6:8]),
		CipherName:         cString(b[8:40]),
		CipherMode:         cString(b[40:72]),
		HashSpec:           cString(b[72:104]),
		PayloadOffset:      binary.BigEndian.Uint32(b[104:108]),
		KeyBytes:           binary.BigEndian.Uint32(b[108:112]),
		MKDigest:           append([]byte(nil), b[112:132]...),
		MKDigestSalt:       append([]byte(nil), b[132:164]...),
		MKDigestIterations: binary.BigEndian.Uint32(b[164:168]),
		UUID:               cString(b[168:208]),
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
	if p.KeyBytes == 0 || p.KeyBytes > 1024 {
		return nil, fmt.Errorf("%w: luks1: keyBytes %d", ErrCorrupt, p.KeyBytes)
	}
	for i, k := range p.KeyBlocks {
		if k.Active != luks1KeyActive && k.Active != luks1KeyDisabled {
			return nil, fmt.Errorf("%w: luks1: key slot %d has state 0x%08x", ErrCorrupt, i, k.Active)
		}
		if k.Enabled() {
			if err := afCheck(int(p.KeyBytes), int(k.Stripes)); err != nil {
				return nil, fmt.Errorf("luks1: key slot %d: %w", i, err)
			}
			// Key material must lie below the payload (when there is one in this source).
			end := uint64(k.KeyMaterialOffset)*luks1SectorSize + afAreaSize(int(p.KeyBytes), int(k.Stripes))
			if k.KeyMaterialOffset == 0 || (p.PayloadOffset != 0 && end > uint64(p.PayloadOffset)*luks1SectorSize) {
				return nil, fmt.Errorf("%w: luks1: key slot %d material at sector %d overlaps the header or payload", ErrCorrupt, i, k.KeyMaterialOffset)
			}
		}
	}
	return &Header{Version: 1, UUID: p.UUID, V1: p}, nil
}

// afAreaSize is the on-disk size of an AF split, rounded up to 512 bytes.
func afAreaSize(keySize, stripes int) uint64 {
	n := uint64(keySize) * uint64(stripes)
	return (n + 511) / 512 * 512
}
