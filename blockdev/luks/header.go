package luks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/chestfs/chestfs/blockdev"
)

// Header is a parsed LUKS1 or LUKS2 header. No key is needed to read it.
type Header struct {
	Version   int    // 1 or 2
	UUID      string // as stored
	Label     string // LUKS2 only
	Subsystem string // LUKS2 only

	// LUKS2: the header copy in use and its JSON metadata.
	Binary        *BinaryHeader
	Metadata      *Metadata
	FromSecondary bool // the primary copy was damaged or older
	rawJSON       []byte

	// LUKS1: the partition header.
	V1 *PHDR

	// Warnings about damaged or inconsistent copies that did not stop reading.
	Warnings []string
}

// IsLUKS reports whether src carries a LUKS signature where cryptsetup
// looks for one: the LUKS magic at the start (LUKS1, LUKS2, or a version
// cryptsetup refuses by name), or, when the start holds no LUKS1 or LUKS2
// header, a LUKS2 secondary binary header at one of the offsets cryptsetup
// probes. For a source that reads without I/O errors, ReadHeader returns
// ErrNotLUKS exactly when IsLUKS is false.
func IsLUKS(src blockdev.Source) bool {
	v, magic, err := primaryVersion(src)
	if err != nil {
		return false
	}
	if magic && v != 0 {
		return true
	}
	return secondaryMagic(src)
}

// primaryVersion reads the primary magic and version (cryptsetup's
// LUKS2_hdr_version_unlocked).
func primaryVersion(src blockdev.Source) (version uint16, magic bool, err error) {
	var b [8]byte
	if err := readFull(src, b[:], 0); err != nil {
		return 0, false, err
	}
	return binary.BigEndian.Uint16(b[6:8]), bytes.Equal(b[:6], magic1), nil
}

// secondaryMagic reports whether one of the secondary header offsets holds
// a secondary magic with version 2 and its own offset recorded, the binary
// header a damaged primary falls back to.
func secondaryMagic(src blockdev.Source) bool {
	var b [offHdrOffset + 8]byte
	for _, off := range luks2HdrSizes {
		if readFull(src, b[:], int64(off)) != nil {
			return false
		}
		if bytes.Equal(b[:luks2MagicLen], magic2) && binary.BigEndian.Uint16(b[offVersion:]) == 2 &&
			binary.BigEndian.Uint64(b[offHdrOffset:]) == off {
			return true
		}
	}
	return false
}

// ReadHeader parses the LUKS header at the start of src. For LUKS2 a
// damaged primary copy falls back to the secondary one. As cryptsetup, it
// dispatches on the primary magic's version: 1 is LUKS1; 2, or no primary
// magic at all, is LUKS2 (whose secondary copy may still be found); any
// other version is refused.
func ReadHeader(src blockdev.Source) (*Header, error) {
	v, magic, err := primaryVersion(src)
	if err != nil && !errors.Is(err, ErrTruncated) {
		return nil, fmt.Errorf("luks: header: %w", err)
	}
	switch {
	case magic && v == 1:
		return readLUKS1(src)
	case magic && v != 2 && v != 0:
		return nil, fmt.Errorf("%w: LUKS version %d", ErrUnsupported, v)
	case (!magic || v == 0) && !secondaryMagic(src):
		// Only a secondary copy could rescue a header without the primary
		// magic; if there is none, this simply is not LUKS (a TrueCrypt,
		// BitLocker or LVM volume, a bare file system, random bytes).
		return nil, fmt.Errorf("%w: no LUKS magic at the start and no LUKS2 secondary header", ErrNotLUKS)
	}
	return readLUKS2(src)
}

// headerJSON is the machine-readable form of a header (chestfs inspect --json).
type headerJSON struct {
	Version    int             `json:"version"`
	UUID       string          `json:"uuid"`
	Label      string          `json:"label,omitempty"`
	Subsystem  string          `json:"subsystem,omitempty"`
	HeaderCopy string          `json:"header_copy,omitempty"`
	Binary     *BinaryHeader   `json:"binary_header,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"` // as on disk
	LUKS1      *PHDR           `json:"luks1,omitempty"`
	Warnings   []string        `json:"warnings,omitempty"`
}

// MarshalJSON renders the header: for LUKS2 the binary header fields and the
// JSON metadata (in the on-disk spelling), for LUKS1 the phdr fields.
func (h *Header) MarshalJSON() ([]byte, error) {
	j := headerJSON{Version: h.Version, UUID: h.UUID, Label: h.Label, Subsystem: h.Subsystem,
		Binary: h.Binary, LUKS1: h.V1, Warnings: h.Warnings}
	if h.Metadata != nil {
		// The on-disk JSON keeps fields this package does not model (tokens,
		// reencryption details); fall back to the decoded form.
		if json.Valid(h.rawJSON) {
			j.Metadata = h.rawJSON
		} else if b, err := json.Marshal(h.Metadata); err == nil {
			j.Metadata = b
		}
	}
	if h.Version == 2 {
		j.HeaderCopy = "primary"
		if h.FromSecondary {
			j.HeaderCopy = "secondary"
		}
	}
	return json.Marshal(j)
}

// JSON is MarshalJSON, indented.
func (h *Header) JSON() ([]byte, error) {
	b, err := h.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
