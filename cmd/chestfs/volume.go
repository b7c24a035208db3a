package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/ext4"
)

func init() {
	commands = append(commands,
		&cli.Command{
			Name:      "decrypt",
			Usage:     "write the plaintext volume to OUTFILE (like cryptsetup open + dd; sparse)",
			ArgsUsage: "SOURCE OUTFILE",
			Flags:     openFlags(),
			Action:    decryptCmd,
		},
		&cli.Command{
			Name:      "inspect",
			Usage:     "show the LUKS header (no key needed) and, with a key, the filesystem's figures",
			ArgsUsage: "SOURCE",
			Flags:     append(openFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}),
			Action:    inspectCmd,
		},
	)
}

func decryptCmd(c *cli.Context) error {
	a, err := args(c, "SOURCE", "OUTFILE")
	if err != nil {
		return err
	}
	o, err := openVolume(c.Context, c, a[0])
	if err != nil {
		return err
	}
	defer o.Close()
	if o.vol == o.src {
		return errors.New("the source is not encrypted: nothing to decrypt")
	}
	tmp, err := os.CreateTemp(filepath.Dir(a[1]), "."+filepath.Base(a[1])+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := copySparse(c, tmp, o.vol); err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), a[1])
}

// copySparse copies a volume, leaving holes where whole 4 KiB blocks are zero.
func copySparse(c *cli.Context, w *os.File, vol blockdev.Volume) error {
	buf := make([]byte, 4<<20)
	zero := make([]byte, 4096)
	size := vol.Size()
	for off := int64(0); off < size; {
		if err := c.Context.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), size-off)
		if _, err := vol.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF)) {
			return err
		}
		for i := int64(0); i < n; i += 4096 {
			end := min(i+4096, n)
			if bytes.Equal(buf[i:end], zero[:end-i]) {
				continue
			}
			if _, err := w.WriteAt(buf[i:end], off+i); err != nil {
				return err
			}
		}
		off += n
	}
	return w.Truncate(size)
}

func inspectCmd(c *cli.Context) error {
	a, err := args(c, "SOURCE")
	if err != nil {
		return err
	}
	out := map[string]any{}
	src, closers, err := openSource(c.Context, c, a[0])
	if err != nil {
		return err
	}
	o := &opened{src: src, closers: closers}
	defer o.Close()
	hdrSrc, err := o.headerSource(c)
	if err != nil {
		return err
	}
	probe := src
	if hdrSrc != nil {
		probe = hdrSrc
	}
	var hdr *luks.Header
	if luks.IsLUKS(probe) {
		if hdr, err = luks.ReadHeader(probe); err != nil {
			return err
		}
		out["luks"] = hdr
	}
	withKey := c.IsSet("key-file") || c.IsSet("key-hex") || c.IsSet("skr")
	if withKey || hdr == nil {
		key, err := readKey(c.Context, c)
		if err != nil {
			return err
		}
		err = o.unlock(c, hdrSrc, key)
		clear(key)
		if err != nil {
			return err
		}
		fsys, err := o.openExt4()
		if err != nil {
			return err
		}
		out["ext4"] = ext4Summary{Info: fsys.Info(), Statfs: fsys.Statfs()}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if hdr != nil {
		if err := hdr.WriteText(os.Stdout); err != nil {
			return err
		}
	}
	if e, ok := out["ext4"].(ext4Summary); ok {
		s, in := e.Statfs, e.Info
		fmt.Printf("ext4 filesystem:\n")
		fmt.Printf("\tUUID:         %s\n", in.UUID)
		fmt.Printf("\tlabel:        %s\n", in.Label)
		fmt.Printf("\tfeatures:     %s\n", strings.Join(in.Features, " "))
		fmt.Printf("\tinode size:   %d\n", in.InodeSize)
		if in.JournalReplayed {
			fmt.Printf("\tjournal:      needed recovery; replayed in memory\n")
		}
		fmt.Printf("\tblock size:   %d\n", s.BlockSize)
		fmt.Printf("\tblocks:       %d (%d free, %d available)\n", s.Blocks, s.BFree, s.BAvail)
		fmt.Printf("\tinodes:       %d (%d free)\n", s.Files, s.FFree)
		fmt.Printf("\tname length:  %d\n", s.NameLen)
	}
	return nil
}

// ext4Summary is what inspect shows of the filesystem.
type ext4Summary struct {
	Info   ext4.Info
	Statfs ext4.Statfs
}
