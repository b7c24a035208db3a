// Package diskcache keeps the chunks of remote sources (Azure blobs) in a
// local directory, so that a restarted mount reads what it read before
// without a request. It holds the bytes exactly as the source stores them
// (ciphertext: the LUKS layer sits above it), keyed by the blob's URL
// without its query (no SAS) and its ETag, so a changed blob never serves
// old bytes. Every entry carries a CRC-32C over its identity and data: a
// torn or damaged entry is detected, dropped and fetched again. The CRC is
// no defence against a deliberate forger with write access to the directory;
// dm-verity is, and the cache sits below the verity check (blob -> diskcache
// -> verity), so cached blocks are verified like network bytes.
//
// The directory is bounded: the least recently used entries of all sources
// sharing it are removed to keep it under the size given to Open.
package diskcache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chestfs/chestfs/blockdev"
)

// DefaultChunkSize matches the memory cache's chunk, so that one chunk it
// fetches is one entry here.
const DefaultChunkSize = 1 << 20

// trailer: crc32c (4) | data length (4) | magic (8).
const (
	trailerLen = 16
	magic      = "chestdc1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Cache is a bounded cache directory shared by the sources wrapped in it.
// It is safe for concurrent use.
type Cache struct {
	dir      string
	maxBytes int64
	log      *slog.Logger

	mu    sync.Mutex
	used  int64
	lru   map[string]*item // by path relative to dir
	clock int64            // orders uses; restored from mtimes at Open

	writeErr atomic.Bool // a failed write was logged once
	evicted  atomic.Int64
}

type item struct {
	size int64
	use  int64
}

// Open opens (creating) the cache directory dir, bounded to maxBytes of
// entries (at least one chunk). Entries already there are kept, oldest
// (by modification time) evicted first; leftover temporary files of an
// interrupted write are removed.
func Open(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes < DefaultChunkSize {
		return nil, fmt.Errorf("diskcache: size %d is below one chunk (%d bytes)", maxBytes, DefaultChunkSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("diskcache: %w", err)
	}
	c := &Cache{dir: dir, maxBytes: maxBytes, log: slog.Default(), lru: map[string]*item{}}
	type found struct {
		rel  string
		size int64
		mt   time.Time
	}
	var all []found
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".tmp") {
			os.Remove(p)
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		rel, _ := filepath.Rel(dir, p)
		all = append(all, found{rel, fi.Size(), fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("diskcache: scan %s: %w", dir, err)
	}
	// Oldest first, so that the clock gives recent entries later uses.
	sort.Slice(all, func(i, j int) bool { return all[i].mt.Before(all[j].mt) })
	for _, f := range all {
		c.clock++
		c.lru[f.rel] = &item{size: f.size, use: c.clock}
		c.used += f.size
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

// SetLogger replaces slog.Default() for write failures and dropped entries.
func (c *Cache) SetLogger(l *slog.Logger) {
	if l != nil {
		c.log = l
	}
}

// Used is the bytes of entries in the directory now.
func (c *Cache) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// Evictions counts entries removed to respect the bound.
func (c *Cache) Evictions() int64 { return c.evicted.Load() }

// evictLocked removes least recently used entries until used <= maxBytes.
// A linear scan per eviction is fine: entries are 1 MiB, so even a 100 GiB
// directory holds only 100k of them, and eviction happens once per chunk
// written.
func (c *Cache) evictLocked() {
	for c.used > c.maxBytes && len(c.lru) > 0 {
		var oldest string
		var ou int64 = -1
		for k, it := range c.lru {
			if ou < 0 || it.use < ou {
				oldest, ou = k, it.use
			}
		}
		c.used -= c.lru[oldest].size
		delete(c.lru, oldest)
		os.Remove(filepath.Join(c.dir, oldest))
		c.evicted.Add(1)
	}
}

func (c *Cache) touch(rel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.lru[rel]; ok {
		c.clock++
		it.use = c.clock
	}
}

func (c *Cache) forget(rel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.lru[rel]; ok {
		c.used -= it.size
		delete(c.lru, rel)
	}
	os.Remove(filepath.Join(c.dir, rel))
}

func (c *Cache) added(rel string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.lru[rel]; ok {
		c.used -= it.size
	}
	c.clock++
	c.lru[rel] = &item{size: size, use: c.clock}
	c.used += size
	c.evictLocked()
}

// dropOtherVersions removes the entries of key under any ETag but etag:
// the blob changed, they can never be read again.
func (c *Cache) dropOtherVersions(keyDir, verDir string) {
	ents, err := os.ReadDir(filepath.Join(c.dir, keyDir))
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Name() == verDir {
			continue
		}
		prefix := filepath.Join(keyDir, e.Name()) + string(filepath.Separator)
		c.mu.Lock()
		for k, it := range c.lru {
			if strings.HasPrefix(k, prefix) {
				c.used -= it.size
				delete(c.lru, k)
			}
		}
		c.mu.Unlock()
		os.RemoveAll(filepath.Join(c.dir, keyDir, e.Name()))
	}
}

func hashName(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:12])
}

// Stats count one wrapped source's use of the cache.
type Stats struct {
	Hits         int64 // chunks read from the directory
	Misses       int64 // chunks fetched from the source
	Corrupt      int64 // entries that failed their check and were fetched again
	Fetches      int64 // reads sent to the source
	BytesFetched int64
	BytesCached  int64 // bytes served from the directory
	WriteErrors  int64 // entries that could not be written (the read still succeeds)
}

// Source is a source read through the cache. It implements blockdev.Source
// and, like blobsrc.Blob, ReadAtContext and ReadVecAtContext, so that the
// memory cache above keeps cancelling fetches and reading several chunks
// with one request.
type Source struct {
	c        *Cache
	src      blockdev.Source
	size     int64
	chunk    int64
	id       []byte // key and etag, mixed into each entry's CRC
	dir      string // relative: keyhash/etaghash
	hits     atomic.Int64
	misses   atomic.Int64
	corrupt  atomic.Int64
	fetches  atomic.Int64
	fetched  atomic.Int64
	served   atomic.Int64
	writeErr atomic.Int64
}

// Wrap returns src read through the cache. key names the source
// independently of credentials (for a blob: blobsrc.Blob.URL(), which has
// no query string); etag is its version (blobsrc.Blob.ETag()). Entries of
// the same key under another ETag are removed.
func (c *Cache) Wrap(src blockdev.Source, key, etag string) (*Source, error) {
	if key == "" || etag == "" {
		return nil, errors.New("diskcache: a cached source needs a key and an ETag")
	}
	kd, vd := hashName(key), hashName(etag+"\x00"+strconv.FormatInt(src.Size(), 10))
	if err := os.MkdirAll(filepath.Join(c.dir, kd, vd), 0o700); err != nil {
		return nil, fmt.Errorf("diskcache: %w", err)
	}
	c.dropOtherVersions(kd, vd)
	return &Source{c: c, src: src, size: src.Size(), chunk: DefaultChunkSize,
		id: []byte(key + "\x00" + etag + "\x00"), dir: filepath.Join(kd, vd)}, nil
}

func (s *Source) Size() int64 { return s.size }

// Unwrap is the source below the cache.
func (s *Source) Unwrap() blockdev.Source { return s.src }

// Stats returns the counters so far.
func (s *Source) Stats() Stats {
	return Stats{Hits: s.hits.Load(), Misses: s.misses.Load(), Corrupt: s.corrupt.Load(),
		Fetches: s.fetches.Load(), BytesFetched: s.fetched.Load(), BytesCached: s.served.Load(),
		WriteErrors: s.writeErr.Load()}
}

// Close logs the counters (debug), so that a restarted mount shows what it
// read from the directory and what from the source. It does not close the
// source below.
func (s *Source) Close() error {
	st := s.Stats()
	s.c.log.Debug("diskcache: closed", "hits", st.Hits, "misses", st.Misses, "corrupt", st.Corrupt,
		"fetches", st.Fetches, "bytes_fetched", st.BytesFetched, "bytes_cached", st.BytesCached, "write_errors", st.WriteErrors)
	return nil
}

// Retries passes the source's retry count through (the memory cache reports it).
func (s *Source) Retries() int64 {
	if r, ok := s.src.(interface{ Retries() int64 }); ok {
		return r.Retries()
	}
	return 0
}

func (s *Source) ReadAt(p []byte, off int64) (int, error) {
	return s.ReadVecAtContext(context.Background(), [][]byte{p}, off)
}

func (s *Source) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return s.ReadVecAtContext(ctx, [][]byte{p}, off)
}

// ReadVecAtContext fills bufs with the bytes from off: chunks in the
// directory are read from it, each run of missing chunks with one source
// request (a vector read when the source has one).
func (s *Source) ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	if off < 0 {
		return 0, blockdev.ErrOutOfRange
	}
	total := int64(0)
	for _, b := range bufs {
		total += int64(len(b))
	}
	if off >= s.size {
		if total == 0 && off == s.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if off+total > s.size {
		total, eof = s.size-off, io.EOF
	}
	first, last := off/s.chunk, (off+total-1)/s.chunk
	chunks := make([][]byte, last-first+1)
	defer func() {
		for _, b := range chunks {
			putBuf(b)
		}
	}()
	var missing []int64
	for i := first; i <= last; i++ {
		if b, ok := s.load(i); ok {
			chunks[i-first] = b
		} else {
			missing = append(missing, i)
		}
	}
	for len(missing) > 0 {
		run := 1
		for run < len(missing) && missing[run] == missing[0]+int64(run) && run*int(s.chunk) < 8<<20 {
			run++
		}
		got, err := s.fetch(ctx, missing[0], run)
		if err != nil {
			return 0, err
		}
		for j, b := range got {
			chunks[missing[j]-first] = b
		}
		missing = missing[run:]
	}
	n := scatter(bufs, chunks, off-first*s.chunk, total)
	return n, eof
}

// scatter copies total bytes, from skip in the concatenated chunks, into bufs.
func scatter(bufs, chunks [][]byte, skip, total int64) int {
	ci, co := 0, int(skip)
	for co >= len(chunks[ci]) {
		co -= len(chunks[ci])
		ci++
	}
	n := 0
	for _, b := range bufs {
		for len(b) > 0 && int64(n) < total {
			k := copy(b[:min(int64(len(b)), total-int64(n))], chunks[ci][co:])
			b, co, n = b[k:], co+k, n+k
			if co == len(chunks[ci]) {
				ci, co = ci+1, 0
			}
		}
	}
	return n
}

func (s *Source) chunkLen(i int64) int {
	return int(min(s.chunk, s.size-i*s.chunk))
}

func (s *Source) rel(i int64) string {
	return filepath.Join(s.dir, strconv.FormatInt(i, 10))
}

// load reads chunk i from the directory and checks it.
func (s *Source) load(i int64) ([]byte, bool) {
	rel := s.rel(i)
	f, err := os.Open(filepath.Join(s.c.dir, rel))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	n := s.chunkLen(i)
	buf := getBuf(int(s.chunk) + trailerLen)[:n+trailerLen]
	k, err := io.ReadFull(f, buf)
	extra, _ := f.Read(make([]byte, 1))
	if err != nil || k != len(buf) || extra != 0 || !s.valid(i, buf[:n], buf[n:]) {
		putBuf(buf)
		s.corrupt.Add(1)
		s.c.log.Warn("diskcache: damaged entry dropped, fetching it again", "entry", rel)
		s.c.forget(rel)
		return nil, false
	}
	s.c.touch(rel)
	s.hits.Add(1)
	s.served.Add(int64(n))
	return buf[:n], true
}

func (s *Source) sum(i int64, data []byte) uint32 {
	var idx [8]byte
	binary.LittleEndian.PutUint64(idx[:], uint64(i))
	h := crc32.Update(0, castagnoli, s.id)
	h = crc32.Update(h, castagnoli, idx[:])
	return crc32.Update(h, castagnoli, data)
}

func (s *Source) valid(i int64, data, tr []byte) bool {
	return binary.LittleEndian.Uint32(tr[0:]) == s.sum(i, data) &&
		binary.LittleEndian.Uint32(tr[4:]) == uint32(len(data)) && string(tr[8:16]) == magic
}

// fetch reads run chunks from chunk i with one source request and stores them.
func (s *Source) fetch(ctx context.Context, i int64, run int) ([][]byte, error) {
	out := make([][]byte, run)
	for j := range out {
		out[j] = getBuf(int(s.chunk) + trailerLen)[:s.chunkLen(i+int64(j))]
	}
	off := i * s.chunk
	var n int
	var err error
	s.fetches.Add(1)
	if vr, ok := s.src.(interface {
		ReadVecAtContext(context.Context, [][]byte, int64) (int, error)
	}); ok {
		n, err = vr.ReadVecAtContext(ctx, out, off)
	} else {
		n, err = readEach(ctx, s.src, out, off)
	}
	want := 0
	for _, b := range out {
		want += len(b)
	}
	if n == want && err == io.EOF {
		err = nil
	}
	if err != nil || n < want {
		for _, b := range out {
			putBuf(b)
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("diskcache: read source at %d: %w", off, err)
	}
	s.fetched.Add(int64(n))
	s.misses.Add(int64(run))
	for j, b := range out {
		s.store(i+int64(j), b)
	}
	return out, nil
}

func readEach(ctx context.Context, src blockdev.Source, bufs [][]byte, off int64) (int, error) {
	cr, _ := src.(interface {
		ReadAtContext(context.Context, []byte, int64) (int, error)
	})
	done := 0
	for _, b := range bufs {
		var n int
		var err error
		if cr != nil {
			n, err = cr.ReadAtContext(ctx, b, off+int64(done))
		} else {
			n, err = src.ReadAt(b, off+int64(done))
		}
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// store writes chunk i (data and trailer) to a temporary file and renames
// it into place, so a reader never sees half an entry; a crash can still
// leave a short or zeroed file behind, which the check catches.
func (s *Source) store(i int64, data []byte) {
	rel := s.rel(i)
	path := filepath.Join(s.c.dir, rel)
	full := data[:len(data)+trailerLen]
	tr := full[len(data):]
	binary.LittleEndian.PutUint32(tr[0:], s.sum(i, data))
	binary.LittleEndian.PutUint32(tr[4:], uint32(len(data)))
	copy(tr[8:], magic)
	tmp := path + "." + strconv.FormatInt(time.Now().UnixNano(), 36) + ".tmp"
	err := os.WriteFile(tmp, full, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		s.writeErr.Add(1)
		if !s.c.writeErr.Swap(true) {
			s.c.log.Warn("diskcache: cannot write entries; reads go on from the source", "err", err)
		}
		return
	}
	s.c.added(rel, int64(len(full)))
}

var pool = sync.Pool{}

func getBuf(n int) []byte {
	if b, ok := pool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putBuf(b []byte) {
	if b != nil && cap(b) >= DefaultChunkSize+trailerLen {
		b = b[:cap(b)]
		pool.Put(&b)
	}
}
