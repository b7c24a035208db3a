// Package metrics exports chestfs's counters to Prometheus and answers the
// health and readiness probes of an orchestrator, on one HTTP listener
// (chestfs --metrics-addr).
//
// The layers keep their own counters (cache.Cache, blobsrc.Blob and
// verity.Reader each have Stats); they are read at scrape time, so the read
// path pays nothing for metrics it already counts. FUSE requests are timed
// through fusefs.Options.Observe (FUSEObserver).
//
// Every series carries the label fs: the name the caller gives a mounted
// filesystem (one per mount; a sidecar serves several).
//
// Endpoints: /metrics (Prometheus text or protobuf), /healthz (200 while the
// process serves HTTP at all: liveness) and /readyz (200 while the ready
// function says so, 503 otherwise: readiness).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/cache"
	"github.com/chestfs/chestfs/blockdev/diskcache"
	"github.com/chestfs/chestfs/blockdev/verity"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
)

// CacheStats is what AddCache reads: *cache.Cache.
type CacheStats interface{ Stats() cache.Stats }

// BlobStats is what AddBlob reads: *blobsrc.Blob.
type BlobStats interface{ Stats() blobsrc.Stats }

// DiskCacheStats is what AddDiskCache reads: *diskcache.Source.
type DiskCacheStats interface{ Stats() diskcache.Stats }

// VerityStats is what AddVerity reads: *verity.Reader.
type VerityStats interface{ Stats() verity.Stats }

// Metrics is a registry of chestfs's metrics. Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	fuseDur   *prometheus.HistogramVec
	fuseErr   *prometheus.CounterVec
	fuseBytes *prometheus.CounterVec

	mu     sync.Mutex
	caches map[string]CacheStats
	blobs  map[string]BlobStats
	verity map[string]VerityStats
	disks  map[string]DiskCacheStats
}

// New returns a registry with chestfs's metrics and the Go runtime's and
// process's standard ones.
func New() *Metrics {
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		caches: map[string]CacheStats{},
		blobs:  map[string]BlobStats{},
		verity: map[string]VerityStats{},
		disks:  map[string]DiskCacheStats{},
		fuseDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chestfs_fuse_request_duration_seconds",
			Help: "Time taken to answer FUSE requests, by operation (lookup, getattr, read, readdirplus...). Its _count is the number of requests.",
			// From a cached getattr (microseconds) to a read that waits
			// for a blob fetch with retries (seconds).
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10},
		}, []string{"fs", "op"}),
		fuseErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chestfs_fuse_request_errors_total",
			Help: "FUSE requests answered with an error, by operation and errno (ENOENT, ENODATA, EIO...). EIO on read is a storage, decryption or integrity failure.",
		}, []string{"fs", "op", "errno"}),
		fuseBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chestfs_fuse_read_bytes_total",
			Help: "File data returned to the kernel by FUSE reads.",
		}, []string{"fs"}),
	}
	m.reg.MustRegister(m.fuseDur, m.fuseErr, m.fuseBytes, (*statsCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where further metrics may be registered (and what /metrics
// serves).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddCache exports the counters of the chunk cache of filesystem fs. A
// later call with the same fs replaces the earlier source (a remount).
func (m *Metrics) AddCache(fs string, c CacheStats) { add(m, m.caches, fs, c) }

// AddBlob exports the traffic counters of the blob behind filesystem fs.
func (m *Metrics) AddBlob(fs string, b BlobStats) { add(m, m.blobs, fs, b) }

// AddVerity exports the integrity counters of filesystem fs's verity reader.
func (m *Metrics) AddVerity(fs string, r VerityStats) { add(m, m.verity, fs, r) }

// AddDiskCache exports the persistent cache's (--cache-dir) counters of
// filesystem fs: with them, a warm restart shows its chunks coming from
// disk while chestfs_blob_get_requests_total stays 0.
func (m *Metrics) AddDiskCache(fs string, d DiskCacheStats) { add(m, m.disks, fs, d) }

func add[T any](m *Metrics, to map[string]T, fs string, v T) {
	m.mu.Lock()
	to[fs] = v
	m.mu.Unlock()
}

// Remove stops exporting the cache, blob and verity counters of fs (after
// its unmount). Its FUSE series stay: they are counters of this process.
func (m *Metrics) Remove(fs string) {
	m.mu.Lock()
	delete(m.caches, fs)
	delete(m.blobs, fs)
	delete(m.verity, fs)
	delete(m.disks, fs)
	m.mu.Unlock()
}

// fuseOps are the operations fusefs reports, looked up once so that the
// observer does no label hashing per request.
var fuseOps = []string{
	"lookup", "forget", "getattr", "statx", "access", "readlink", "open", "read", "release", "flush",
	"fsync", "fsyncdir", "opendir", "releasedir", "readdir", "readdirplus", "statfs", "getxattr",
	"listxattr", "ioctl", "setattr", "mknod", "mkdir", "unlink", "rmdir", "rename", "link", "symlink",
	"setxattr", "removexattr", "create", "write", "tmpfile", "copyfilerange", "fallocate",
}

// FUSEObserver returns the function for fusefs.Options.Observe of the
// mount of filesystem fs. It is safe for concurrent use and allocates
// nothing for a successful request.
func (m *Metrics) FUSEObserver(fs string) func(op string, d time.Duration, n int, err error) {
	hist := make(map[string]prometheus.Observer, len(fuseOps))
	for _, op := range fuseOps {
		hist[op] = m.fuseDur.WithLabelValues(fs, op)
	}
	bytes := m.fuseBytes.WithLabelValues(fs)
	return func(op string, d time.Duration, n int, err error) {
		h, ok := hist[op]
		if !ok {
			h = m.fuseDur.WithLabelValues(fs, op)
		}
		h.Observe(d.Seconds())
		if n > 0 {
			bytes.Add(float64(n))
		}
		if err != nil {
			m.fuseErr.WithLabelValues(fs, op, errnoName(err)).Inc()
		}
	}
}

// errnoName is the symbolic name of the errno in err ("EIO"), or "other".
func errnoName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if s := unix.ErrnoName(e); s != "" {
			return s
		}
	}
	return "other"
}

// Handler serves /metrics, /healthz and /readyz. ready reports whether the
// filesystems are mounted and serving; nil means never ready.
func (m *Metrics) Handler(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp's own counters of scrapes
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready == nil || !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not mounted")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Server is the metrics listener started by Serve.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
	err  error
}

// Serve listens on addr (HOST:PORT; port 0 picks a free one) and serves
// Handler(ready) until ctx ends or Close is called. It returns once the
// listener is bound, so a taken port or a bad address is an error here.
func (m *Metrics) Serve(ctx context.Context, addr string, ready func() bool) (*Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler: m.Handler(ready),
			// Probes and scrapes are small; bound what a slow client holds.
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
		},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			slog.Error("metrics: server stopped", "addr", s.addr.String(), "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// Addr is the address listened on (with the port chosen for port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the listener, gives requests in progress a second to finish,
// and waits until the server has stopped.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
	return s.err
}

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// statsCollector reads the layers' Stats at scrape time.
type statsCollector Metrics

type desc struct {
	d *prometheus.Desc
	t prometheus.ValueType
}

func newDesc(name, help string, t prometheus.ValueType) desc {
	return desc{prometheus.NewDesc(name, help, []string{"fs"}, nil), t}
}

var (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue

	cacheHits         = newDesc("chestfs_cache_hits_total", "Chunk lookups answered from memory.", counter)
	cacheWaits        = newDesc("chestfs_cache_waits_total", "Chunk lookups that joined a fetch already in flight.", counter)
	cacheMisses       = newDesc("chestfs_cache_misses_total", "Chunk lookups that started a fetch from the source.", counter)
	cacheFetches      = newDesc("chestfs_cache_fetches_total", "Source reads completed (on demand and readahead).", counter)
	cachePrefetches   = newDesc("chestfs_cache_prefetches_total", "Readahead fetches started.", counter)
	cachePrefetchHits = newDesc("chestfs_cache_prefetch_hits_total", "Readahead chunks later read.", counter)
	cacheFetchErrors  = newDesc("chestfs_cache_fetch_errors_total", "Source reads that failed (after the source's own retries).", counter)
	cacheFetched      = newDesc("chestfs_cache_fetched_bytes_total", "Bytes read from the source into the cache.", counter)
	cacheEvictions    = newDesc("chestfs_cache_evictions_total", "Chunks dropped to make room.", counter)
	cacheResident     = newDesc("chestfs_cache_resident_bytes", "Chunk memory now (loaded and in flight).", gauge)
	cachePeak         = newDesc("chestfs_cache_peak_bytes", "Highest chunk memory so far.", gauge)
	cacheMax          = newDesc("chestfs_cache_max_bytes", "The bound on chunk memory.", gauge)

	blobRequests = newDesc("chestfs_blob_get_requests_total", "Ranged GETs sent to the blob service, retries included.", counter)
	blobRetries  = newDesc("chestfs_blob_retries_total", "GETs repeated after a transient failure (throttling, 5xx, timeout, broken connection).", counter)
	blobFailures = newDesc("chestfs_blob_read_failures_total", "Blob reads that failed for good: permanently (403, 404, the blob changed) or after all retries.", counter)
	blobBytes    = newDesc("chestfs_blob_received_bytes_total", "Response body bytes received from the blob service.", counter)
	blobStalls   = newDesc("chestfs_blob_stalls_total", "GET tries abandoned for want of an answer or of body progress (a stalled connection, re-dialled).", counter)
	blobTimeouts = newDesc("chestfs_blob_timeouts_total", "Blob reads that failed because nothing came within --io-timeout.", counter)
	blobHedges   = newDesc("chestfs_blob_hedged_requests_total", "Second GETs sent because the first was slow (--hedge-after).", counter)
	blobHedgeWon = newDesc("chestfs_blob_hedge_wins_total", "Hedged GETs that answered before the first.", counter)

	verityVerified = newDesc("chestfs_verity_verified_blocks_total", "Data blocks that matched the dm-verity hash tree.", counter)
	verityFailures = newDesc("chestfs_verity_failures_total", "Reads refused (EIO) because a data or hash block did not match the tree: the image was changed.", counter)

	diskHits     = newDesc("chestfs_diskcache_hits_total", "Chunks read from the persistent cache (--cache-dir) instead of the blob.", counter)
	diskMisses   = newDesc("chestfs_diskcache_misses_total", "Chunks the persistent cache did not hold, fetched from the blob.", counter)
	diskCorrupt  = newDesc("chestfs_diskcache_corrupt_total", "Persistent cache entries that failed their check (torn or altered) and were fetched again.", counter)
	diskServed   = newDesc("chestfs_diskcache_served_bytes_total", "Bytes served from the persistent cache.", counter)
	diskWriteErr = newDesc("chestfs_diskcache_write_errors_total", "Entries that could not be written to the persistent cache (the reads still succeeded).", counter)

	allDescs = []desc{cacheHits, cacheWaits, cacheMisses, cacheFetches, cachePrefetches, cachePrefetchHits,
		cacheFetchErrors, cacheFetched, cacheEvictions, cacheResident, cachePeak, cacheMax,
		blobRequests, blobRetries, blobFailures, blobBytes, blobStalls, blobTimeouts, blobHedges, blobHedgeWon,
		verityVerified, verityFailures, diskHits, diskMisses, diskCorrupt, diskServed, diskWriteErr}
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	caches, blobs, ver, disks := snapshot(c.caches), snapshot(c.blobs), snapshot(c.verity), snapshot(c.disks)
	c.mu.Unlock()
	// Stats take the layers' own locks: not while holding ours.
	emit := func(fs string, d desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, float64(v), fs)
	}
	for _, fs := range sortedKeys(caches) {
		s := caches[fs].Stats()
		emit(fs, cacheHits, s.Hits)
		emit(fs, cacheWaits, s.Waits)
		emit(fs, cacheMisses, s.Misses)
		emit(fs, cacheFetches, s.Fetches)
		emit(fs, cachePrefetches, s.Prefetches)
		emit(fs, cachePrefetchHits, s.PrefetchHits)
		emit(fs, cacheFetchErrors, s.FetchErrors)
		emit(fs, cacheFetched, s.BytesFetched)
		emit(fs, cacheEvictions, s.Evictions)
		emit(fs, cacheResident, s.ResidentBytes)
		emit(fs, cachePeak, s.PeakBytes)
		emit(fs, cacheMax, s.MaxBytes)
	}
	for _, fs := range sortedKeys(blobs) {
		s := blobs[fs].Stats()
		emit(fs, blobRequests, s.Requests)
		emit(fs, blobRetries, s.Retries)
		emit(fs, blobFailures, s.Failures)
		emit(fs, blobBytes, s.BytesRead)
		emit(fs, blobStalls, s.Stalls)
		emit(fs, blobTimeouts, s.Timeouts)
		emit(fs, blobHedges, s.Hedges)
		emit(fs, blobHedgeWon, s.HedgeWins)
	}
	for _, fs := range sortedKeys(ver) {
		s := ver[fs].Stats()
		emit(fs, verityVerified, s.BlocksVerified)
		emit(fs, verityFailures, s.Failures)
	}
	for _, fs := range sortedKeys(disks) {
		s := disks[fs].Stats()
		emit(fs, diskHits, s.Hits)
		emit(fs, diskMisses, s.Misses)
		emit(fs, diskCorrupt, s.Corrupt)
		emit(fs, diskServed, s.BytesCached)
		emit(fs, diskWriteErr, s.WriteErrors)
	}
}

func snapshot[T any](m map[string]T) map[string]T {
	out := make(map[string]T, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
