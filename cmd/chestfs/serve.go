//go:build !windows

package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/chestfs/chestfs/fusefs"
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
}

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
// until SIGINT or SIGTERM (then it unmounts them all and returns nil) or
// until every mount is unmounted from outside. A signal during setup
// cancels it and returns an error. mount and sidecar both run through here.
func serve(ctx context.Context, specs []mountSpec, opts serveOptions) error {
	// Signals are caught from the start so that one arriving while the mounts
	// are being set up ends in a clean exit, not a dead FUSE server.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	mounts, early, err := setUp(ctx, specs, opts, sig)
	if err != nil {
		return err
	}
	if early != nil { // a signal as the last mount came up
		slog.Info("unmounting", "signal", early.String())
		tearDown(mounts, sig, nil)
		return nil
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
	tearDown(mounts, sig, done)
	return nil
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
			return nil, nil, fmt.Errorf("interrupted by %s while setting up %s", s, spec.Mountpoint)
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
	o, err := open(ctx, spec.Config, wantFS)
	if err != nil {
		return mounted{}, err
	}
	srv, err := fusefs.Mount(o.fs, mp, fusefs.Options{
		AllowOther: opts.AllowOther,
		Debug:      opts.Debug,
		FsName:     displaySource(spec.Config.Source.Path),
	})
	if err != nil {
		o.Close()
		return mounted{}, fmt.Errorf("mount %s: %w", mp, err)
	}
	return mounted{mp: mp, o: o, srv: srv}, nil
}

// checkMountpoint returns mp made absolute once it is a directory with
// nothing mounted on it.
func checkMountpoint(mp string, create bool) (string, error) {
	mp, err := filepath.Abs(mp)
	if err != nil {
		return "", err
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
	if isMountPoint(mp) {
		return "", fmt.Errorf("mountpoint %s is busy: something is already mounted there", mp)
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
