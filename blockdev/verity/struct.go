package verity

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strings"
	"syscall"
)

// SuperblockSize is the size of the on-disk superblock.
const SuperblockSize = 512

// Signature opens every superblock.
var Signature = [8]byte{'v', 'e', 'r', 'i', 't', 'y', 0, 0}

// Superblock is the on-disk superblock, little-endian, field for field as
// cryptsetup's struct verity_sb (lib/verity/verity.c) declares it.
type Superblock struct {
	Signature     [8]byte  // "verity\0\0"
	Version       uint32   // superblock version, 1
	HashType      uint32   // 0: original Chrome OS, 1: normal
	UUID          [16]byte // of the hash device
	Algorithm     [32]byte // hash algorithm name, NUL-padded
	DataBlockSize uint32   // bytes
	HashBlockSize uint32   // bytes
	DataBlocks    uint64   // number of data blocks
	SaltSize      uint16   // bytes of Salt in use
	_             [6]byte
	Salt          [256]byte
	_             [168]byte
}

var (
	// ErrFormat: a superblock or a set of parameters that is not a valid
	// dm-verity tree, or a tree that does not fit its device.
	ErrFormat = errors.New("verity: bad format")
	// ErrUnsupported: a valid tree that this package cannot check (hash
	// algorithm, superblock version).
	ErrUnsupported = errors.New("verity: unsupported")
	// ErrMismatch: a data or hash block does not match the tree, or the tree
	// does not match the root hash. Mismatches found while reading also match
	// syscall.EIO with errors.Is.
	ErrMismatch = errors.New("verity: hash mismatch")
)

// Params are one tree's parameters: what its superblock records and where
// the tree lies on its hash device.
type Params struct {
	HashType      uint32 // 1 (normal) or 0 (original Chrome OS)
	Algorithm     string // sha256, sha512, sha1, sha224, sha384
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	Salt          []byte
	UUID          [16]byte
	// HashOffset is the byte offset on the hash device of the superblock, or
	// of the tree itself when NoSuperblock is set.
	HashOffset   int64
	NoSuperblock bool
}

type algorithm struct {
	size int
	new  func() hash.Hash
}

var algorithms = map[string]algorithm{
	"sha1":   {sha1.Size, sha1.New},
	"sha224": {sha256.Size224, sha256.New224},
	"sha256": {sha256.Size, sha256.New},
	"sha384": {sha512.Size384, sha512.New384},
	"sha512": {sha512.Size, sha512.New},
}

// kindError is an error of one of the kinds above whose message does not
// repeat the kind's own text.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// prefix adds the package prefix to an error from an unprefixed helper.
func prefix(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("verity: %w", err)
}

// Algorithms lists the supported hash algorithms.
func Algorithms() []string {
	names := make([]string, 0, len(algorithms))
	for n := range algorithms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DigestSize returns the digest (and so root hash) size of a hash algorithm.
func DigestSize(alg string) (int, error) {
	n, err := digestSize(alg)
	return n, prefix(err)
}

func digestSize(alg string) (int, error) {
	a, ok := algorithms[alg]
	if !ok {
		return 0, errorf(ErrUnsupported, "unsupported hash algorithm %q (supported: %s)", alg, strings.Join(Algorithms(), ", "))
	}
	return a.size, nil
}

// checkBlockSize applies veritysetup's rule: a power of two from 512 bytes to 512 KiB.
func checkBlockSize(what string, n uint32) error {
	if n < 512 || n > 512*1024 || n&(n-1) != 0 {
		return errorf(ErrFormat, "bad %s block size %d (must be a power of two from 512 to 524288)", what, n)
	}
	return nil
}

// Check reports the first reason p cannot describe a tree.
func (p *Params) Check() error { return prefix(p.check()) }

func (p *Params) check() error {
	if p.HashType > 1 {
		return errorf(ErrUnsupported, "unsupported hash type %d (0 or 1)", p.HashType)
	}
	if _, err := digestSize(p.Algorithm); err != nil {
		return err
	}
	if err := checkBlockSize("data", p.DataBlockSize); err != nil {
		return err
	}
	if err := checkBlockSize("hash", p.HashBlockSize); err != nil {
		return err
	}
	if len(p.Salt) > 256 {
		return errorf(ErrFormat, "salt of %d bytes (at most 256)", len(p.Salt))
	}
	if p.DataBlocks == 0 {
		return errorf(ErrFormat, "no data blocks")
	}
	if p.DataBlocks > uint64(maxInt64)/uint64(p.DataBlockSize) {
		return errorf(ErrFormat, "%d data blocks of %d bytes overflow", p.DataBlocks, p.DataBlockSize)
	}
	if p.HashOffset < 0 {
		return errorf(ErrFormat, "negative hash offset %d", p.HashOffset)
	}
	if !p.NoSuperblock && p.HashOffset%512 != 0 {
		return errorf(ErrFormat, "hash offset %d is not a multiple of 512", p.HashOffset)
	}
	if p.NoSuperblock && p.HashOffset%int64(p.HashBlockSize) != 0 {
		return errorf(ErrFormat, "hash offset %d of a tree without superblock is not a multiple of the hash block size %d", p.HashOffset, p.HashBlockSize)
	}
	return nil
}

const maxInt64 = 1<<63 - 1

// DataSize is the number of bytes the tree covers.
func (p *Params) DataSize() int64 { return int64(p.DataBlocks) * int64(p.DataBlockSize) }

// Encode returns the 512-byte superblock of p.
func (p *Params) Encode() ([]byte, error) {
	b, err := p.encode()
	return b, prefix(err)
}

func (p *Params) encode() ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	sb := Superblock{
		Signature:     Signature,
		Version:       1,
		HashType:      p.HashType,
		UUID:          p.UUID,
		DataBlockSize: p.DataBlockSize,
		HashBlockSize: p.HashBlockSize,
		DataBlocks:    p.DataBlocks,
		SaltSize:      uint16(len(p.Salt)),
	}
	copy(sb.Algorithm[:], p.Algorithm)
	copy(sb.Salt[:], p.Salt)
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &sb); err != nil {
		return nil, fmt.Errorf("encode superblock: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeSuperblock parses and checks a superblock found at hashOffset. It
// refuses what veritysetup refuses, and trees this package cannot check.
func DecodeSuperblock(b []byte, hashOffset int64) (*Params, error) {
	p, err := decodeSuperblock(b, hashOffset)
	return p, prefix(err)
}

func decodeSuperblock(b []byte, hashOffset int64) (*Params, error) {
	if len(b) < SuperblockSize {
		return nil, errorf(ErrFormat, "superblock of %d bytes (needs %d)", len(b), SuperblockSize)
	}
	var sb Superblock
	if err := binary.Read(bytes.NewReader(b[:SuperblockSize]), binary.LittleEndian, &sb); err != nil {
		return nil, fmt.Errorf("decode superblock: %w", err)
	}
	if sb.Signature != Signature {
		return nil, errorf(ErrFormat, "no verity superblock at offset %d (signature %q)", hashOffset, sb.Signature[:])
	}
	if sb.Version != 1 {
		return nil, errorf(ErrUnsupported, "unsupported superblock version %d", sb.Version)
	}
	if sb.SaltSize > uint16(len(sb.Salt)) {
		return nil, errorf(ErrFormat, "bad salt size %d in superblock (at most %d)", sb.SaltSize, len(sb.Salt))
	}
	alg, _, _ := bytes.Cut(sb.Algorithm[:], []byte{0})
	p := &Params{
		HashType:      sb.HashType,
		Algorithm:     string(alg),
		DataBlockSize: sb.DataBlockSize,
		HashBlockSize: sb.HashBlockSize,
		DataBlocks:    sb.DataBlocks,
		Salt:          append([]byte{}, sb.Salt[:sb.SaltSize]...),
		UUID:          sb.UUID,
		HashOffset:    hashOffset,
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// UUIDString formats a UUID as veritysetup prints it.
func UUIDString(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// ParseUUID parses the 8-4-4-4-12 hex form.
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("verity: UUID %q is not of the form 8-4-4-4-12 hex digits", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return u, fmt.Errorf("verity: UUID %q: %w", s, err)
	}
	copy(u[:], b)
	return u, nil
}

// MismatchError names the block that does not match the tree.
type MismatchError struct {
	// Level is -1 for a data block, else the tree level of a hash block
	// (0 hashes the data blocks).
	Level int
	Block uint64 // data block number, or hash block index within Level
	// Root is set when the top of the tree does not match the root hash.
	Root bool
}

func (e *MismatchError) Error() string {
	switch {
	case e.Root:
		return "the tree does not match the root hash (wrong root hash, or the tree, its superblock or the image was changed)"
	case e.Level < 0:
		return fmt.Sprintf("data block %d does not match the hash tree", e.Block)
	default:
		return fmt.Sprintf("hash block %d of level %d does not match the hash tree", e.Block, e.Level)
	}
}

// Unwrap makes errors.Is(err, ErrMismatch) and errors.Is(err, syscall.EIO) true.
func (e *MismatchError) Unwrap() []error { return []error{ErrMismatch, syscall.EIO} }
