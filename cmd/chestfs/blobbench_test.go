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
// ranged GETs, as azcopy-style downloaders do. It reports the rates and the
// ratios, the GETs per cold random 4 KiB read, the time (in round trips) to
// a cold file's first byte once the mount is up, the mount's peak RSS
// against its cache bound, and the CPU of each party. Run it with
// scripts/bench-blob.sh.
//
// The server (BENCH_BLOB_SERVER): "fast" (default) is
// azuritetest.ReadServer in a process of its own, serving the image from
// memory and adding the latency itself: a stand-in for Azure's storage
// front end, which is never the bottleneck of one client. It also shapes
// the link (BENCH_BLOB_LINKS): an aggregate cap over all connections (the
// VM's NIC) and a cap per connection (one TCP stream's share of a WAN
// path); each setting is measured in turn against the same image and
// server. "azurite" is the emulator with the image uploaded, behind a
// proxy in this process adding the latency; its Node CPU, not the readers,
// tends to set the pace (no link shaping).
func BenchmarkBlobMount(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: FUSE mounts and dropping the page cache")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skip("needs /dev/fuse")
	}
	fileMiB := envInt(b, "BENCH_BLOB_MIB", benchFileMiB)
	latency := time.Duration(envInt(b, "BENCH_BLOB_LATENCY_MS", int(benchLatency/time.Millisecond))) * time.Millisecond
	cfg := &benchConfig{fileSize: int64(fileMiB) << 20, latency: latency,
		// The parallel reader's GETs are as large as the mount's
		// readahead GETs (its --fetch-size default), so that both ask
		// the same of the service; BENCH_BLOB_PAR_GET_MIB overrides.
		parGet:  int64(envInt(b, "BENCH_BLOB_PAR_GET_MIB", 8)) << 20,
		parN:    envInt(b, "BENCH_BLOB_PAR_N", 16),
		sidecar: os.Getenv("BENCH_BLOB_SIDECAR") != "0",
		sink:    os.Getenv("BENCH_BLOB_PAR_SINK"),
	}
	switch cfg.sink {
	case "":
		cfg.sink = "discard"
	case "discard", "file", "both":
	default:
		b.Fatalf("BENCH_BLOB_PAR_SINK=%q: want discard, file or both", cfg.sink)
	}
	links := linkSettings(b)

	dir := b.TempDir()
	img, key, runs := benchImage(b, dir, cfg.fileSize)
	cfg.runs, cfg.outFile = runs, filepath.Join(dir, "download.out")
	b.Logf("image %s: big.bin in %d runs of the blob, the first at %d", img, len(runs), runs[0].off)
	switch kind := os.Getenv("BENCH_BLOB_SERVER"); kind {
	case "", "fast":
		cfg.srv = startReadServer(b, img, latency)
	case "azurite":
		if len(links) > 1 || links[0].link > 0 || links[0].conn > 0 {
			b.Fatal("link shaping (BENCH_BLOB_LINKS, BENCH_BLOB_LINK_MBPS, BENCH_BLOB_CONN_MBPS) needs BENCH_BLOB_SERVER=fast")
		}
		cfg.srv = startAzurite(b, img, latency)
	default:
		b.Fatalf("BENCH_BLOB_SERVER=%q: want fast or azurite", kind)
	}
	b.Logf("server: %s, %v per request; parallel reference: %d GETs of %d MiB in flight, sink %s",
		cfg.srv.desc, latency, cfg.parN, cfg.parGet>>20, cfg.sink)

	mp := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		b.Fatal(err)
	}
	cfg.mp = mp
	cfg.mountArgs = []string{"--auth", "anonymous", "--key-file", key, "--cache-size", strconv.Itoa(benchCacheSize)}
	// BENCH_BLOB_MOUNT_ARGS adds flags (e.g. "--readahead 16") for experiments.
	cfg.mountArgs = append(append(cfg.mountArgs, strings.Fields(os.Getenv("BENCH_BLOB_MOUNT_ARGS"))...), cfg.srv.url, mp)

	b.ResetTimer()
	// BENCH_BLOB_ROUNDS rounds per setting and iteration
	// (scripts/bench-blob.sh runs one iteration): `-benchtime Nx` would
	// redo the whole set-up first.
	rounds := b.N * max(envInt(b, "BENCH_BLOB_ROUNDS", 3), 1)
	var results []*linkResult
	for _, l := range links {
		results = append(results, cfg.measure(b, l, rounds))
	}
	b.StopTimer()
	last := results[len(results)-1]
	b.ReportMetric(last.mbs(cfg, last.mountT), "mount-MB/s")
	b.ReportMetric(last.mbs(cfg, last.rawT), "parallel-MB/s")
	b.ReportMetric(median(last.xParallel), "x-parallel")
	b.ReportMetric(last.getsPerRand, "GETs/rand4k")
	b.ReportMetric(median(last.firstRTT), "RTT/first-byte")
	var peak int64
	for _, r := range results {
		peak = max(peak, r.peak)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peakRSS-MiB")
	b.ReportMetric(float64(benchCacheSize+rssSlack)/(1<<20), "RSSbound-MiB")
	b.Logf("summary (%d rounds per setting, server %s, latency %v, parallel %d x %d MiB; ratio = mount rate / reference rate, median of rounds):",
		rounds, cfg.srv.name, latency, cfg.parN, cfg.parGet>>20)
	b.Logf("%-16s %9s %9s %7s %9s %7s %9s %7s %9s %9s %9s", "link (Mbit/s)", "mount", "par", "x-par", "par-file", "x-file",
		"sidecar", "x-side", "mount", "server", "readers")
	b.Logf("%-16s %9s %9s %7s %9s %7s %9s %7s %9s %9s %9s", "agg/conn", "MB/s", "MB/s", "", "MB/s", "", "MB/s", "",
		"ms/MiB", "ms/MiB", "ms/MiB")
	for _, r := range results {
		b.Logf("%s", r.row(cfg))
	}
	b.Logf("peak RSS %d MiB (bound %d MiB); load %s", peak>>20, (benchCacheSize+rssSlack)>>20, loadavg())
	if peak > benchCacheSize+rssSlack {
		b.Errorf("peak RSS %d MiB exceeds the cache bound + 64 MiB (%d MiB)", peak>>20, (benchCacheSize+rssSlack)>>20)
	}
}

// benchConfig is what every setting of BenchmarkBlobMount shares.
type benchConfig struct {
	fileSize  int64
	latency   time.Duration
	parGet    int64
	parN      int
	sidecar   bool
	sink      string // the parallel reader's: discard, file or both
	runs      []byteRun
	outFile   string
	srv       *benchServer
	mp        string
	mountArgs []string
}

// linkSetting shapes the server's link; 0: unlimited.
type linkSetting struct {
	name       string
	link, conn int64 // bytes per second
}

// linkSettings reads BENCH_BLOB_LINKS ("0 4000 2000 1000 0/400": Mbit/s,
// aggregate[/per connection], 0 unlimited), else one setting from
// BENCH_BLOB_LINK_MBPS and BENCH_BLOB_CONN_MBPS (default unlimited).
func linkSettings(b *testing.B) []linkSetting {
	spec := os.Getenv("BENCH_BLOB_LINKS")
	if spec == "" {
		spec = fmt.Sprintf("%d/%d", envInt(b, "BENCH_BLOB_LINK_MBPS", 0), envInt(b, "BENCH_BLOB_CONN_MBPS", 0))
	}
	var out []linkSetting
	for _, f := range strings.Fields(spec) {
		a, c, _ := strings.Cut(f, "/")
		if c == "" {
			c = "0"
		}
		la, err1 := strconv.ParseInt(a, 10, 64)
		lc, err2 := strconv.ParseInt(c, 10, 64)
		if err1 != nil || err2 != nil || la < 0 || lc < 0 {
			b.Fatalf("BENCH_BLOB_LINKS: %q: want MBIT[/MBIT]", f)
		}
		name := func(v int64) string {
			if v == 0 {
				return "-"
			}
			return strconv.FormatInt(v, 10)
		}
		out = append(out, linkSetting{name: name(la) + "/" + name(lc), link: la * 1e6 / 8, conn: lc * 1e6 / 8})
	}
	if len(out) == 0 {
		b.Fatal("BENCH_BLOB_LINKS: no settings")
	}
	return out
}

// linkResult is what one setting measured, over its rounds.
type linkResult struct {
	l                             linkSetting
	rounds                        int
	mountT, sidecarT, rawT, fileT time.Duration
	mountCPU, srvCPU, selfCPU     time.Duration // during the mount's reads
	rawSrvCPU, rawSelfCPU         time.Duration // during the parallel reads (discard or file)
	xSidecar, xParallel, xFile    []float64
	getsPerRand                   float64
	firstRTT                      []float64
	firstGets                     []int64
	peak                          int64
}

func (r *linkResult) mbs(cfg *benchConfig, d time.Duration) float64 {
	if d == 0 {
		return 0
	}
	return float64(r.rounds) * float64(cfg.fileSize) / d.Seconds() / 1e6
}

// row is the setting's line of the summary table.
func (r *linkResult) row(cfg *benchConfig) string {
	mib := float64(r.rounds) * float64(cfg.fileSize) / (1 << 20)
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / mib }
	opt := func(d time.Duration, x []float64) (string, string) {
		if d == 0 {
			return "-", "-"
		}
		return fmt.Sprintf("%.0f", r.mbs(cfg, d)), fmt.Sprintf("%.2fx", median(x))
	}
	pr, px := opt(r.rawT, r.xParallel)
	fr, fx := opt(r.fileT, r.xFile)
	sr, sx := opt(r.sidecarT, r.xSidecar)
	return fmt.Sprintf("%-16s %9.0f %9s %7s %9s %7s %9s %7s %9.2f %9.2f %9.2f   first byte %.1f RTT (GETs %v), %.2f GETs/rand4k",
		r.l.name, r.mbs(cfg, r.mountT), pr, px, fr, fx, sr, sx, ms(r.mountCPU), ms(r.srvCPU), ms(r.selfCPU),
		median(r.firstRTT), r.firstGets, r.getsPerRand)
}

// measure runs the readers rounds times over link l.
func (cfg *benchConfig) measure(b *testing.B, l linkSetting, rounds int) *linkResult {
	cfg.srv.setLink(b, l)
	r := &linkResult{l: l, rounds: rounds}
	srv := cfg.srv
	self := os.Getpid()
	for round := range rounds {
		// The mount, cold: a fresh process and no page cache.
		m := startMount(b, nil, cfg.mountArgs...)
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
		n := readFile(b, filepath.Join(cfg.mp, "big.bin"))
		dm := time.Since(t0)
		if perf != nil {
			perf.Process.Signal(syscall.SIGINT)
			perf.Wait()
		}
		r.mountCPU += cpuTime(b, m.cmd.Process.Pid) - c0
		r.srvCPU += cpuTime(b, srv.pid) - a0
		r.selfCPU += cpuTime(b, self) - s0
		if n != cfg.fileSize {
			b.Fatalf("read %d bytes of big.bin, want %d", n, cfg.fileSize)
		}
		mountGets := srv.gets() - g0
		r.peak = max(r.peak, m.vmHWM(b))
		if err := m.stop(b); err != nil {
			b.Errorf("mount exit: %v: %s", err, m.stderr)
		}
		if log := os.Getenv("BENCH_BLOB_LOG"); log != "" {
			// The mount's stderr (with --debug: FUSE traffic and cache figures).
			os.WriteFile(log, m.stderr.Bytes(), 0o644)
		}
		r.mountT += dm
		line := fmt.Sprintf("%s round %d: mount %.0f MB/s (%d GETs)", l.name, round+1, rate(cfg, dm), mountGets)

		if cfg.sidecar {
			// (a) The sidecar's reader, reading the same range in the
			// 128 KiB requests FUSE gives it.
			t0 = time.Now()
			sc := newSidecarReader(srv.url)
			buf := make([]byte, 128<<10)
			for _, run := range cfg.runs {
				for off := int64(0); off < run.n; off += int64(len(buf)) {
					if _, err := sc.ReadAt(buf[:min(int64(len(buf)), run.n-off)], run.off+off); err != nil {
						b.Fatalf("sidecar reader: %v", err)
					}
				}
			}
			ds := time.Since(t0)
			r.sidecarT += ds
			r.xSidecar = append(r.xSidecar, ds.Seconds()/dm.Seconds())
			line += fmt.Sprintf(", sidecar-like %.0f MB/s (%.1fx)", rate(cfg, ds), ds.Seconds()/dm.Seconds())
		}

		// (b) Parallel ranged GETs of the same range, into nothing and/or
		// into a file at the bytes' offsets, as azcopy writes them.
		for _, sink := range []string{"discard", "file"} {
			if cfg.sink != sink && cfg.sink != "both" {
				continue
			}
			out := ""
			if sink == "file" {
				out = cfg.outFile
			}
			dropCaches(b)
			a0, s0 = cpuTime(b, srv.pid), cpuTime(b, self)
			t0 = time.Now()
			if err := parallelDownload(srv.url, cfg.runs, cfg.parN, cfg.parGet, out); err != nil {
				b.Fatal(err)
			}
			dr := time.Since(t0)
			r.rawSrvCPU += cpuTime(b, srv.pid) - a0
			r.rawSelfCPU += cpuTime(b, self) - s0
			if out != "" {
				os.Remove(out)
				r.fileT += dr
				r.xFile = append(r.xFile, dr.Seconds()/dm.Seconds())
			} else {
				r.rawT += dr
				r.xParallel = append(r.xParallel, dr.Seconds()/dm.Seconds())
			}
			line += fmt.Sprintf(", parallel GETs to %s %.0f MB/s (%.2fx)", sink, rate(cfg, dr), dr.Seconds()/dm.Seconds())
		}

		// A fresh mount: a cold file's first byte, then cold random 4 KiB
		// reads with the kernel's readahead off.
		m = startMount(b, nil, cfg.mountArgs...)
		dropCaches(b)
		d, g := firstByte(b, srv, filepath.Join(cfg.mp, "big.bin"))
		r.firstRTT = append(r.firstRTT, float64(d)/float64(max(cfg.latency, time.Microsecond)))
		r.firstGets = append(r.firstGets, g)
		r.getsPerRand = randomReads(b, srv, filepath.Join(cfg.mp, "big.bin"), cfg.fileSize)
		r.peak = max(r.peak, m.vmHWM(b))
		if err := m.stop(b); err != nil {
			b.Errorf("mount exit: %v: %s", err, m.stderr)
		}
		b.Logf("%s; first byte %.0f ms (%.1f RTT, %d GETs)", line, float64(d)/1e6, r.firstRTT[round], g)
	}
	return r
}

func rate(cfg *benchConfig, d time.Duration) float64 {
	return float64(cfg.fileSize) / d.Seconds() / 1e6
}

// benchServer is where the readers get the blob.
type benchServer struct {
	name, desc string
	selfDesc   string // what this process does besides reading
	url        string // the blob's URL
	pid        int    // the serving process
	gets       func() int64
	// setLink shapes the server's link (nil: it cannot).
	link func(l linkSetting) error
}

func (s *benchServer) setLink(b *testing.B, l linkSetting) {
	if s.link == nil {
		return
	}
	if err := s.link(l); err != nil {
		b.Fatalf("shaping the link to %s: %v", l.name, err)
	}
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
	if err := parallelDownload(az.BlobURL("bench", "bench.img"), []byteRun{{0, imgSize(b, img)}}, 4, 8<<20, ""); err != nil {
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
	link := func(l linkSetting) error {
		resp, err := http.Get(fmt.Sprintf("%s/_link?link=%d&conn=%d", base, l.link, l.conn))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("read server: %s", resp.Status)
		}
		return nil
	}
	return &benchServer{name: "fast", desc: "azuritetest.ReadServer (Go, from memory, own process; stands in for Azure's front end)",
		selfDesc: "reader", url: base + "/" + azuritetest.Account + "/bench/bench.img", pid: cmd.Process.Pid, gets: gets, link: link}
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
// parallel at a time. With out set, the bytes are written to that file at
// their offsets in the runs (as azcopy writes a download); else they are
// dropped, and the reference pays for the transfer only.
func parallelDownload(url string, runs []byteRun, parallel int, piece int64, out string) error {
	type job struct{ off, n, at int64 }
	var jobs []job
	var at int64
	for _, r := range runs {
		for off := int64(0); off < r.n; off += piece {
			jobs = append(jobs, job{r.off + off, min(piece, r.n-off), at + off})
		}
		at += r.n
	}
	var f *os.File
	if out != "" {
		var err error
		if f, err = os.Create(out); err != nil {
			return err
		}
		defer f.Close()
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: parallel}}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One small buffer per worker, as a downloader streams a body.
			buf := make([]byte, 256<<10)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(jobs)) {
					return
				}
				j := jobs[i]
				// Hidden behind a plain Writer, io.Discard's ReadFrom
				// would read in 8 KiB pieces instead of through buf.
				var w io.Writer = struct{ io.Writer }{io.Discard}
				if f != nil {
					w = io.NewOffsetWriter(f, j.at)
				}
				if err := rangedGetInto(c, url, j.off, j.n, func(body io.Reader) error {
					got, err := io.CopyBuffer(w, io.LimitReader(body, j.n), buf)
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

// BenchmarkBlobMountUp measures how long `chestfs mount` of a blob takes
// to be up (from the process start to the mount in the mount table), with
// and without the metadata prefetch, on an image of BENCH_BLOB_FILES small
// files (default 100000, in directories of 1000) served by the read
// server with BENCH_BLOB_LATENCY_MS per request; BENCH_BLOB_ROUNDS mounts
// each way. The GETs each mount sent until it was up are reported too.
func BenchmarkBlobMountUp(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: FUSE mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skip("needs /dev/fuse")
	}
	nFiles := envInt(b, "BENCH_BLOB_FILES", 100000)
	latency := time.Duration(envInt(b, "BENCH_BLOB_LATENCY_MS", int(benchLatency/time.Millisecond))) * time.Millisecond
	rounds := max(envInt(b, "BENCH_BLOB_ROUNDS", 3), 1)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for i := range nFiles {
		d := filepath.Join(src, fmt.Sprintf("d%03d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%06d.txt", i)), []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	img, key := filepath.Join(dir, "img"), filepath.Join(dir, "key")
	t0 := time.Now()
	benchRun(b, "pack", "--new-key", key, "--pbkdf", "pbkdf2", "--iterations", "1000", src, img)
	os.RemoveAll(src)
	b.Logf("image of %d files: %d MiB, packed in %v", nFiles, imgSize(b, img)>>20, time.Since(t0).Round(time.Millisecond))
	srv := startReadServer(b, img, latency)
	mp := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		b.Fatal(err)
	}
	args := []string{"--auth", "anonymous", "--key-file", key, "--cache-size", strconv.Itoa(benchCacheSize), "--debug", srv.url, mp}
	b.ResetTimer()
	for _, prefetch := range []bool{false, true} {
		var ups []float64
		var gets []int64
		for range rounds {
			a := args
			if !prefetch {
				a = append([]string{"--no-metadata-prefetch"}, args...)
			}
			cmd := exec.Command(binPath, append([]string{"mount"}, a...)...)
			var se bytes.Buffer
			cmd.Stderr = &se
			g0 := srv.gets()
			t0 := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			for !isMounted(mp) {
				if time.Since(t0) > time.Minute {
					cmd.Process.Kill()
					cmd.Wait()
					b.Fatalf("mount not up after a minute: %s", se.String())
				}
				time.Sleep(time.Millisecond)
			}
			up := time.Since(t0)
			g := srv.gets() - g0
			// The prefetch's breakdown is logged when its background part
			// ends: wait for it (a bounded while) before unmounting.
			for prefetch && !strings.Contains(se.String(), "metadata prefetched") && time.Since(t0) < 10*time.Second {
				time.Sleep(10 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				b.Errorf("mount exit: %v: %s", err, se.String())
			}
			ups = append(ups, float64(up.Milliseconds()))
			gets = append(gets, g)
			if prefetch {
				for _, l := range strings.Split(se.String(), "\n") {
					if strings.Contains(l, "metadata prefetched") || strings.Contains(l, "cache: closed") {
						b.Logf("%s", l)
					}
				}
			}
		}
		b.Logf("prefetch %v: mount up after %v ms (median %.0f ms = %.1f RTT), GETs until up %v",
			prefetch, ups, median(ups), median(ups)/float64(max(latency.Milliseconds(), 1)), gets)
	}
}
