package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/ext4"
)

func decryptCommand() *cli.Command {
	return &cli.Command{
		Name:      "decrypt",
		Usage:     "write the plaintext volume to OUTFILE (like cryptsetup open + dd): a new file (sparse), a device (in place) or - (stdout)",
		ArgsUsage: "SOURCE OUTFILE",
		Flags: append(openFlags(),
			&cli.BoolFlag{Name: "force", Usage: "replace an existing regular OUTFILE"}, quietFlag()),
		Action: decryptCmd,
	}
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show the LUKS header (no key needed) and, with a key, the filesystem's figures",
		ArgsUsage: "SOURCE",
		Flags:     append(openFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action:    inspectCmd,
	}
}

func decryptCmd(c *cli.Context) error {
	a, err := args(c, "SOURCE", "OUTFILE")
	if err != nil {
		return err
	}
	cfg, err := openConfigFrom(c, a[0])
	if err != nil {
		return err
	}
	o, err := open(c.Context, cfg, wantVolume)
	if err != nil {
		return err
	}
	defer o.Close()
	if !o.encrypted() {
		return errors.New("the source is not encrypted: nothing to decrypt")
	}
	prog := progressFor(c, "chestfs decrypt")
	start := time.Now()
	task := prog.Start("decrypting", o.vol.Size())
	if err := writeVolume(c.Context, countingVolume{task.ReaderAt(o.vol), o.vol.Size()}, a[1], c.Bool("force")); err != nil {
		task.Stop()
		prog.Flush()
		return fmt.Errorf("decrypt: %w", err)
	}
	task.Done()
	prog.Summary("decrypted to "+a[1], o.vol.Size(), time.Since(start))
	return nil
}

// countingVolume is a volume read through a progress counter.
type countingVolume struct {
	io.ReaderAt
	size int64
}

func (v countingVolume) Size() int64 { return v.size }

// writeVolume writes vol to out as the kind of thing out is: "-" streams
// to stdout; an existing block or character device is written in place,
// every byte (it may hold old data), never replaced; an existing regular
// file is replaced only with force; a new file is written sparse under a
// temporary name and renamed into place once complete.
func writeVolume(ctx context.Context, vol blockdev.Volume, out string, force bool) error {
	if out == "-" {
		return copyStream(ctx, os.Stdout, vol)
	}
	st, err := os.Stat(out)
	switch {
	case err == nil && st.Mode()&os.ModeDevice != 0:
		f, err := os.OpenFile(out, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if err := copyStream(ctx, f, vol); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case err == nil && st.IsDir():
		return fmt.Errorf("%s is a directory", out)
	case err == nil && !force:
		return usageError{fmt.Errorf("%s exists: give --force to replace it", out)}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := copySparse(ctx, tmp, vol); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// copyStream writes all of vol to w in order.
func copyStream(ctx context.Context, w io.Writer, vol blockdev.Volume) error {
	buf := make([]byte, 4<<20)
	size := vol.Size()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), size-off)
		if _, err := vol.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// copySparse copies a volume, leaving holes where whole 4 KiB blocks are zero.
func copySparse(ctx context.Context, w *os.File, vol blockdev.Volume) error {
	buf := make([]byte, 4<<20)
	zero := make([]byte, 4096)
	size := vol.Size()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
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
	cfg, err := openConfigFrom(c, a[0])
	if err != nil {
		return err
	}
	o, err := open(c.Context, cfg, wantInspect)
	if err != nil {
		return err
	}
	defer o.Close()
	out := map[string]any{}
	hdr := o.header
	if hdr != nil {
		out["luks"] = hdr
	}
	if o.fs != nil {
		out["ext4"] = ext4Summary{Info: o.fs.Info(), Statfs: o.fs.Statfs()}
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
