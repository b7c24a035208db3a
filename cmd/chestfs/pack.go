package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/pack"
)

func packCommand() *cli.Command {
	return &cli.Command{
		Name:      "pack",
		Usage:     "make a sidecar-compatible LUKS2 + ext4 image from a directory, unprivileged",
		ArgsUsage: "DIR IMAGE",
		Description: "Builds the ext4 with mkfs.ext4 -d DIR (4 KiB blocks) and writes a LUKS2 volume in process:\n" +
			"aes-xts-plain64, 512-bit key, 4096-byte sectors, one keyslot. IMAGE appears only when complete.\n" +
			"The Azure sidecar's recipe: --pbkdf pbkdf2 --iterations 1000 --size 64M.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key-file", Usage: "passphrase `FILE` (its bytes exactly, as cryptsetup --key-file)"},
			&cli.StringFlag{Name: "new-key", Usage: "write a fresh random 32-byte key to `FILE` (mode 0600) and use it"},
			&cli.StringFlag{Name: "size", Usage: "image `SIZE` including the 16 MiB header (default: DIR plus --headroom)"},
			&cli.StringFlag{Name: "headroom", Value: pack.DefaultHeadroom, Usage: "free space added to DIR's size (percent and/or bytes)"},
			&cli.StringFlag{Name: "pbkdf", Value: "argon2id", Usage: "keyslot KDF: argon2id, argon2i or pbkdf2"},
			&cli.IntFlag{Name: "iterations", Usage: "KDF iterations (pbkdf2) or passes (argon2); 0: the default"},
			&cli.IntFlag{Name: "pbkdf-memory", Usage: "argon2 memory in `KiB`; 0: the default"},
			&cli.IntFlag{Name: "pbkdf-parallel", Usage: "argon2 lanes; 0: the default"},
			&cli.StringFlag{Name: "owner", Usage: "own every file as `UID:GID`"},
			&cli.StringFlag{Name: "label", Usage: "LUKS2 label"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing IMAGE"},
			&cli.BoolFlag{Name: "verity", Usage: "append a dm-verity hash tree over the encrypted image and print its root hash (give it to --verity-root)"},
			&cli.StringFlag{Name: "verity-root-file", Usage: "with --verity: also write the root hash to `FILE`"},
			quietFlag(),
		},
		Action: packCmd,
	}
}

func uploadCommand() *cli.Command {
	return &cli.Command{
		Name:      "upload",
		Usage:     "upload an image to Azure Blob Storage as a page blob (the sidecar's format) or a block blob",
		ArgsUsage: "IMAGE BLOB-URL",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "block", Usage: "upload a block blob instead of a page blob"},
			&cli.StringFlag{Name: "auth", Value: "auto", Usage: "credentials: auto, anonymous, sas, azuread, sharedkey"},
			&cli.IntFlag{Name: "parallel", Value: 8, Usage: "requests in flight"},
			&cli.BoolFlag{Name: "allow-http", Usage: "allow a plain http:// URL to a host other than loopback"},
			&cli.BoolFlag{Name: "overwrite", Usage: "replace an existing blob (without it, an existing blob is left alone)"},
			&cli.BoolFlag{Name: "create-container", Usage: "create the container (private) if it does not exist"},
			quietFlag(),
		},
		Action: uploadCmd,
	}
}

// signalContext is cancelled by SIGINT/SIGTERM so that long jobs clean up.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
}

func packCmd(c *cli.Context) error {
	a, err := args(c, "DIR", "IMAGE")
	if err != nil {
		return err
	}
	var key []byte
	switch {
	case c.IsSet("key-file") && c.IsSet("new-key"):
		return errors.New("give --key-file or --new-key, not both")
	case c.IsSet("key-file"):
		if key, err = os.ReadFile(c.String("key-file")); err != nil {
			return fmt.Errorf("--key-file: %w", err)
		}
	case c.IsSet("new-key"):
		if key, err = pack.WriteNewKey(c.String("new-key")); err != nil {
			return err
		}
	default:
		return errors.New("pack needs --key-file or --new-key")
	}
	defer clear(key)
	opts := pack.Options{
		Dir: a[0], Image: a[1], Key: key,
		Headroom:   c.String("headroom"),
		PBKDF:      c.String("pbkdf"),
		Iterations: c.Int("iterations"), MemoryKiB: c.Int("pbkdf-memory"), Parallel: c.Int("pbkdf-parallel"),
		Label:     c.String("label"),
		Overwrite: c.Bool("force"),
		Verity:    c.Bool("verity") || c.IsSet("verity-root-file"),
	}
	prog := progressFor(c, "chestfs pack")
	opts.Progress = prog
	if s := c.String("size"); s != "" {
		if opts.Size, err = pack.ParseSize(s); err != nil {
			return fmt.Errorf("--size: %w", err)
		}
	}
	if o := c.String("owner"); o != "" {
		if opts.Owner, err = pack.ParseOwner(o); err != nil {
			return fmt.Errorf("--owner: %w", err)
		}
	}
	ctx, stop := signalContext(c.Context)
	defer stop()
	start := time.Now()
	res, err := pack.Pack(ctx, opts)
	if err != nil {
		prog.Flush()
		return err
	}
	extra := []string{"uuid " + res.UUID}
	if res.VerityRoot != nil {
		extra = append(extra, fmt.Sprintf("verity root hash %x", res.VerityRoot))
	}
	prog.Summary("packed "+a[1], res.Size, time.Since(start), extra...)
	if res.VerityRoot != nil {
		// On stdout, for scripts, also with -q.
		fmt.Printf("verity root hash: %x\n", res.VerityRoot)
		if path := c.String("verity-root-file"); path != "" {
			return os.WriteFile(path, []byte(hex.EncodeToString(res.VerityRoot)+"\n"), 0o644)
		}
	}
	return nil
}

func uploadCmd(c *cli.Context) error {
	a, err := args(c, "IMAGE", "BLOB-URL")
	if err != nil {
		return err
	}
	ctx, stop := signalContext(c.Context)
	defer stop()
	prog := progressFor(c, "chestfs upload")
	start := time.Now()
	res, err := blobsrc.UploadFile(ctx, a[0], a[1], blobsrc.UploadOptions{
		Block:           c.Bool("block"),
		Auth:            c.String("auth"),
		Parallel:        c.Int("parallel"),
		AllowHTTP:       c.Bool("allow-http"),
		Overwrite:       c.Bool("overwrite"),
		CreateContainer: c.Bool("create-container"),
		Progress:        prog,
	})
	if err != nil {
		prog.Flush()
		return err
	}
	prog.Summary("uploaded "+displaySource(a[1])+" ("+res.Type+")", res.Size, time.Since(start), fmt.Sprintf("content-md5 %x", res.MD5))
	return nil
}
