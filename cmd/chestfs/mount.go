//go:build !windows

package main

import (
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount the image read-only at MOUNTPOINT (foreground; SIGINT/SIGTERM unmount)",
		ArgsUsage: "SOURCE MOUNTPOINT",
		Description: "SOURCE is a local image or an Azure Blob URL. The mountpoint shows the filesystem only once\n" +
			"the key is checked and the superblock read. Works unprivileged through fusermount3.",
		Flags: append(openFlags(), serveFlags()...),
		Action: func(c *cli.Context) error {
			a, err := args(c, "SOURCE", "MOUNTPOINT")
			if err != nil {
				return err
			}
			cfg, err := openConfigFrom(c, a[0])
			if err != nil {
				return err
			}
			opts := serveOptionsFrom(c)
			return serve(c.Context, []mountSpec{{Config: cfg, Mountpoint: a[1]}}, opts)
		},
	}
}

// serveFlags are the flags of the commands that mount.
func serveFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "allow-other", Category: "Mount", Usage: "let other users see the mount (needs user_allow_other in /etc/fuse.conf unless root)"},
		&cli.BoolFlag{Name: "debug", Category: "Mount", Usage: "log FUSE operations (never file data or names) and cache statistics"},
	}
}

// serveOptionsFrom parses serveFlags; --debug also turns on debug logging.
func serveOptionsFrom(c *cli.Context) serveOptions {
	o := serveOptions{AllowOther: c.Bool("allow-other"), Debug: c.Bool("debug")}
	if o.Debug {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	return o
}
