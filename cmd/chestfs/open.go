package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/ext4"
)

// keyFlags select where the LUKS passphrase (or, with --plain, the volume key) comes from.
var keyFlags = []cli.Flag{
	&cli.StringFlag{Name: "key-file", Category: "Key", Usage: "passphrase `FILE`, read whole as cryptsetup --key-file does"},
	&cli.StringFlag{Name: "key-hex", Category: "Key", Usage: "passphrase bytes in `HEX` (the sidecar's raw-key test mode)"},
	&cli.StringFlag{Name: "skr", Category: "Key", Usage: "release the key through attestation; `CONFIG.json` is the sidecar's key blob"},
}

// volumeFlags describe the encryption layer when it is not a LUKS header in front of the data.
var volumeFlags = []cli.Flag{
	&cli.StringFlag{Name: "header", Category: "Volume", Usage: "detached LUKS header `FILE`"},
	&cli.BoolFlag{Name: "plain", Category: "Volume", Usage: "no header: plain dm-crypt; the key bytes are the volume key"},
	&cli.StringFlag{Name: "cipher", Category: "Volume", Value: "aes-xts-plain64", Usage: "plain dm-crypt cipher"},
	&cli.IntFlag{Name: "key-size", Category: "Volume", Value: 256, Usage: "plain dm-crypt key size in `BITS` (cryptsetup's default 256 uses the first 32 key bytes)"},
	&cli.IntFlag{Name: "sector-size", Category: "Volume", Value: 512, Usage: "plain dm-crypt sector size (512|1024|2048|4096)"},
	&cli.Uint64Flag{Name: "offset", Category: "Volume", Usage: "plain dm-crypt data offset in 512-byte `SECTORS`"},
}

func openFlags() []cli.Flag {
	var f []cli.Flag
	f = append(f, keyFlags...)
	f = append(f, skrFlags()...)
	f = append(f, volumeFlags...)
	f = append(f, sourceFlags()...)
	return f
}

// releaseKey fetches a key through attestation-gated secure key release; skr.go sets it.
var releaseKey = func(ctx context.Context, c *cli.Context, config string) ([]byte, error) {
	return nil, errors.New("--skr: key release is not built into this binary")
}

// readKey returns the key bytes the flags name, or nil when none is given.
func readKey(ctx context.Context, c *cli.Context) ([]byte, error) {
	n := 0
	for _, name := range []string{"key-file", "key-hex", "skr"} {
		if c.IsSet(name) {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("give at most one of --key-file, --key-hex, --skr")
	}
	switch {
	case c.IsSet("key-file"):
		k, err := os.ReadFile(c.String("key-file"))
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		return k, nil
	case c.IsSet("key-hex"):
		k, err := hex.DecodeString(strings.TrimSpace(c.String("key-hex")))
		if err != nil {
			return nil, errors.New("--key-hex: not a hex string")
		}
		return k, nil
	case c.IsSet("skr"):
		return releaseKey(ctx, c, c.String("skr"))
	}
	return nil, nil
}

// opened is a source with its volume; close releases both.
type opened struct {
	src     blockdev.Source
	vol     blockdev.Volume
	closers []io.Closer
}

func (o *opened) Close() error {
	var first error
	for i := len(o.closers) - 1; i >= 0; i-- {
		if err := o.closers[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// openVolume opens SOURCE and, when it is encrypted, unlocks it with the key
// the flags name. A source with no LUKS header and no key is read as an
// unencrypted image.
func openVolume(ctx context.Context, c *cli.Context, source string) (*opened, error) {
	key, err := readKey(ctx, c)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return openVolumeKey(ctx, c, source, c.String("auth"), key)
}

// openVolumeKey is openVolume with the key and blob credential mode given.
func openVolumeKey(ctx context.Context, c *cli.Context, source, auth string, key []byte) (*opened, error) {
	src, closers, err := openSourceAuth(ctx, c, source, auth)
	if err != nil {
		return nil, err
	}
	o := &opened{src: src, closers: closers}
	hdrSrc, err := o.headerSource(c)
	if err == nil {
		err = o.unlock(c, hdrSrc, key)
	}
	if err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

// headerSource opens the detached header (--header), or returns nil when the
// header is in front of the data.
func (o *opened) headerSource(c *cli.Context) (blockdev.Source, error) {
	path := c.String("header")
	if path == "" {
		return nil, nil
	}
	f, err := blockdev.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	o.closers = append(o.closers, f)
	return f, nil
}

// unlock sets o.vol: plain dm-crypt (--plain), a LUKS volume (header in hdrSrc
// or in front of the data), or the source itself when it has no LUKS header
// and no key is given.
func (o *opened) unlock(c *cli.Context, hdrSrc blockdev.Source, key []byte) error {
	if c.Bool("plain") {
		if key == nil {
			return errors.New("--plain needs a key (--key-file, --key-hex or --skr)")
		}
		vol, err := luks.OpenPlain(o.src, key, luks.PlainOptions{
			Cipher:     c.String("cipher"),
			KeySize:    c.Int("key-size"),
			SectorSize: c.Int("sector-size"),
			Offset:     c.Uint64("offset"),
		})
		if err != nil {
			return err
		}
		o.vol = vol
		return nil
	}
	probe := o.src
	if hdrSrc != nil {
		probe = hdrSrc
	}
	if !luks.IsLUKS(probe) {
		if hdrSrc != nil {
			return fmt.Errorf("%s: not a LUKS header", c.String("header"))
		}
		if key != nil {
			return errors.New("a key was given but the source has no LUKS header (use --plain for plain dm-crypt)")
		}
		o.vol = o.src
		return nil
	}
	if key == nil {
		// A damaged header is the more useful thing to say than a missing key.
		if _, err := luks.ReadHeader(probe); err != nil {
			return err
		}
		return errors.New("the source is a LUKS volume: give a key (--key-file, --key-hex or --skr)")
	}
	vol, err := luks.Open(o.src, hdrSrc, key)
	if err != nil {
		return err
	}
	o.vol = vol
	return nil
}

// openExt4 reads the filesystem on the volume.
func (o *opened) openExt4() (*ext4.FS, error) {
	fsys, err := ext4.Open(o.vol, o.vol.Size())
	if err != nil {
		if errors.Is(err, ext4.ErrCorrupt) || errors.Is(err, ext4.ErrUnsupported) {
			return nil, err
		}
		return nil, fmt.Errorf("no ext4 filesystem on the volume (wrong key for plain dm-crypt?): %w", err)
	}
	return fsys, nil
}

// openFS is openVolume followed by openExt4, for the commands that read files.
func openFS(ctx context.Context, c *cli.Context, source string) (*opened, *ext4.FS, error) {
	o, err := openVolume(ctx, c, source)
	if err != nil {
		return nil, nil, err
	}
	fsys, err := o.openExt4()
	if err != nil {
		o.Close()
		return nil, nil, err
	}
	return o, fsys, nil
}

// args checks the positional argument count.
func args(c *cli.Context, names ...string) ([]string, error) {
	a := c.Args().Slice()
	min := 0
	for _, n := range names {
		if !strings.HasPrefix(n, "[") {
			min++
		}
	}
	if len(a) < min || len(a) > len(names) {
		return nil, fmt.Errorf("usage: chestfs %s [options] %s", c.Command.Name, strings.Join(names, " "))
	}
	return a, nil
}
