package luks

import (
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/xts"
)

// Volume is the decrypted data segment of a LUKS or plain dm-crypt volume.
// It is safe for concurrent use.
type Volume struct {
	data       blockdev.Source
	c          xts.SectorCipher
	cipher     string
	offset     int64 // segment start in data, bytes
	size       int64 // plaintext bytes
	ivTweak    uint64
	sectorSize int
	header     *Header // nil for plain volumes
}

var _ blockdev.Volume = (*Volume)(nil)

// Open unlocks a LUKS1 or LUKS2 volume. header is the detached header, or nil
// when the header sits at the front of data.
func Open(data blockdev.Source, header blockdev.Source, passphrase []byte) (*Volume, error) {
	if header == nil {
		header = data
	}
	h, err := ReadHeader(header)
	if err != nil {
		return nil, err
	}
	for _, w := range h.Warnings {
		slog.Warn("luks: "+w, "uuid", h.UUID)
	}
	key, seg, err := h.unlock(header, passphrase)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	v, err := newVolume(data, seg, key)
	if err != nil {
		return nil, err
	}
	v.header = h
	return v, nil
}

func newVolume(data blockdev.Source, seg *segment, key []byte) (*Volume, error) {
	if !validSectorSize(seg.sectorSize) {
		return nil, fmt.Errorf("%w: sector size %d", ErrCorrupt, seg.sectorSize)
	}
	c, err := newCipher(seg.cipher, key)
	if err != nil {
		return nil, err
	}
	dsize := uint64(data.Size())
	if seg.offset > dsize {
		return nil, fmt.Errorf("%w: data segment starts at %d but the data source has %d bytes", ErrTruncated, seg.offset, dsize)
	}
	size := seg.size
	if seg.dynamic {
		size = (dsize - seg.offset) / uint64(seg.sectorSize) * uint64(seg.sectorSize)
	} else if size > dsize-seg.offset {
		return nil, fmt.Errorf("%w: data segment [%d,+%d) beyond the %d-byte data source", ErrTruncated, seg.offset, size, dsize)
	}
	if size > 1<<62 {
		return nil, fmt.Errorf("%w: data segment size %d", ErrCorrupt, size)
	}
	return &Volume{
		data: data,
		// Large reads (a 1 MiB FUSE read, decrypt) are split across cores;
		// small ones stay on the caller's goroutine.
		c:          xts.Parallel(c, 0),
		cipher:     seg.cipher,
		offset:     int64(seg.offset),
		size:       int64(size),
		ivTweak:    seg.ivTweak,
		sectorSize: seg.sectorSize,
	}, nil
}

// PlainOptions describe a headerless dm-crypt mapping (cryptsetup open --type plain).
type PlainOptions struct {
	Cipher     string // default "aes-xts-plain64"
	KeySize    int    // bits; default 256 like cryptsetup plain (the first KeySize/8 key bytes are used)
	SectorSize int    // 512 (default) or up to 4096
	Offset     uint64 // start of the data, in 512-byte sectors (cryptsetup --offset)
	Skip       uint64 // IV of the first sector, in 512-byte sectors (cryptsetup --skip)
	Size       uint64 // length in 512-byte sectors; 0: to the end of data (cryptsetup --size)
}

// OpenPlain maps data as plain dm-crypt: key is the volume key itself (no
// hashing), as with cryptsetup's --key-file for plain mode.
func OpenPlain(data blockdev.Source, key []byte, opts PlainOptions) (*Volume, error) {
	if opts.Cipher == "" {
		opts.Cipher = "aes-xts-plain64"
	}
	if opts.KeySize == 0 {
		opts.KeySize = 256
	}
	if opts.SectorSize == 0 {
		opts.SectorSize = 512
	}
	if opts.KeySize%8 != 0 || opts.KeySize <= 0 || opts.KeySize > 8192 {
		return nil, fmt.Errorf("luks: plain: key size %d bits", opts.KeySize)
	}
	if len(key) < opts.KeySize/8 {
		return nil, fmt.Errorf("luks: plain: key has %d bytes, key size %d bits needs %d", len(key), opts.KeySize, opts.KeySize/8)
	}
	if !validSectorSize(opts.SectorSize) {
		return nil, fmt.Errorf("luks: plain: sector size %d (want a power of two in 512..4096)", opts.SectorSize)
	}
	if opts.Offset > 1<<54 || opts.Size > 1<<54 {
		return nil, fmt.Errorf("luks: plain: offset or size out of range")
	}
	seg := &segment{
		offset:     opts.Offset * 512,
		ivTweak:    opts.Skip,
		cipher:     opts.Cipher,
		sectorSize: opts.SectorSize,
		dynamic:    opts.Size == 0,
		size:       opts.Size * 512,
	}
	if !seg.dynamic && seg.size%uint64(opts.SectorSize) != 0 {
		return nil, fmt.Errorf("luks: plain: size %d bytes is not a multiple of the sector size", seg.size)
	}
	v, err := newVolume(data, seg, key[:opts.KeySize/8])
	if err != nil {
		return nil, fmt.Errorf("luks: plain: %w", err)
	}
	return v, nil
}

// Size is the plaintext size in bytes.
func (v *Volume) Size() int64 { return v.size }

// SectorSize is the encryption sector size in bytes.
func (v *Volume) SectorSize() int { return v.sectorSize }

// Cipher is the data segment's cipher spec, e.g. "aes-xts-plain64".
func (v *Volume) Cipher() string { return v.cipher }

// Offset is the data segment's start in the data source, in bytes.
func (v *Volume) Offset() int64 { return v.offset }

// Header is the LUKS header the volume was opened with (nil for plain).
func (v *Volume) Header() *Header { return v.header }

// chunkSize bounds one ciphertext read; it is a multiple of every sector size.
const chunkSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// ReadAt decrypts len(p) bytes at plaintext offset off. Any offset and length
// are allowed; whole runs of sectors are read and decrypted in one go.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	return v.ReadAtRun(p, off, 0)
}

// ReadAtRun is ReadAt for a read within a stretch of the volume ending at
// end (see blockdev.RunReader), which it passes on to the source.
func (v *Volume) ReadAtRun(p []byte, off, end int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("luks: read at negative offset %d", off)
	}
	if off >= v.size {
		if len(p) == 0 && off == v.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if rem := v.size - off; int64(len(p)) > rem {
		p = p[:rem]
		eof = io.EOF
	}
	ss := int64(v.sectorSize)
	if end > 0 {
		// In the source: after the header, rounded up to a whole sector.
		end = v.offset + (end+ss-1)/ss*ss
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		want := p[done:]
		head := pos % ss
		if head == 0 && int64(len(want)) >= ss {
			// Aligned: decrypt straight into p.
			n := int64(len(want)) / ss * ss
			if err := v.readSectors(want[:n], pos, end); err != nil {
				return done, err
			}
			done += int(n)
			continue
		}
		// Unaligned head or tail: go through a pooled buffer.
		start := pos - head
		span := (head + int64(len(want)) + ss - 1) / ss * ss
		span = min(span, chunkSize)
		bp := bufPool.Get().(*[]byte)
		buf := (*bp)[:span]
		err := v.readSectors(buf, start, end)
		if err == nil {
			done += copy(want, buf[head:])
		}
		bufPool.Put(bp)
		if err != nil {
			return done, err
		}
	}
	return done, eof
}

// readSectors fills buf (a whole number of sectors) with the plaintext
// starting at the sector-aligned offset pos; srcEnd is where the read's
// stretch ends in the source (see blockdev.RunReader), or 0.
func (v *Volume) readSectors(buf []byte, pos, srcEnd int64) error {
	if err := readFullRun(v.data, buf, v.offset+pos, srcEnd); err != nil {
		return fmt.Errorf("luks: volume read at %d: %w", pos, err)
	}
	v.c.DecryptSectors(buf, buf, v.sectorSize, v.ivTweak+uint64(pos)/512)
	return nil
}
