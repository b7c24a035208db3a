package luks

// The LUKS2 on-disk structures, declared once for the reader (luks2.go) and
// for writers (chestfs pack): the binary header that starts each header
// copy, its checksum, and the JSON metadata that follows it.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// BinaryHeaderSize is the size of the binary part of a LUKS2 header copy;
// the JSON area fills the rest of hdr_size.
const BinaryHeaderSize = 4096

// MaxLabelLen is the longest LUKS2 label or subsystem: the 48-byte fields
// keep a terminating NUL.
const MaxLabelLen = luks2LabelLen - 1

// LUKS2 binary header field offsets and lengths (cryptsetup's struct
// luks2_hdr_disk; integers big-endian, strings NUL-terminated).
const (
	luks2MagicLen   = 6
	offVersion      = 6
	offHdrSize      = 8
	offSeqID        = 16
	offLabel        = 24
	luks2LabelLen   = 48
	offCsumAlg      = 72
	csumAlgLen      = 32
	offSalt         = 104
	luks2SaltLen    = 64
	offUUID         = 168
	uuidLen         = 40
	offSubsystem    = 208
	subsystemLen    = 48
	offHdrOffset    = 256
	luks2ChecksumAt = 448
	luks2ChecksumN  = 64
)

var (
	magic1 = []byte{'L', 'U', 'K', 'S', 0xba, 0xbe}
	magic2 = []byte{'S', 'K', 'U', 'L', 0xba, 0xbe}
)

// BinaryHeader is one decoded LUKS2 binary header (primary or secondary).
type BinaryHeader struct {
	Magic       string `json:"magic"` // "LUKS" or "SKUL" (without the 0xbabe)
	Version     uint16 `json:"version"`
	HdrSize     uint64 `json:"hdr_size"`
	SeqID       uint64 `json:"seqid"`
	Label       string `json:"label"`
	ChecksumAlg string `json:"checksum_alg"`
	Salt        []byte `json:"salt"`
	UUID        string `json:"uuid"`
	Subsystem   string `json:"subsystem"`
	HdrOffset   uint64 `json:"hdr_offset"`
	Checksum    []byte `json:"checksum"`
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// decodeLUKS2Binary decodes the 4096-byte binary header in b.
func decodeLUKS2Binary(b []byte) BinaryHeader {
	return BinaryHeader{
		Magic:   string(b[0:4]),
		Version: binary.BigEndian.Uint16(b[offVersion:]),
		HdrSize: binary.BigEndian.Uint64(b[offHdrSize:]),
		SeqID:   binary.BigEndian.Uint64(b[offSeqID:]),
		// cryptsetup's hdr_from_disk terminates each string field at its
		// last byte, so a field without NUL loses its last character.
		Label:       cString(b[offLabel : offLabel+luks2LabelLen-1]),
		ChecksumAlg: cString(b[offCsumAlg : offCsumAlg+csumAlgLen-1]),
		Salt:        bytes.Clone(b[offSalt : offSalt+luks2SaltLen]),
		UUID:        cString(b[offUUID : offUUID+uuidLen-1]),
		Subsystem:   cString(b[offSubsystem : offSubsystem+subsystemLen-1]),
		HdrOffset:   binary.BigEndian.Uint64(b[offHdrOffset:]),
		Checksum:    bytes.Clone(b[luks2ChecksumAt : luks2ChecksumAt+luks2ChecksumN]),
	}
}

// luks2Checksum hashes a header copy (binary header, then JSON area) with
// the checksum field taken as zero.
func luks2Checksum(newHash func() hash.Hash, bin, jsonArea []byte) []byte {
	h := newHash()
	h.Write(bin[:luks2ChecksumAt])
	h.Write(make([]byte, luks2ChecksumN))
	h.Write(bin[luks2ChecksumAt+luks2ChecksumN : BinaryHeaderSize])
	h.Write(jsonArea)
	return h.Sum(nil)
}

// Encode writes the header copy h describes into b, which must be h.HdrSize
// bytes: the binary header, then js (the JSON metadata) NUL-padded in the
// JSON area, and the h.ChecksumAlg checksum over both, which is also stored
// in h.Checksum. h.Magic is "LUKS" for a primary copy, "SKUL" for a
// secondary one. It is the inverse of what ReadHeader decodes and checks.
func (h *BinaryHeader) Encode(b, js []byte) error {
	var magic []byte
	switch h.Magic {
	case "LUKS":
		magic = magic1
	case "SKUL":
		magic = magic2
	default:
		return fmt.Errorf("luks2: encode: magic %q (want LUKS or SKUL)", h.Magic)
	}
	if h.Version != 2 || !validHdrSize(h.HdrSize) || uint64(len(b)) != h.HdrSize {
		return fmt.Errorf("luks2: encode: version %d, hdr_size %d into %d bytes", h.Version, h.HdrSize, len(b))
	}
	if len(js) >= len(b)-BinaryHeaderSize { // the JSON area keeps a terminating NUL
		return fmt.Errorf("luks2: encode: metadata of %d bytes does not fit the %d-byte JSON area", len(js), len(b)-BinaryHeaderSize)
	}
	if err := checkCString("label", h.Label, luks2LabelLen); err != nil {
		return err
	}
	if err := checkCString("subsystem", h.Subsystem, subsystemLen); err != nil {
		return err
	}
	if err := checkCString("uuid", h.UUID, uuidLen); err != nil {
		return err
	}
	if err := checkCString("checksum_alg", h.ChecksumAlg, csumAlgLen); err != nil {
		return err
	}
	if len(h.Salt) > luks2SaltLen {
		return fmt.Errorf("luks2: encode: salt of %d bytes (at most %d)", len(h.Salt), luks2SaltLen)
	}
	newHash, err := hashByName(h.ChecksumAlg)
	if err != nil {
		return fmt.Errorf("luks2: encode: checksum: %w", err)
	}
	clear(b)
	copy(b, magic)
	binary.BigEndian.PutUint16(b[offVersion:], h.Version)
	binary.BigEndian.PutUint64(b[offHdrSize:], h.HdrSize)
	binary.BigEndian.PutUint64(b[offSeqID:], h.SeqID)
	copy(b[offLabel:], h.Label)
	copy(b[offCsumAlg:], h.ChecksumAlg)
	copy(b[offSalt:], h.Salt)
	copy(b[offUUID:], h.UUID)
	copy(b[offSubsystem:], h.Subsystem)
	binary.BigEndian.PutUint64(b[offHdrOffset:], h.HdrOffset)
	copy(b[BinaryHeaderSize:], js)
	sum := luks2Checksum(newHash, b[:BinaryHeaderSize], b[BinaryHeaderSize:])
	copy(b[luks2ChecksumAt:], sum)
	h.Checksum = bytes.Clone(b[luks2ChecksumAt : luks2ChecksumAt+luks2ChecksumN])
	return nil
}

// checkCString refuses a string that does not fit a NUL-terminated field of
// n bytes.
func checkCString(field, s string, n int) error {
	if len(s) >= n || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("luks2: encode: %s must be at most %d bytes without NUL", field, n-1)
	}
	return nil
}

// U64 is a LUKS2 JSON uint64: a decimal string on disk.
type U64 uint64

func (u *U64) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a decimal string, got %s", truncateForError(b))
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("expected a decimal string, got %q", s)
	}
	*u = U64(v)
	return nil
}

func (u U64) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatUint(uint64(u), 10))
}

func truncateForError(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// Metadata is the LUKS2 JSON area, with the fields of the LUKS2
// specification. json.Marshal of a Metadata gives the on-disk spelling
// (uint64 values as decimal strings, binary values in base64), in
// cryptsetup's field order.
type Metadata struct {
	Keyslots map[string]*Keyslot        `json:"keyslots"`
	Tokens   map[string]json.RawMessage `json:"tokens"`
	Segments map[string]*Segment        `json:"segments"`
	Digests  map[string]*Digest         `json:"digests"`
	Config   Config                     `json:"config"`
}

type Keyslot struct {
	Type     string `json:"type"`
	KeySize  int    `json:"key_size"`
	AF       *AF    `json:"af,omitempty"`
	Area     *Area  `json:"area,omitempty"`
	KDF      *KDF   `json:"kdf,omitempty"`
	Priority *int   `json:"priority,omitempty"`
}

type AF struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes"`
	Hash    string `json:"hash"`
}

type Area struct {
	Type       string `json:"type"`
	Offset     U64    `json:"offset"`
	Size       U64    `json:"size"`
	Encryption string `json:"encryption,omitempty"`
	KeySize    int    `json:"key_size,omitempty"`
}

// KDF holds PBKDF2 (hash, iterations) or Argon2 (time, memory in KiB, cpus)
// parameters.
type KDF struct {
	Type       string `json:"type"`
	Hash       string `json:"hash,omitempty"`
	Iterations int64  `json:"iterations,omitempty"`
	Time       int64  `json:"time,omitempty"`
	Memory     int64  `json:"memory,omitempty"`
	CPUs       int64  `json:"cpus,omitempty"`
	Salt       []byte `json:"salt"`

	bad bool // the salt did not decode; the keyslot cannot be opened
}

type Segment struct {
	Type       string          `json:"type"`
	Offset     U64             `json:"offset"`
	Size       string          `json:"size"` // "dynamic" or a decimal byte count
	IVTweak    U64             `json:"iv_tweak"`
	Encryption string          `json:"encryption"`
	SectorSize int             `json:"sector_size"`
	Integrity  json.RawMessage `json:"integrity,omitempty"`
	Flags      []string        `json:"flags,omitempty"`
}

type Digest struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash,omitempty"`
	Iterations int64    `json:"iterations,omitempty"`
	Salt       []byte   `json:"salt,omitempty"`
	Digest     []byte   `json:"digest,omitempty"`

	bad bool // the salt or digest did not decode
}

type Config struct {
	JSONSize     U64           `json:"json_size"`
	KeyslotsSize U64           `json:"keyslots_size"`
	Flags        []string      `json:"flags,omitempty"`
	Requirements *Requirements `json:"requirements,omitempty"`
}

type Requirements struct {
	Mandatory []string `json:"mandatory,omitempty"`
}
