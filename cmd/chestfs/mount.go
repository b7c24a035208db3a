package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/fusefs"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "mount",
		Usage:     "mount the image read-only at MOUNTPOINT (foreground; SIGINT/SIGTERM unmount)",
		ArgsUsage: "SOURCE MOUNTPOINT",
		Description: "SOURCE is a local image or an Azure Blob URL. The mountpoint shows the filesystem only once\n" +
			"the key is checked and the superblock read. Works unprivileged through fusermount3.",
		Flags: append(openFlags(),
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users see the mount (needs user_allow_other in /etc/fuse.conf unless root)"},
			&cli.BoolFlag{Name: "debug", Usage: "log FUSE traffic and cache statistics"},
		),
		Action: mountCmd,
	})
}

// shutdownGrace bounds how long a signalled mount waits for a clean unmount
// before it detaches lazily and exits: a stuck reader must not keep it alive.
const shutdownGrace = 15 * time.Second

func mountCmd(c *cli.Context) error {
	a, err := args(c, "SOURCE", "MOUNTPOINT")
	if err != nil {
		return err
	}
	source, mp := a[0], a[1]
	if c.Bool("debug") {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	mp, err = filepath.Abs(mp)
	if err != nil {
		return err
	}
	if st, err := os.Stat(mp); err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mp)
	}
	if isMountPoint(mp) {
		return fmt.Errorf("mountpoint %s is busy: something is already mounted there", mp)
	}

	// Signals are caught from the start so that one arriving while the mount
	// is being set up still ends in a clean unmount, not a dead FUSE server.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	ctx := c.Context
	o, fsys, err := openFS(ctx, c, source)
	if err != nil {
		return err
	}
	defer o.Close()

	srv, err := fusefs.Mount(fsys, mp, fusefs.Options{
		AllowOther: c.Bool("allow-other"),
		Debug:      c.Bool("debug"),
		FsName:     displaySource(source),
	})
	if err != nil {
		return fmt.Errorf("mount %s: %w", mp, err)
	}
	slog.Info("mounted", "source", displaySource(source), "mountpoint", mp)

	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()

	select {
	case <-done: // unmounted from outside (fusermount3 -u)
		return nil
	case s := <-sig:
		slog.Info("unmounting", "signal", s.String())
	}
	unmounted := make(chan error, 1)
	go func() { unmounted <- srv.Unmount() }()
	select {
	case err := <-unmounted:
		if err == nil {
			<-done
			return nil
		}
		slog.Warn("unmount failed; detaching lazily", "err", err)
	case <-time.After(shutdownGrace):
		slog.Warn("unmount did not finish; detaching lazily")
	case <-sig:
		slog.Warn("second signal; detaching lazily")
	}
	lazyUnmount(mp)
	select {
	case <-done:
	case <-time.After(shutdownGrace):
	}
	return nil
}

// lazyUnmount detaches mp even while files are open on it.
func lazyUnmount(mp string) {
	if err := syscall.Unmount(mp, syscall.MNT_DETACH); err == nil {
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

// displaySource names the source in the mount table and logs without a SAS token.
func displaySource(source string) string {
	if blobsrc.IsURL(source) {
		if i := strings.IndexByte(source, '?'); i >= 0 {
			return source[:i]
		}
		return source
	}
	if abs, err := filepath.Abs(source); err == nil {
		return abs
	}
	return source
}
