package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/verity"
)

// verityFlags pin the ciphertext to a dm-verity hash tree (reading commands).
func verityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "verity-root", Category: "Integrity", Usage: "trusted dm-verity root `HEX`: every block of the image is checked before use, an older or altered image is refused"},
		&cli.StringFlag{Name: "verity-hash", Category: "Integrity", Usage: "the hash tree in a separate file or blob (`SOURCE`, veritysetup's HASH_DEVICE); default: appended to the image"},
		&cli.Int64Flag{Name: "verity-hash-offset", Category: "Integrity", Value: -1, Usage: "the tree's superblock at `BYTES` (veritysetup --hash-offset); default: found after the data, or 0 in --verity-hash"},
		&cli.BoolFlag{Name: "require-verity", Category: "Integrity", Usage: "refuse to open an image without a verified hash tree"},
	}
}

// verityConfigFrom parses verityFlags.
func verityConfigFrom(c *cli.Context) (verityConfig, error) {
	v := verityConfig{HashSource: c.String("verity-hash"), Require: c.Bool("require-verity"),
		HashOffset: c.Int64("verity-hash-offset"), HashOffsetGiven: c.Int64("verity-hash-offset") >= 0}
	if s := c.String("verity-root"); s != "" {
		root, err := parseRootHash(s)
		if err != nil {
			return v, fmt.Errorf("--verity-root: %w", err)
		}
		v.RootHash = root
	} else if v.HashSource != "" || c.IsSet("verity-hash-offset") {
		return v, errors.New("--verity-hash and --verity-hash-offset need --verity-root: a tree is only as good as the root hash it is checked against")
	}
	return v, nil
}

// parseRootHash decodes a root hash of one of the lengths a tree can have.
func parseRootHash(s string) ([]byte, error) {
	root, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("not a hex string")
	}
	for _, alg := range verity.Algorithms() {
		if n, _ := verity.DigestSize(alg); n == len(root) {
			return root, nil
		}
	}
	return nil, fmt.Errorf("a root hash of %d bytes fits no hash algorithm (sha256: 32 bytes, 64 hex digits)", len(root))
}

// rootFromKeyBlob takes the key blob's verity_root_hash when no
// --verity-root is given; both given must agree.
func (cfg *openConfig) rootFromKeyBlob() error {
	if cfg.Key.Kind != keyRelease || cfg.Key.Blob.VerityRootHash == "" {
		return nil
	}
	root, err := parseRootHash(cfg.Key.Blob.VerityRootHash)
	if err != nil {
		return fmt.Errorf("key blob: verity_root_hash: %w", err)
	}
	if cfg.Verity.RootHash != nil && !bytes.Equal(cfg.Verity.RootHash, root) {
		return errors.New("--verity-root differs from the key blob's verity_root_hash")
	}
	cfg.Verity.RootHash = root
	return nil
}

// openVerified puts the verified reader over src when cfg has a root hash.
// The tree is appended to src, or in cfg.HashSource (opened like src).
func openVerified(ctx context.Context, src blockdev.Source, s sourceConfig, cfg verityConfig) (blockdev.Source, []io.Closer, error) {
	if cfg.RootHash == nil {
		if cfg.Require {
			return nil, nil, errors.New("--require-verity: no root hash given (--verity-root, or verity_root_hash in the key blob or sidecar configuration)")
		}
		return src, nil, nil
	}
	hash, closers := src, []io.Closer(nil)
	if cfg.HashSource != "" {
		hs := s
		hs.Path = cfg.HashSource
		h, c, err := openRaw(ctx, hs)
		if err != nil {
			return nil, nil, fmt.Errorf("verity hash: %w", err)
		}
		hash, closers = h, c
	}
	off, err := hashOffset(hash, cfg)
	if err == nil {
		var r *verity.Reader
		if r, err = verity.Open(src, hash, off, cfg.RootHash, nil); err == nil {
			slog.Debug("verity", "hash_offset", off, "data_bytes", r.Size())
			return r, closers, nil
		}
	}
	for _, c := range closers {
		c.Close()
	}
	return nil, nil, err
}

// hashOffset is where the tree's superblock is: as given, 0 in a separate
// hash source, or found right after the data it covers.
func hashOffset(hash blockdev.Source, cfg verityConfig) (int64, error) {
	switch {
	case cfg.HashOffsetGiven:
		return cfg.HashOffset, nil
	case cfg.HashSource != "":
		return 0, nil
	}
	return verity.LocateAppended(hash, hash.Size(), len(cfg.RootHash))
}

func verityCommand() *cli.Command {
	return &cli.Command{
		Name:  "verity",
		Usage: "make, check and show dm-verity hash trees over images (veritysetup's format)",
		Description: "The tree covers the image as stored (the ciphertext, LUKS header included), so it reveals nothing\n" +
			"of the plaintext. Give its root hash to the reading commands (--verity-root) to have every block\n" +
			"checked before it is decrypted; pinned in an attested configuration, it also refuses older images.",
		Subcommands: []*cli.Command{verityFormatCommand(), verityVerifyCommand(), verityDumpCommand()},
	}
}

func verityFormatCommand() *cli.Command {
	return &cli.Command{
		Name:      "format",
		Usage:     "add a hash tree to IMAGE (appended to it, or in HASHFILE) and print the root hash",
		ArgsUsage: "IMAGE [HASHFILE]",
		Description: "Appending is what veritysetup format --hash-offset=SIZE --data-blocks=SIZE/4096 IMAGE IMAGE does\n" +
			"(the image is first padded with zeros to whole blocks). A LUKS2 image whose data segment is\n" +
			"\"dynamic\" then shows the tree at the end of its volume to cryptsetup; the filesystem is unchanged.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "hash", Value: "sha256", Usage: "hash algorithm: " + strings.Join(verity.Algorithms(), ", ")},
			&cli.StringFlag{Name: "salt", Usage: "salt `HEX` (default: 32 random bytes; - for none)"},
			&cli.UintFlag{Name: "block-size", Value: 4096, Usage: "data and hash block size"},
			&cli.StringFlag{Name: "root-hash-file", Usage: "also write the root hash (hex) to `FILE`"},
		},
		Action: verityFormatCmd,
	}
}

func verityFormatCmd(c *cli.Context) error {
	a, err := args(c, "IMAGE", "[HASHFILE]")
	if err != nil {
		return err
	}
	img, err := os.OpenFile(a[0], os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer img.Close()
	opts, err := formatOptions(c)
	if err != nil {
		return err
	}
	var hash *os.File
	if hash, err = verityTarget(img, a, &opts); err != nil {
		return err
	}
	if hash != img {
		defer hash.Close()
	}
	p, root, err := verity.Format(img, hash, opts)
	if err == nil {
		err = hash.Sync()
	}
	if err != nil {
		return err
	}
	return printRoot(c, p, root)
}

// formatOptions parses the tree parameters of verity format.
func formatOptions(c *cli.Context) (verity.FormatOptions, error) {
	bs := uint32(c.Uint("block-size"))
	opts := verity.FormatOptions{Algorithm: c.String("hash"), DataBlockSize: bs, HashBlockSize: bs}
	switch s := c.String("salt"); s {
	case "":
	case "-":
		opts.NoSalt = true
	default:
		salt, err := hex.DecodeString(s)
		if err != nil {
			return opts, errors.New("--salt: not a hex string")
		}
		opts.Salt = salt
	}
	return opts, nil
}

// verityTarget opens HASHFILE, or pads IMAGE to whole blocks and sets the
// options to append the tree to it.
func verityTarget(img *os.File, a []string, opts *verity.FormatOptions) (*os.File, error) {
	st, err := img.Stat()
	if err != nil {
		return nil, err
	}
	if len(a) > 1 {
		opts.DataBlocks = uint64((st.Size() + int64(opts.DataBlockSize) - 1) / int64(opts.DataBlockSize))
		if st.Size()%int64(opts.DataBlockSize) != 0 {
			return nil, fmt.Errorf("%s: %d bytes is not a whole number of %d-byte blocks", a[0], st.Size(), opts.DataBlockSize)
		}
		return os.OpenFile(a[1], os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	}
	if _, err := verity.LocateAppended(img, st.Size(), 0); err == nil {
		return nil, fmt.Errorf("%s already ends with a hash tree", a[0])
	}
	off := verity.AppendedHashOffset(st.Size(), opts.DataBlockSize)
	if err := img.Truncate(off); err != nil {
		return nil, err
	}
	opts.HashOffset, opts.DataBlocks = off, uint64(off/int64(opts.DataBlockSize))
	return img, nil
}

// printRoot prints the tree as veritysetup format does, and writes the root
// hash to --root-hash-file.
func printRoot(c *cli.Context, p *verity.Params, root []byte) error {
	info, err := p.Info()
	if err != nil {
		return err
	}
	if err := info.WriteText(os.Stdout, c.Args().First()); err != nil {
		return err
	}
	fmt.Printf("Root hash:      \t%x\n", root)
	if path := c.String("root-hash-file"); path != "" {
		return os.WriteFile(path, []byte(hex.EncodeToString(root)+"\n"), 0o644)
	}
	return nil
}

func verityVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a whole image against its hash tree and ROOT (veritysetup verify)",
		ArgsUsage: "IMAGE [HASHFILE] ROOT",
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "hash-offset", Value: -1, Usage: "the superblock at `BYTES` (default: found after the data, or 0 in HASHFILE)"},
		},
		Action: verityVerifyCmd,
	}
}

func verityVerifyCmd(c *cli.Context) error {
	a, err := args(c, "IMAGE", "[HASHFILE]", "ROOT")
	if err != nil {
		return err
	}
	root, err := parseRootHash(a[len(a)-1])
	if err != nil {
		return usageError{fmt.Errorf("root hash: %w", err)}
	}
	cfg := verityConfig{RootHash: root, HashOffset: c.Int64("hash-offset"), HashOffsetGiven: c.Int64("hash-offset") >= 0}
	data, hash, closeAll, err := openTreeFiles(a[0], a[1:len(a)-1], &cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	off, err := hashOffset(hash, cfg)
	if err != nil {
		return err
	}
	if err := verity.Verify(data, hash, off, root, nil); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "verity: the image matches the root hash")
	return nil
}

// openTreeFiles opens IMAGE and the optional HASHFILE (local files or blobs).
func openTreeFiles(image string, hashFile []string, cfg *verityConfig) (data, hash blockdev.Source, closeAll func(), err error) {
	var closers []io.Closer
	closeAll = func() {
		for _, c := range closers {
			c.Close()
		}
	}
	open1 := func(p string) (blockdev.Source, error) {
		s, c, err := openRaw(context.Background(), sourceConfig{Path: p, Auth: "auto"})
		closers = append(closers, c...)
		return s, err
	}
	if data, err = open1(image); err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	hash = data
	if len(hashFile) == 1 {
		cfg.HashSource = hashFile[0]
		if hash, err = open1(hashFile[0]); err != nil {
			closeAll()
			return nil, nil, nil, err
		}
	}
	return data, hash, closeAll, nil
}

func verityDumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "show a tree's superblock as veritysetup dump does",
		ArgsUsage: "IMAGE|HASHFILE",
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "hash-offset", Value: -1, Usage: "the superblock at `BYTES` (default: found after the data, else 0)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: verityDumpCmd,
	}
}

func verityDumpCmd(c *cli.Context) error {
	a, err := args(c, "IMAGE|HASHFILE")
	if err != nil {
		return err
	}
	src, _, closeAll, err := openTreeFiles(a[0], nil, &verityConfig{})
	if err != nil {
		return err
	}
	defer closeAll()
	off := c.Int64("hash-offset")
	if off < 0 {
		if off, err = verity.LocateAppended(src, src.Size(), 0); err != nil {
			off = 0 // a hash file: the superblock at its start
		}
	}
	info, err := verity.Dump(src, off)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	return info.WriteText(os.Stdout, a[0])
}
