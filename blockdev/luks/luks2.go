package luks

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/chestfs/chestfs/blockdev"
)

// luks2HdrSizes are the header sizes (binary header + JSON area) LUKS2 allows;
// the secondary header sits at one of them.
var luks2HdrSizes = []uint64{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20}

func validHdrSize(n uint64) bool {
	for _, s := range luks2HdrSizes {
		if s == n {
			return true
		}
	}
	return false
}

// luks2Copy is one header copy read from disk and checked.
type luks2Copy struct {
	bin  BinaryHeader
	json []byte // the JSON area up to its NUL terminator
	md   *Metadata
}

// copyState is what reading one header copy found, in cryptsetup's terms
// (LUKS2_disk_hdr_read): a copy whose binary header or checksum is bad
// failed; one with a good checksum but invalid JSON is obsolete, and its
// hdr_size still locates the secondary copy.
type copyState int

const (
	copyOK copyState = iota
	copyObsolete
	copyFailed
)

// maxHdrSize is LUKS2_HDR_OFFSET_MAX, the largest hdr_size cryptsetup
// reads before it checks the JSON (which then wants one of luks2HdrSizes).
const maxHdrSize = 4 << 20

// readLUKS2Copy reads and verifies the header copy at off. want is magic1 or
// magic2. The binary header is returned whenever the state is not
// copyFailed.
func readLUKS2Copy(src blockdev.Source, off uint64, want []byte) (*luks2Copy, copyState, error) {
	if off > uint64(src.Size()) || uint64(src.Size())-off < BinaryHeaderSize {
		return nil, copyFailed, fmt.Errorf("%w: header at %d beyond end of %d-byte source", ErrTruncated, off, src.Size())
	}
	bin := make([]byte, BinaryHeaderSize)
	if err := readFull(src, bin, int64(off)); err != nil {
		return nil, copyFailed, err
	}
	if !bytes.Equal(bin[:luks2MagicLen], want) {
		return nil, copyFailed, fmt.Errorf("%w: no LUKS2 magic at %d", ErrCorrupt, off)
	}
	h := decodeLUKS2Binary(bin)
	if err := binarySane(&h, off, !bytes.Equal(want, magic1)); err != nil {
		return nil, copyFailed, err
	}
	if uint64(src.Size())-off < h.HdrSize {
		return nil, copyFailed, fmt.Errorf("%w: header at %d needs %d bytes, source has %d", ErrTruncated, off, h.HdrSize, src.Size())
	}
	newHash, err := hashByName(h.ChecksumAlg)
	if err != nil {
		return nil, copyFailed, fmt.Errorf("header at %d: checksum: %w", off, err)
	}
	jsonArea := make([]byte, h.HdrSize-BinaryHeaderSize)
	if err := readFull(src, jsonArea, int64(off)+BinaryHeaderSize); err != nil {
		return nil, copyFailed, err
	}
	sum := luks2Checksum(newHash, bin, jsonArea)
	if subtle.ConstantTimeCompare(sum, h.Checksum[:len(sum)]) != 1 {
		return nil, copyFailed, fmt.Errorf("%w: header at %d: %s checksum mismatch", ErrCorrupt, off, h.ChecksumAlg)
	}
	c := &luks2Copy{bin: h}
	js, err := splitJSONArea(jsonArea)
	var top jobj
	if err == nil {
		top, err = validateMetadata(js, h.HdrSize)
	}
	if err == nil {
		c.md, err = parseMetadata(top, h.HdrSize)
	}
	if err != nil {
		return c, copyObsolete, fmt.Errorf("%w: header at %d: %v", ErrCorrupt, off, err)
	}
	c.json = js
	return c, copyOK, nil
}

// binarySane is cryptsetup's hdr_disk_sanity_check_pre: version 2, the
// copy records its own offset, a size cryptsetup will read, and a
// secondary copy sits right after a primary of its own size.
func binarySane(h *BinaryHeader, off uint64, secondary bool) error {
	switch {
	case h.Version != 2:
		return fmt.Errorf("%w: header at %d has version %d", ErrCorrupt, off, h.Version)
	case h.HdrOffset != off:
		return fmt.Errorf("%w: header at %d records hdr_offset %d", ErrCorrupt, off, h.HdrOffset)
	case h.HdrSize < luks2HdrSizes[0] || h.HdrSize > maxHdrSize:
		return fmt.Errorf("%w: header at %d has invalid hdr_size %d", ErrCorrupt, off, h.HdrSize)
	case secondary && h.HdrSize != off:
		return fmt.Errorf("%w: secondary header at %d has hdr_size %d", ErrCorrupt, off, h.HdrSize)
	}
	return nil
}

// readFull reads len(p) bytes at off, reporting a short source as ErrTruncated.
func readFull(src io.ReaderAt, p []byte, off int64) error {
	return readFullRun(src, p, off, 0)
}

// readFullRun is readFull for a read within a stretch ending at end (see
// blockdev.RunReader).
func readFullRun(src io.ReaderAt, p []byte, off, end int64) error {
	n, err := blockdev.ReadAtRun(src, p, off, end)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("%w: wanted %d bytes at %d, got %d", ErrTruncated, len(p), off, n)
	}
	return fmt.Errorf("luks: read %d bytes at %d: %w", len(p), off, err)
}

// readLUKS2 picks the header copy as cryptsetup's LUKS2_disk_hdr_read
// does: the primary at 0; the secondary at the primary's hdr_size, or, when
// the primary's binary header is unusable, at the first of the known
// offsets that holds a secondary binary header with a good checksum; of two
// valid copies the one with the higher seqid. The chosen copy's header
// areas and keyslots area must fit the source.
func readLUKS2(src blockdev.Source) (*Header, error) {
	primary, pstate, perr := readLUKS2Copy(src, 0, magic1)
	offsets := luks2HdrSizes
	if pstate != copyFailed {
		offsets = []uint64{primary.bin.HdrSize}
	}
	var secondary *luks2Copy
	sstate, serr := copyFailed, error(fmt.Errorf("%w: no secondary header found", ErrCorrupt))
	for _, off := range offsets {
		secondary, sstate, serr = readLUKS2Copy(src, off, magic2)
		if sstate != copyFailed {
			break
		}
	}
	h := &Header{Version: 2}
	var use *luks2Copy
	switch {
	case pstate != copyOK && sstate != copyOK:
		return nil, fmt.Errorf("luks2: no valid header copy: primary: %w; secondary: %v", perr, serr)
	case pstate != copyOK:
		use, h.FromSecondary = secondary, true
		h.Warnings = append(h.Warnings, "primary header damaged ("+perr.Error()+"); using the secondary copy")
	case sstate != copyOK:
		use = primary
		h.Warnings = append(h.Warnings, "secondary header damaged or missing ("+serr.Error()+")")
	case secondary.bin.SeqID > primary.bin.SeqID:
		use, h.FromSecondary = secondary, true
		h.Warnings = append(h.Warnings, "secondary header is newer than the primary; using the secondary copy")
	default:
		use = primary
		if secondary.bin.SeqID != primary.bin.SeqID {
			h.Warnings = append(h.Warnings, "secondary header is older than the primary")
		}
	}
	// LUKS2_hdr_and_areas_size: both copies and the keyslots area.
	need := 2*uint64(use.md.Config.JSONSize+BinaryHeaderSize) + uint64(use.md.Config.KeyslotsSize)
	if uint64(src.Size()) < need {
		return nil, fmt.Errorf("%w: luks2: device too small: the header and keyslots areas need %d bytes, the header source has %d",
			ErrTruncated, need, src.Size())
	}
	h.Binary = &use.bin
	h.UUID, h.Label, h.Subsystem = use.bin.UUID, use.bin.Label, use.bin.Subsystem
	h.Metadata = use.md
	h.rawJSON = use.json
	return h, nil
}

// parseMetadata builds the Metadata of a validated JSON tree and checks
// that it describes a JSON area of the copy's size (cryptsetup's
// hdr_validate_json_size); its errors describe corruption (the caller wraps
// them in ErrCorrupt). It does not refuse unsupported features (ReadHeader
// must still show such headers); Unlock does.
func parseMetadata(top jobj, hdrSize uint64) (*Metadata, error) {
	md := metadataFrom(top)
	if uint64(md.Config.JSONSize) != hdrSize-BinaryHeaderSize {
		return nil, fmt.Errorf("config.json_size %d does not match hdr_size %d", md.Config.JSONSize, hdrSize)
	}
	return md, nil
}

// canonicalID reports whether id is a decimal number as cryptsetup
// prints it ("%u"), the only form it looks keyslots and segments up by.
func canonicalID(id string) bool {
	n, err := strconv.ParseUint(id, 10, 31)
	return err == nil && strconv.FormatUint(n, 10) == id
}

// sortedIDs returns a map's decimal keys in numeric order.
func sortedIDs[T any](m map[string]T) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, _ := strconv.Atoi(ids[i])
		b, _ := strconv.Atoi(ids[j])
		return a < b
	})
	return ids
}
