package luks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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

// IsLUKS reports whether src starts with a LUKS1 or LUKS2 magic.
func IsLUKS(src blockdev.Source) bool {
	var b [8]byte
	if err := readFull(src, b[:], 0); err != nil {
		return false
	}
	v := binary.BigEndian.Uint16(b[6:8])
	return bytes.Equal(b[:6], magic1) && (v == 1 || v == 2)
}

// ReadHeader parses the LUKS header at the start of src. For LUKS2 a
// damaged primary copy falls back to the secondary one.
func ReadHeader(src blockdev.Source) (*Header, error) {
	var b [8]byte
	if err := readFull(src, b[:], 0); err != nil {
		return nil, fmt.Errorf("luks: header: %w", err)
	}
	if bytes.Equal(b[:6], magic1) && binary.BigEndian.Uint16(b[6:8]) == 1 {
		return readLUKS1(src)
	}
	h, err := readLUKS2(src)
	if err != nil && !bytes.Equal(b[:6], magic1) {
		// Only a secondary copy could rescue a header without the primary
		// magic; if there is none, this simply is not LUKS (a TrueCrypt,
		// BitLocker or LVM volume, a bare file system, random bytes).
		return nil, fmt.Errorf("%w: no LUKS magic at the start and no valid LUKS2 secondary header", ErrNotLUKS)
	}
	return h, err
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

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
