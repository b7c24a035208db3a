//go:build !windows

package main

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"syscall"

	"github.com/urfave/cli/v2"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "mount the image, run CMD, unmount when it exits, and exit with its status",
		ArgsUsage: "SOURCE MOUNTPOINT -- CMD [ARGS...]",
		Description: "The unprivileged container pattern: chestfs mounts (a FUSE mount is visible only in its own\n" +
			"mount namespace without bidirectional propagation), waits until the mount serves, then runs\n" +
			"CMD. SIGTERM, SIGINT and SIGHUP go to CMD; as PID 1 chestfs also reaps orphaned processes.",
		Flags: append(openFlags(), serveFlags()...),
		Action: func(c *cli.Context) error {
			a := c.Args().Slice()
			if len(a) >= 3 && a[2] == "--" {
				a = append(a[:2], a[3:]...)
			}
			if len(a) < 3 {
				return errors.New("usage: chestfs run [options] SOURCE MOUNTPOINT -- CMD [ARGS...]")
			}
			cfg, err := openConfigFrom(c, a[0])
			if err != nil {
				return err
			}
			opts, err := serveOptionsFrom(c)
			if err != nil {
				return err
			}
			if c.Bool("daemon") {
				return errors.New("run: --daemon does not go with a command to run")
			}
			opts.Run = a[2:]
			return serve(c.Context, []mountSpec{{Config: cfg, Mountpoint: a[1]}}, opts)
		},
	}
}

// runChild runs argv with the process's standard streams, forwards the
// shutdown signals to it, and returns its exit status (128 + the signal
// when a signal ended it). While it runs, every child that exits is reaped:
// as PID 1 (or a subreaper) that includes orphans of argv, which would
// otherwise stay zombies.
func runChild(argv []string, sig <-chan os.Signal) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		slog.Error("run: cannot start the command", "cmd", argv[0], "err", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	exited := make(chan int, 1)
	go reap(cmd.Process.Pid, exited)
	for {
		select {
		case s := <-sig:
			slog.Info("run: forwarding signal", "signal", s.String())
			cmd.Process.Signal(s)
		case code := <-exited:
			return code
		}
	}
}

// reap waits for every child until pid exits, and sends pid's status.
func reap(pid int, exited chan<- int) {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			exited <- 255
			return
		}
		if got != pid {
			continue // an orphan: reaped, nothing more to do
		}
		switch {
		case ws.Exited():
			exited <- ws.ExitStatus()
		case ws.Signaled():
			exited <- 128 + int(ws.Signal())
		default:
			continue
		}
		return
	}
}
