package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/cache"
	"github.com/chestfs/chestfs/blockdev/diskcache"
	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/blockdev/verity"
	"github.com/chestfs/chestfs/ext4"
)

// openWant says how far open goes.
type openWant int

const (
	// wantVolume stops at the plaintext volume (decrypt).
	wantVolume openWant = iota
	// wantFS goes on to the ext4 filesystem (ls, cat, extract, mount).
	wantFS
	// wantInspect reads the LUKS header, and the filesystem too when a key is
	// given or the source is not encrypted (inspect).
	wantInspect
)

// opened is an image opened as far as asked: the source, its LUKS header,
// the plaintext volume and the filesystem. Close releases all of them.
type opened struct {
	src     blockdev.Source // the ciphertext
	header  *luks.Header    // nil when the source has no LUKS header
	vol     blockdev.Volume // nil when open stopped at the header
	fs      *ext4.FS        // nil unless the filesystem was asked for
	closers []io.Closer
	// The layers metrics report on, where there are such layers.
	blob   *blobsrc.Blob
	disk   *diskcache.Source
	cache  *cache.Cache
	verity *verity.Reader
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

// encrypted reports whether the volume is a decryption of the source.
func (o *opened) encrypted() bool { return o.vol != nil && o.vol != blockdev.Volume(o.src) }

// open is the one way from a configuration to an opened image, for every
// command: source (file or blob, cached), LUKS header, key, volume, ext4.
// A source with no LUKS header and no key is read as an unencrypted image.
func open(ctx context.Context, cfg openConfig, want openWant) (*opened, error) {
	o := &opened{}
	if err := o.openSource(ctx, cfg.Source, cfg.Verity); err != nil {
		return nil, err
	}
	if err := o.openRest(ctx, cfg, want); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

func (o *opened) openRest(ctx context.Context, cfg openConfig, want openWant) error {
	hdrSrc, err := o.headerSource(cfg.Volume.Header)
	if err != nil {
		return err
	}
	if !cfg.Volume.Plain {
		if err := o.readHeader(hdrSrc, cfg.Volume.Header); err != nil {
			return err
		}
	}
	if want == wantInspect && o.header != nil && cfg.Key.Kind == keyNone {
		return nil
	}
	key, err := readKey(ctx, cfg.Key, cfg.Release)
	if err != nil {
		return err
	}
	err = o.unlock(cfg.Volume, hdrSrc, key.Bytes())
	key.Destroy()
	if err != nil || want == wantVolume {
		return err
	}
	o.fs, err = openExt4(o.vol, o.encrypted())
	if errors.Is(err, ext4.ErrNotExt4) && o.header == nil && !cfg.Volume.Plain {
		return fmt.Errorf("%s holds neither a LUKS header nor an ext4 filesystem (%w; for plain dm-crypt give --plain and a key)", displaySource(cfg.Source.Path), err)
	}
	return err
}

// headerSource opens the detached header, or returns nil when the header is
// in front of the data.
func (o *opened) headerSource(path string) (blockdev.Source, error) {
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

// readHeader sets o.header when the header source (or the source itself)
// holds a LUKS header.
func (o *opened) readHeader(hdrSrc blockdev.Source, hdrPath string) error {
	probe := o.src
	if hdrSrc != nil {
		probe = hdrSrc
	}
	if !luks.IsLUKS(probe) {
		if hdrSrc != nil {
			return fmt.Errorf("%s: not a LUKS header", hdrPath)
		}
		return nil
	}
	hdr, err := luks.ReadHeader(probe)
	if err != nil {
		return err
	}
	o.header = hdr
	return nil
}

// unlock sets o.vol: plain dm-crypt, a LUKS volume, or the source itself
// when it has no LUKS header and no key is given.
func (o *opened) unlock(v volumeConfig, hdrSrc blockdev.Source, key []byte) error {
	switch {
	case v.Plain:
		if key == nil {
			return usageError{errors.New("--plain needs a key (--key-file, --key-hex or --skr)")}
		}
		vol, err := luks.OpenPlain(o.src, key, v.PlainOpts)
		if err != nil {
			return err
		}
		o.vol = vol
	case o.header == nil:
		if key != nil {
			return errors.New("a key was given but the source has no LUKS header (use --plain for plain dm-crypt)")
		}
		o.vol = o.src
	case key == nil:
		return usageError{errors.New("the source is a LUKS volume: give a key (--key-file, --key-hex or --skr)")}
	default:
		vol, err := luks.Open(o.src, hdrSrc, key)
		if err != nil {
			return err
		}
		o.vol = vol
	}
	return nil
}

// openExt4 reads the filesystem on the volume.
func openExt4(vol blockdev.Volume, encrypted bool) (*ext4.FS, error) {
	fsys, err := ext4.Open(vol, vol.Size())
	if errors.Is(err, ext4.ErrNotExt4) && encrypted {
		// A wrong key decrypts the superblock to noise.
		return nil, fmt.Errorf("%w (wrong key for plain dm-crypt, or wrong --offset/--cipher?)", err)
	}
	return fsys, err
}

// openSource opens the ciphertext: a local file or an Azure blob, checked
// against its dm-verity tree when a root hash is given, and a chunk cache on
// top for blobs and verified sources: each block is then hashed once per
// fetch, in the cache's readahead workers beside the reads it serves, and
// the cache holds only verified bytes. The closers release them in reverse
// order.
func (o *opened) openSource(ctx context.Context, s sourceConfig, v verityConfig) error {
	raw, closers, err := openRaw(ctx, s)
	if err != nil {
		return err
	}
	o.blob, _ = raw.(*blobsrc.Blob)
	if s.CacheDir != "" && o.blob != nil {
		// Below verity: chunks from disk are checked like network bytes.
		if o.disk, err = diskCached(o.blob, s); err != nil {
			closeReverse(closers)
			return err
		}
		raw = o.disk
		// Its Close logs what it served (--debug); the blob's own line has the GET count.
		closers = append(closers, o.disk)
	}
	src, vc, err := openVerified(ctx, raw, s, v)
	if err != nil {
		closeReverse(closers)
		return err
	}
	o.verity, _ = src.(*verity.Reader)
	o.src, o.closers = src, append(closers, vc...)
	if o.blob == nil && o.verity == nil {
		return nil
	}
	o.cache = cache.New(src, cache.Options{MaxBytes: s.CacheBytes, Readahead: s.Readahead, NoReadahead: s.NoReadahead,
		FetchBytes: s.FetchBytes, IOTimeout: s.IOTimeout})
	// The cache logs its own figures when closed (--debug).
	o.src, o.closers = o.cache, append(o.closers, o.cache)
	return nil
}

// openRaw opens a local path or an Azure Blob URL as it is stored.
func openRaw(ctx context.Context, s sourceConfig) (blockdev.Source, []io.Closer, error) {
	if !blobsrc.IsURL(s.Path) {
		f, err := blockdev.OpenFile(s.Path)
		if err != nil {
			return nil, nil, err
		}
		return f, []io.Closer{f}, nil
	}
	b, err := blobsrc.Open(ctx, s.Path, blobsrc.Options{Auth: s.Auth, Retries: s.Retries, NoRetries: s.NoRetries,
		AllowHTTP: s.AllowHTTP, IOTimeout: s.IOTimeout, HedgeAfter: s.HedgeAfter, NoHedge: s.NoHedge})
	if err != nil {
		return nil, nil, err
	}
	slog.Debug("blob opened", "url", b.URL(), "type", b.Type(), "etag", b.ETag(), "size", b.Size())
	return b, []io.Closer{b}, nil
}

func closeReverse(closers []io.Closer) {
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i].Close()
	}
}

// diskCached puts the persistent chunk cache (--cache-dir) over a blob.
func diskCached(b *blobsrc.Blob, s sourceConfig) (*diskcache.Source, error) {
	dc, err := diskcache.Open(s.CacheDir, s.CacheDirBytes)
	if err != nil {
		return nil, fmt.Errorf("--cache-dir: %w", err)
	}
	src, err := dc.Wrap(b, b.URL(), b.ETag())
	if err != nil {
		return nil, fmt.Errorf("--cache-dir: %w", err)
	}
	return src, nil
}
