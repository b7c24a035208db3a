package main

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chestfs/chestfs/internal/procstat"

	"golang.org/x/sys/unix"

	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
)

// Figures of the blob benchmark; BENCH_BLOB_MIB and BENCH_BLOB_LATENCY
// override the first two.
const (
	benchFileMiB   = 256
	benchLatency   = 10 * time.Millisecond
	benchRandReads = 32
	benchCacheSize = 256 << 20
	rssSlack       = 64 << 20
)

// BenchmarkBlobMount reads one >= 256 MiB file sequentially through a real
// `chestfs mount` of a page blob served with a fixed latency per request,
// and in the same run reads the file's byte range of the blob (a) with a
// reader built like the Azure sidecar's (512 KiB blocks, an LRU of 32, one
// lock held across each download, no readahead) and (b) with parallel
// ranged GETs. It reports the three rates and the ratios, the GETs per cold
// random 4 KiB read, the time (in round trips) to a cold file's first byte
// once the mount is up, the mount's peak RSS against its cache bound, and
// the CPU of each party. Run it with `make bench-blob`.
//
// The server (BENCH_BLOB_SERVER): "fast" (default) is
// azuritetest.ReadServer in a process of its own, serving the image from
// memory and adding the latency itself: a stand-in for Azure's storage
// front end, which is never the bottleneck of one client. "azurite" is the
// emulator with the image uploaded, behind a proxy in this process adding
// the latency; its Node CPU, not the readers, tends to set the pace.
func BenchmarkBlobMount(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: FUSE mounts and dropping the page cache")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skip("needs /dev/fuse")
	}
	fileMiB := envInt(b, "BENCH_BLOB_MIB", benchFileMiB)
	latency := time.Duration(envInt(b, "BENCH_BLOB_LATENCY_MS", int(benchLatency/time.Millisecond))) * time.Millisecond
	fileSize := int64(fileMiB) << 20
	// The parallel reader's GETs are as large as the mount's readahead
	// GETs (its --fetch-size default), so that both ask the same of the
	// service; BENCH_BLOB_PAR_GET_MIB overrides.
	parGet := int64(envInt(b, "BENCH_BLOB_PAR_GET_MIB", 8)) << 20
	parN := envInt(b, "BENCH_BLOB_PAR_N", 16)

	dir := b.TempDir()
	img, key, runs := benchImage(b, dir, fileSize)
	b.Logf("image %s: big.bin in %d runs of the blob, the first at %d", img, len(runs), runs[0].off)
	var srv *benchServer
	switch kind := os.Getenv("BENCH_BLOB_SERVER"); kind {
	case "", "fast":
		srv = startReadServer(b, img, latency)
	case "azurite":
		srv = startAzurite(b, img, latency)
	default:
		b.Fatalf("BENCH_BLOB_SERVER=%q: want fast or azurite", kind)
	}
	b.Logf("server: %s, %v per request", srv.desc, latency)
	url := srv.url

	mp := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		b.Fatal(err)
	}
	mountArgs := []string{"--auth", "anonymous", "--key-file", key, "--cache-size", strconv.Itoa(benchCacheSize)}
	// BENCH_BLOB_MOUNT_ARGS adds flags (e.g. "--readahead 16") for experiments.
	mountArgs = append(append(mountArgs, strings.Fields(os.Getenv("BENCH_BLOB_MOUNT_ARGS"))...), url, mp)

	var mountT, sidecarT, rawT time.Duration
	// CPU per party and reader: the mount process, the server, and this
	// process (the readers; the latency proxy too with Azurite; for the
	// mount, the kernel side of its FUSE reads).
	var mountCPU, srvCPU, selfCPU [3]time.Duration
	self := os.Getpid()
	var getsPerRand float64
	var firstRTT []float64
	var firstGets []int64
	var peak int64
	// Each round's ratios: the server's speed drifts between rounds, so
	// the ratios are taken within a round and the median reported.
	var xSidecar, xParallel []float64
	b.ResetTimer()
	// BENCH_BLOB_ROUNDS rounds per iteration (scripts/bench-blob.sh runs
	// one iteration): `-benchtime Nx` would redo the whole set-up first.
	rounds := b.N * max(envInt(b, "BENCH_BLOB_ROUNDS", 3), 1)
	for round := range rounds {
		m0, sc0, r0 := mountT, sidecarT, rawT
		// The mount, cold: a fresh process and no page cache.
		m := startMount(b, nil, mountArgs...)
		dropCaches(b)
		g0 := srv.gets()
		c0, a0, s0 := cpuTime(b, m.cmd.Process.Pid), cpuTime(b, srv.pid), cpuTime(b, self)
		var perf *exec.Cmd
		if out := os.Getenv("BENCH_BLOB_PERF"); out != "" {
			// A CPU profile of the mount process during its read.
			perf = exec.Command("perf", "record", "-g", "-o", out, "-p", strconv.Itoa(m.cmd.Process.Pid))
			if err := perf.Start(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Second) // perf attaches
		}
		t0 := time.Now()
		n := readFile(b, filepath.Join(mp, "big.bin"))
		mountT += time.Since(t0)
		if perf != nil {
			perf.Process.Signal(syscall.SIGINT)
			perf.Wait()
		}
		mountCPU[0] += cpuTime(b, m.cmd.Process.Pid) - c0
		srvCPU[0] += cpuTime(b, srv.pid) - a0
		selfCPU[0] += cpuTime(b, self) - s0
		if n != fileSize {
			b.Fatalf("read %d bytes of big.bin, want %d", n, fileSize)
		}
		mountGets := srv.gets() - g0
		peak = max(peak, m.vmHWM(b))
		if err := m.stop(b); err != nil {
			b.Errorf("mount exit: %v: %s", err, m.stderr)
		}
		if log := os.Getenv("BENCH_BLOB_LOG"); log != "" {
			// The mount's stderr (with --debug: FUSE traffic and cache figures).
			os.WriteFile(log, m.stderr.Bytes(), 0o644)
		}

		// (a) The sidecar's reader, reading the same range in the 128 KiB
		// requests FUSE gives it.
		g0 = srv.gets()
		a0, s0 = cpuTime(b, srv.pid), cpuTime(b, self)
		t0 = time.Now()
		sc := newSidecarReader(url)
		buf := make([]byte, 128<<10)
		for _, r := range runs {
			for off := int64(0); off < r.n; off += int64(len(buf)) {
				if _, err := sc.ReadAt(buf[:min(int64(len(buf)), r.n-off)], r.off+off); err != nil {
					b.Fatalf("sidecar reader: %v", err)
				}
			}
		}
		sidecarT += time.Since(t0)
		srvCPU[1] += cpuTime(b, srv.pid) - a0
		selfCPU[1] += cpuTime(b, self) - s0
		sidecarGets := srv.gets() - g0

		// (b) Parallel ranged GETs of the same range.
		g0 = srv.gets()
		a0, s0 = cpuTime(b, srv.pid), cpuTime(b, self)
		t0 = time.Now()
		if err := parallelDownload(url, runs, parN, parGet); err != nil {
			b.Fatal(err)
		}
		rawT += time.Since(t0)
		srvCPU[2] += cpuTime(b, srv.pid) - a0
		selfCPU[2] += cpuTime(b, self) - s0
		rawGets := srv.gets() - g0

		// A fresh mount: a cold file's first byte, then cold random 4 KiB
		// reads with the kernel's readahead off.
		m = startMount(b, nil, mountArgs...)
		dropCaches(b)
		d, g := firstByte(b, srv, filepath.Join(mp, "big.bin"))
		firstRTT = append(firstRTT, float64(d)/float64(max(latency, time.Microsecond)))
		firstGets = append(firstGets, g)
		getsPerRand = randomReads(b, srv, filepath.Join(mp, "big.bin"), fileSize)
		peak = max(peak, m.vmHWM(b))
		if err := m.stop(b); err != nil {
			b.Errorf("mount exit: %v: %s", err, m.stderr)
		}
		dm, ds, dr := mountT-m0, sidecarT-sc0, rawT-r0
		xSidecar = append(xSidecar, ds.Seconds()/dm.Seconds())
		xParallel = append(xParallel, dr.Seconds()/dm.Seconds())
		rate := func(d time.Duration) float64 { return float64(fileSize) / d.Seconds() / 1e6 }
		b.Logf("round %d: mount %.0f MB/s, sidecar-like %.0f MB/s (%.1fx), parallel GETs %.0f MB/s (%.2fx); GETs: mount %d, sidecar %d, parallel %d; first byte %.0f ms (%.1f RTT, %d GETs)",
			round+1, rate(dm), rate(ds), xSidecar[round], rate(dr), xParallel[round], mountGets, sidecarGets, rawGets,
			float64(d)/1e6, firstRTT[round], g)
	}
	b.StopTimer()
	mbs := func(d time.Duration) float64 { return float64(rounds) * float64(fileSize) / d.Seconds() / 1e6 }
	b.ReportMetric(mbs(mountT), "mount-MB/s")
	b.ReportMetric(mbs(sidecarT), "sidecar-MB/s")
	b.ReportMetric(mbs(rawT), "parallel-MB/s")
	b.ReportMetric(median(xSidecar), "x-sidecar")
	b.ReportMetric(median(xParallel), "x-parallel")
	b.ReportMetric(getsPerRand, "GETs/rand4k")
	b.ReportMetric(median(firstRTT), "RTT/first-byte")
	b.ReportMetric(float64(peak)/(1<<20), "peakRSS-MiB")
	b.ReportMetric(float64(benchCacheSize+rssSlack)/(1<<20), "RSSbound-MiB")
	b.Logf("over %d rounds (server: %s): mount %.0f MB/s, sidecar-like %.0f MB/s, parallel GETs (%d x %d MiB) %.0f MB/s; median ratios %.1fx the sidecar-like reader, %.2fx parallel GETs; %.2f GETs per cold random 4 KiB read; first byte of a cold file %.1f RTT median, %.1f max, GETs %v; peak RSS %d MiB (bound %d MiB)",
		rounds, srv.name, mbs(mountT), mbs(sidecarT), parN, parGet>>20, mbs(rawT), median(xSidecar), median(xParallel),
		getsPerRand, median(firstRTT), slices.Max(firstRTT), firstGets, peak>>20, (benchCacheSize+rssSlack)>>20)
	sec := func(d [3]time.Duration, i int) float64 { return d[i].Seconds() }
	b.Logf("CPU seconds (mount / sidecar-like / parallel): mount process %.1f; server %.1f / %.1f / %.1f; %s %.1f / %.1f / %.1f; load %s",
		sec(mountCPU, 0), sec(srvCPU, 0), sec(srvCPU, 1), sec(srvCPU, 2), srv.selfDesc,
		sec(selfCPU, 0), sec(selfCPU, 1), sec(selfCPU, 2), loadavg())
	if peak > benchCacheSize+rssSlack {
		b.Errorf("peak RSS %d MiB exceeds the cache bound + 64 MiB (%d MiB)", peak>>20, (benchCacheSize+rssSlack)>>20)
	}
}

// benchServer is where the readers get the blob.
type benchServer struct {
	name, desc string
	selfDesc   string // what this process does besides reading
	url        string // the blob's URL
	pid        int    // the serving process
	gets       func() int64
}

// startAzurite uploads the image to Azurite and serves it behind a latency
// proxy in this process.
func startAzurite(b *testing.B, img string, latency time.Duration) *benchServer {
	az := azuritetest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := az.CreateContainer(ctx, "bench", true); err != nil {
		b.Fatal(err)
	}
	upArgs := []string{"upload", "--auth", "sharedkey", img, az.BlobURL("bench", "bench.img")}
	if os.Getenv("BENCH_BLOB_BLOCK") != "" {
		// A block blob instead of the sidecar's page blob.
		upArgs = append([]string{"upload", "--block"}, upArgs[1:]...)
	}
	benchRun(b, upArgs...)
	// Azurite's first pass over a freshly uploaded blob costs it several
	// times the CPU of later passes (its allocator warming up); one untimed
	// read keeps that off whichever reader would come first.
	if err := parallelDownload(az.BlobURL("bench", "bench.img"), []byteRun{{0, imgSize(b, img)}}, 4, 8<<20); err != nil {
		b.Fatalf("warm-up read: %v", err)
	}
	p := newLatencyProxy(b, az.Host, latency)
	return &benchServer{name: "azurite", desc: "Azurite (Node) behind a latency proxy in the benchmark process",
		selfDesc: "proxy and reader", url: p.srv.URL + "/" + azuritetest.Account + "/bench/bench.img",
		pid: az.Pid(), gets: p.gets.Load}
}

// Environment of the benchmark's read server process (see init).
const (
	readServerEnv    = "CHESTFS_BENCH_READSERVER"
	readServerLatEnv = "CHESTFS_BENCH_READSERVER_LATENCY"
)

// init turns the test binary into the benchmark's read server when started
// as one (startReadServer): a process of its own, so that its CPU is
// counted apart from the readers'.
func init() {
	if img := os.Getenv(readServerEnv); img != "" {
		serveReadServer(img, os.Getenv(readServerLatEnv))
		os.Exit(0)
	}
}

// serveReadServer serves img from memory on a loopback port, prints the
// base URL and serves until its stdin closes (the benchmark ended).
func serveReadServer(img, latency string) {
	data, err := os.ReadFile(img)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lat, err := time.ParseDuration(latency)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("http://%s\n", ln.Addr())
	go http.Serve(ln, azuritetest.NewReadServer(data, lat))
	io.Copy(io.Discard, os.Stdin)
}

// startReadServer runs azuritetest.ReadServer over img in a child process
// (this test binary, see init).
func startReadServer(b *testing.B, img string, latency time.Duration) *benchServer {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), readServerEnv+"="+img, readServerLatEnv+"="+latency.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("read server: %v", err)
	}
	base := strings.TrimSpace(line)
	gets := func() int64 {
		resp, err := http.Get(base + "/_gets")
		if err != nil {
			b.Fatalf("read server: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		n, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
		if err != nil {
			b.Fatalf("read server: GET count %q", body)
		}
		return n
	}
	return &benchServer{name: "fast", desc: "azuritetest.ReadServer (Go, from memory, own process; stands in for Azure's front end)",
		selfDesc: "reader", url: base + "/" + azuritetest.Account + "/bench/bench.img", pid: cmd.Process.Pid, gets: gets}
}

// firstByte opens path on a mount that is up and reads its first 4 KiB: the
// time that took and the GETs the server saw meanwhile.
func firstByte(b *testing.B, srv *benchServer, path string) (time.Duration, int64) {
	g0 := srv.gets()
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 4096), 0); err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	return d, srv.gets() - g0
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	w := slices.Clone(v)
	slices.Sort(w)
	return w[len(w)/2]
}

func imgSize(b *testing.B, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// cpuTime is the user+system CPU time of a process so far.
func cpuTime(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, st)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stime) * time.Second / 100 // USER_HZ
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		b.Fatalf("%s=%q: want a number >= 0", name, s)
	}
	return v
}

// benchRun runs chestfs with AZURE_STORAGE_* set for the emulator.
func benchRun(b *testing.B, args ...string) string {
	b.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "AZURE_STORAGE_ACCOUNT="+azuritetest.Account, "AZURE_STORAGE_KEY="+azuritetest.Key)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			b.Fatalf("chestfs %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		b.Fatalf("chestfs %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// byteRun is a stretch of the blob.
type byteRun struct{ off, n int64 }

// benchImage packs a random file of size bytes and returns the image, its
// key and where the file's data lies in the image (found with debugfs on
// the decrypted volume).
func benchImage(b *testing.B, dir string, size int64) (img, key string, runs []byteRun) {
	b.Helper()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(src, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'})
	if _, err := io.CopyN(f, r, size); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	img, key = filepath.Join(dir, "bench.img"), filepath.Join(dir, "bench.key")
	benchRun(b, "pack", "--new-key", key, "--pbkdf", "pbkdf2", "--iterations", "1000", src, img)
	os.RemoveAll(src)

	plain := filepath.Join(dir, "plain.img")
	benchRun(b, "decrypt", "--key-file", key, img, plain)
	defer os.Remove(plain)
	out, err := exec.Command("debugfs", "-R", "blocks /big.bin", plain).Output()
	if err != nil {
		b.Fatalf("debugfs: %v", err)
	}
	ist, err := os.Stat(img)
	if err != nil {
		b.Fatal(err)
	}
	pst, err := os.Stat(plain)
	if err != nil {
		b.Fatal(err)
	}
	// The volume is the image's tail after the LUKS header; pack makes
	// 4 KiB blocks.
	base := ist.Size() - pst.Size()
	var total int64
	for _, w := range strings.Fields(string(out)) {
		blk, err := strconv.ParseInt(w, 10, 64)
		if err != nil {
			b.Fatalf("debugfs: %q", w)
		}
		off := base + blk*4096
		if k := len(runs) - 1; k >= 0 && runs[k].off+runs[k].n == off {
			runs[k].n += 4096
		} else {
			runs = append(runs, byteRun{off, 4096})
		}
		total += 4096
	}
	if total != size {
		b.Fatalf("debugfs lists %d bytes of big.bin, want %d", total, size)
	}
	return img, key, runs
}

// latencyProxy forwards to Azurite after a fixed delay per request and
// counts the GETs.
type latencyProxy struct {
	srv     *httptest.Server
	tr      *http.Transport
	latency time.Duration
	gets    atomic.Int64
	host    string
}

func newLatencyProxy(b *testing.B, host string, latency time.Duration) *latencyProxy {
	p := &latencyProxy{host: host, latency: latency,
		tr: &http.Transport{DisableCompression: true, MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	b.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func (p *latencyProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		p.gets.Add(1)
	}
	select {
	case <-time.After(p.latency):
	case <-r.Context().Done():
		return
	}
	resp := azuritetest.Forward(w, r, p.tr, p.host)
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	buf := copyBufs.Get().(*[]byte)
	io.CopyBuffer(w, resp.Body, *buf)
	copyBufs.Put(buf)
}

// vmHWM is the process's peak resident set.
func (m *mountProc) vmHWM(b *testing.B) int64 {
	n, err := procstat.Bytes(strconv.Itoa(m.cmd.Process.Pid), "VmHWM")
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func dropCaches(b *testing.B) {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Fatalf("dropping the page cache: %v", err)
	}
}

// readFile reads path start to end in 4 MiB reads, as `dd bs=4M` would:
// FUSE splits each into 1 MiB READs that the kernel sends together, so the
// mount serves several at once (the kernel's own readahead for FUSE is
// 128 KiB, which an unprivileged mount cannot raise).
func readFile(b *testing.B, path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 4<<20))
	if err != nil {
		b.Fatalf("reading %s: %v", path, err)
	}
	return n
}

// randomReads reads 4 KiB at benchRandReads offsets far apart, with the
// kernel's readahead off, and returns the GETs each took on average.
func randomReads(b *testing.B, srv *benchServer, path string, size int64) float64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	// The first read also loads the inode and its extents.
	if _, err := f.ReadAt(buf, 0); err != nil {
		b.Fatal(err)
	}
	g0 := srv.gets()
	r := rand.New(rand.NewPCG(1, 2))
	stride := size / benchRandReads
	for i := range int64(benchRandReads) {
		// One 4 KiB block somewhere in the i-th stretch of the file, so
		// that no two reads are near each other.
		off := i*stride + r.Int64N(stride/4096)*4096
		if _, err := f.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	return float64(srv.gets()-g0) / benchRandReads
}

// sidecarReader reads a blob like the Azure sidecar's remote FUSE helper:
// 512 KiB blocks, an LRU of 32 blocks, one global lock held across each
// download, no readahead.
type sidecarReader struct {
	url    string
	client *http.Client
	mu     sync.Mutex
	blocks map[int64]*list.Element
	lru    *list.List
}

type sidecarBlock struct {
	idx  int64
	data []byte
}

const sidecarBlockSize = 512 << 10

func newSidecarReader(url string) *sidecarReader {
	return &sidecarReader{url: url, client: &http.Client{}, blocks: map[int64]*list.Element{}, lru: list.New()}
}

func (s *sidecarReader) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		idx := pos / sidecarBlockSize
		el, ok := s.blocks[idx]
		if ok {
			s.lru.MoveToFront(el)
		} else {
			data, err := rangedGet(s.client, s.url, idx*sidecarBlockSize, sidecarBlockSize)
			if err != nil {
				return n, err
			}
			if s.lru.Len() >= 32 {
				old := s.lru.Back()
				s.lru.Remove(old)
				delete(s.blocks, old.Value.(*sidecarBlock).idx)
			}
			el = s.lru.PushFront(&sidecarBlock{idx: idx, data: data})
			s.blocks[idx] = el
		}
		blk := el.Value.(*sidecarBlock)
		n += copy(p[n:], blk.data[pos-idx*sidecarBlockSize:])
	}
	return n, nil
}

// rangedGet downloads [off, off+n) anonymously.
func rangedGet(c *http.Client, url string, off, n int64) ([]byte, error) {
	data := make([]byte, n)
	return data, rangedGetInto(c, url, off, n, func(body io.Reader) error {
		_, err := io.ReadFull(body, data)
		return err
	})
}

// rangedGetInto GETs [off,+n) and hands the body to read.
func rangedGetInto(c *http.Client, url string, off, n int64, read func(io.Reader) error) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("x-ms-version", "2023-11-03")
	req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET [%d,+%d): %s", off, n, resp.Status)
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("GET [%d,+%d): %w", off, n, err)
	}
	return nil
}

// parallelDownload fetches the runs in ranged GETs of at most piece bytes,
// parallel at a time.
func parallelDownload(url string, runs []byteRun, parallel int, piece int64) error {
	var jobs []byteRun
	for _, r := range runs {
		for off := int64(0); off < r.n; off += piece {
			jobs = append(jobs, byteRun{r.off + off, min(piece, r.n-off)})
		}
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: parallel}}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The bytes go through one small buffer per worker and are
			// dropped: the reference pays for the transfer only, not for
			// memory it would fault in.
			buf := make([]byte, 256<<10)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(jobs)) {
					return
				}
				j := jobs[i]
				if err := rangedGetInto(c, url, j.off, j.n, func(body io.Reader) error {
					got, err := io.CopyBuffer(io.Discard, io.LimitReader(body, j.n), buf)
					if err == nil && got != j.n {
						err = fmt.Errorf("%d of %d bytes", got, j.n)
					}
					return err
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// TestBlobFirstByte: once a mount of a blob is up, the first 4 KiB of a
// file nobody has read yet (in the root, or three directories down, or a
// file with thousands of neighbours) arrives within 2 round trips: the GETs
// the server sees from the open to the end of that read are at most 2
// (each GET on the critical path is one round trip; the mount's own reads
// of metadata happen before it is up). Counted, not timed.
func TestBlobFirstByte(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	files := map[string][]byte{
		"top.txt":          bytes.Repeat([]byte("top "), 3000),
		"a/b/c/deep.txt":   bytes.Repeat([]byte("deep"), 5000),
		"many/f-0777.dat":  nil,
		"big.bin":          nil,
		"other/x/late.txt": bytes.Repeat([]byte("late"), 100),
	}
	for i := range 2000 {
		files[fmt.Sprintf("many/f-%04d.dat", i)] = []byte(fmt.Sprintf("file %d\n", i))
	}
	files["big.bin"] = make([]byte, 40<<20)
	rand.NewChaCha8([32]byte{1}).Read(files["big.bin"])
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img, key := filepath.Join(dir, "img"), filepath.Join(dir, "key")
	mustRun(t, "pack", "--new-key", key, "--pbkdf", "pbkdf2", "--iterations", "1000", src, img)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	rs := azuritetest.NewReadServer(data, 0)
	srv := httptest.NewServer(rs)
	defer srv.Close()
	url := srv.URL + "/" + azuritetest.Account + "/c/img"
	for _, name := range []string{"top.txt", "a/b/c/deep.txt", "many/f-0777.dat", "big.bin", "other/x/late.txt"} {
		// A fresh mount per file: each is cold.
		mp := filepath.Join(dir, "mnt")
		os.Mkdir(mp, 0o755)
		m := startMount(t, nil, "--auth", "anonymous", "--key-file", key, url, mp)
		g0 := rs.Gets()
		f, err := os.Open(filepath.Join(mp, name))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := f.Read(buf)
		f.Close()
		gets := rs.Gets() - g0
		if err != nil && err != io.EOF {
			t.Fatalf("%s: %v", name, err)
		}
		want := files[name]
		if !bytes.Equal(buf[:n], want[:min(len(want), 4096)]) {
			t.Errorf("%s: wrong first bytes", name)
		}
		t.Logf("%s: %d GETs to the first byte", name, gets)
		if gets > 2 {
			t.Errorf("%s: %d GETs from open to the first 4 KiB, want at most 2", name, gets)
		}
		if err := m.stop(t); err != nil {
			t.Errorf("mount exit: %v: %s", err, m.stderr)
		}
	}
}
