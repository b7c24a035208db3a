//go:build !windows

package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chestfs/chestfs/fusefs"
	"github.com/chestfs/chestfs/metrics"
	"github.com/urfave/cli/v2"
)

// mountSpec is one image to serve at one mountpoint.
type mountSpec struct {
	Config     openConfig
	Mountpoint string
	// Create makes the mountpoint (and its parents) when it is missing.
	Create bool
}

// serveOptions apply to every mount of one serve call.
type serveOptions struct {
	AllowOther bool
	Debug      bool
	// ReadyFile is created once every mount serves and removed at unmount.
	ReadyFile string
	// Run is a command to run once every mount serves (chestfs run); the
	// mounts go when it exits, and serve returns its exit status.
	Run []string
	// Ready is called once every mount serves (--daemon's parent waits for it).
	Ready func()
	// MetricsAddr serves Prometheus metrics, /healthz and /readyz there.
	MetricsAddr string
	// NoSiblingPush and NoMetadataPrefetch turn off the mount's two
	// speculative reads (fusefs.Options.NoSiblingPush, prefetchMetadata).
	NoSiblingPush      bool
	NoMetadataPrefetch bool
	metrics            *metrics.Metrics
}

// shutdownSignals end a mount (or are forwarded to the command of run).
var shutdownSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// shutdownGrace bounds how long a signalled mount waits for a clean unmount
// before it detaches lazily and exits: a stuck reader must not keep it alive.
const shutdownGrace = 15 * time.Second

// mounted is one served mount.
type mounted struct {
	mp  string
	o   *opened
	srv *fusefs.Server
}

// serve opens and mounts every spec, then serves them in the foreground
// until SIGINT, SIGTERM or SIGHUP (then it unmounts them all and returns
// nil), until every mount is unmounted from outside, or, with opts.Run,
// until that command exits. A signal during setup cancels it (key release
// and blob reads in flight included) and returns an exit status of 128 plus
// the signal. mount, run and sidecar all go through here.
func serve(ctx context.Context, specs []mountSpec, opts serveOptions) error {
	raiseProcs()
	// Signals are caught from the start so that one arriving while the mounts
	// are being set up ends in a clean exit, not a dead FUSE server.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, shutdownSignals...)
	defer signal.Stop(sig)

	var serving atomic.Bool // /readyz: every mount serves
	if opts.MetricsAddr != "" {
		opts.metrics = metrics.New()
		srv, err := opts.metrics.Serve(ctx, opts.MetricsAddr, serving.Load)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		defer srv.Close()
		slog.Info("metrics", "url", "http://"+srv.Addr().String()+"/metrics")
	}
	mounts, early, err := setUp(ctx, specs, opts, sig)
	if err != nil {
		return err
	}
	serving.Store(true)
	defer serving.Store(false)
	if early != nil { // a signal as the last mount came up
		slog.Info("unmounting", "signal", early.String())
		tearDown(mounts, sig, nil)
		return nil
	}
	unready := announceReady(opts)
	defer unready()
	if opts.Run != nil {
		code := runChild(opts.Run, sig)
		unready()
		tearDown(mounts, sig, nil)
		return exitStatus(code)
	}
	done := make(chan struct{})
	go func() {
		for _, m := range mounts {
			m.srv.Wait()
		}
		close(done)
	}()
	select {
	case <-done: // unmounted from outside (fusermount3 -u)
		closeAll(mounts)
		return nil
	case s := <-sig:
		slog.Info("unmounting", "signal", s.String())
	}
	unready()
	tearDown(mounts, sig, done)
	return nil
}

// announceReady tells whoever waits that the mounts serve: the ready file,
// systemd (NOTIFY_SOCKET), --daemon's parent. The function it returns takes
// the ready file away and tells systemd the mounts are stopping; it may be
// called more than once.
func announceReady(opts serveOptions) func() {
	if opts.ReadyFile != "" {
		if err := os.WriteFile(opts.ReadyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			slog.Warn("ready file", "err", err)
		}
	}
	sdNotify("READY=1")
	if opts.Ready != nil {
		opts.Ready()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if opts.ReadyFile != "" {
				os.Remove(opts.ReadyFile)
			}
			sdNotify("STOPPING=1")
		})
	}
}

// sdNotify sends state to systemd's notification socket, when there is one.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		slog.Debug("sd_notify", "err", err)
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// exitStatus is the error that makes chestfs exit with code (nil for 0).
func exitStatus(code int) error {
	if code == 0 {
		return nil
	}
	return cli.Exit("", code)
}

// setUp opens and mounts the specs in order; a failure, or a signal before
// the last mount is made, undoes the mounts made so far. A signal that
// arrives once every mount is up is returned, for serve to shut down on.
func setUp(ctx context.Context, specs []mountSpec, opts serveOptions, sig <-chan os.Signal) ([]mounted, os.Signal, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caught := make(chan os.Signal, 1)
	stop := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			caught <- s
			cancel()
		case <-stop:
		}
		close(caught)
	}()
	var mounts []mounted
	for i, spec := range specs {
		m, err := mountOne(ctx, spec, opts)
		if err == nil {
			mounts = append(mounts, m)
			slog.Info("mounted", "source", displaySource(spec.Config.Source.Path), "mountpoint", m.mp)
			if ctx.Err() == nil || i == len(specs)-1 {
				continue
			}
		}
		if err == nil {
			err = ctx.Err()
		}
		tearDown(mounts, nil, nil)
		close(stop)
		if s, ok := <-caught; ok {
			return nil, nil, cli.Exit(fmt.Sprintf("chestfs: interrupted by %s while setting up %s", s, spec.Mountpoint), 128+int(s.(syscall.Signal)))
		}
		return nil, nil, fmt.Errorf("%s: %w", spec.Mountpoint, err)
	}
	close(stop)
	return mounts, <-caught, nil
}

// mountOne checks the mountpoint, opens the image and mounts it.
func mountOne(ctx context.Context, spec mountSpec, opts serveOptions) (mounted, error) {
	mp, err := checkMountpoint(spec.Mountpoint, spec.Create)
	if err != nil {
		return mounted{}, err
	}
	// Before the key is released: a mount that cannot happen should not cost one.
	if err := checkFUSEDevice(); err != nil {
		return mounted{}, mountError{err}
	}
	o, err := open(ctx, spec.Config, wantFS)
	if err != nil {
		return mounted{}, err
	}
	// Only for a mount: a one-off ls or cat would pay for tables it never reads.
	if !opts.NoMetadataPrefetch {
		o.prefetchMetadata()
	}
	fo := fusefs.Options{
		AllowOther:    opts.AllowOther,
		Debug:         opts.Debug,
		NoSiblingPush: opts.NoSiblingPush,
		FsName:        displaySource(spec.Config.Source.Path),
	}
	if m := opts.metrics; m != nil {
		fo.Observe = m.FUSEObserver(mp)
		if o.cache != nil {
			m.AddCache(mp, o.cache)
		}
		if o.blob != nil {
			m.AddBlob(mp, o.blob)
		}
		if o.verity != nil {
			m.AddVerity(mp, o.verity)
		}
		if o.disk != nil {
			m.AddDiskCache(mp, o.disk)
		}
	}
	srv, err := fusefs.Mount(o.fs, mp, fo)
	if err != nil {
		o.Close()
		return mounted{}, mountError{fmt.Errorf("mount %s: %w", mp, err)}
	}
	return mounted{mp: mp, o: o, srv: srv}, nil
}

// checkMountpoint returns mp made absolute once it is a directory with
// nothing mounted on it. A dead FUSE mount there (its server was killed)
// is detached first.
func checkMountpoint(mp string, create bool) (string, error) {
	mp, err := filepath.Abs(mp)
	if err != nil {
		return "", err
	}
	if isMountPoint(mp) && !clearDeadMount(mp) {
		return "", fmt.Errorf("mountpoint %s is busy: something is already mounted there (chestfs unmount %s)", mp, mp)
	}
	if create {
		if err := os.MkdirAll(mp, 0o755); err != nil {
			return "", fmt.Errorf("mountpoint: %w", err)
		}
	}
	if st, err := os.Stat(mp); err != nil {
		return "", fmt.Errorf("mountpoint: %w", err)
	} else if !st.IsDir() {
		return "", fmt.Errorf("mountpoint %s is not a directory", mp)
	}
	return mp, nil
}

// tearDown unmounts every mount, newest first. Each gets shutdownGrace to
// unmount cleanly; a stuck one, or any once a second signal arrives, is
// detached lazily so that the process can exit.
func tearDown(mounts []mounted, sig <-chan os.Signal, done <-chan struct{}) {
	lazy := false
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if lazy {
			lazyUnmount(m.mp)
		} else {
			lazy = unmountGracefully(m, sig)
		}
	}
	if done != nil {
		select {
		case <-done:
		case <-time.After(shutdownGrace):
		}
	}
	closeAll(mounts)
}

// unmountGracefully unmounts m, detaching it lazily when that fails, takes
// too long or a signal arrives; it reports whether a signal arrived.
func unmountGracefully(m mounted, sig <-chan os.Signal) bool {
	unmounted := make(chan error, 1)
	go func() { unmounted <- m.srv.Unmount() }()
	select {
	case err := <-unmounted:
		if err == nil {
			return false
		}
		slog.Warn("unmount failed; detaching lazily", "mountpoint", m.mp, "err", err)
	case <-time.After(shutdownGrace):
		slog.Warn("unmount did not finish; detaching lazily", "mountpoint", m.mp)
	case <-sig:
		slog.Warn("second signal; detaching lazily", "mountpoint", m.mp)
		lazyUnmount(m.mp)
		return true
	}
	lazyUnmount(m.mp)
	return false
}

func closeAll(mounts []mounted) {
	for i := len(mounts) - 1; i >= 0; i-- {
		mounts[i].o.Close()
	}
}

// lazyUnmount detaches mp even while files are open on it.
func lazyUnmount(mp string) {
	if err := syscall.Unmount(mp, mntDetach); err == nil {
		return
	}
	if err := exec.Command("fusermount3", "-u", "-z", mp).Run(); err != nil {
		slog.Warn("lazy unmount failed", "mountpoint", mp, "err", err)
	}
}

// isMountPoint reports whether mp is the mount point of a mounted filesystem.
func isMountPoint(mp string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == mp {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// minProcs is the GOMAXPROCS serve raises the process to (a setting of
// the whole process, so it is made here and not in fusefs): go-fuse's
// reader goroutines block in read(2) on /dev/fuse, each holding a P while
// it waits, so with GOMAXPROCS at 2 (a 2-core VM) a goroutine made
// runnable meanwhile (the sibling pusher, the cache's readahead workers)
// waits until the runtime's monitor takes a P back from a blocked reader,
// 20 µs to 10 ms later, and every request pays for handing Ps around.
// Spare Ps cost nothing while idle. Measured on 2 cores: 15-30% less CPU
// per request, and the pusher keeps ahead of the reader.
const minProcs = 8

// raiseProcs raises GOMAXPROCS to minProcs unless the environment sets it.
func raiseProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
}
