//go:build !windows

package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount the image read-only at MOUNTPOINT (foreground; SIGINT, SIGTERM or SIGHUP unmount; --daemon returns once it serves)",
		ArgsUsage: "SOURCE MOUNTPOINT",
		Description: "SOURCE is a local image or an Azure Blob URL. The mountpoint shows the filesystem only once\n" +
			"the key is checked and the superblock read. Works unprivileged through fusermount3.",
		Flags: append(append(openFlags(), serveFlags()...),
			// Set when mount.fuse3 runs chestfs for an fstab line or a .mount unit.
			&cli.BoolFlag{Name: "fstab", Hidden: true}),
		Action: func(c *cli.Context) error {
			a, err := args(c, "SOURCE", "MOUNTPOINT")
			if err != nil {
				return err
			}
			cfg, err := openConfigFrom(c, a[0])
			if err != nil {
				return err
			}
			opts, err := serveOptionsFrom(c)
			if err != nil {
				return err
			}
			if c.Bool("daemon") || (c.Bool("fstab") && !c.IsSet("daemon")) {
				return daemonize()
			}
			return serve(c.Context, []mountSpec{{Config: cfg, Mountpoint: a[1]}}, opts)
		},
	}
}

// serveFlags are the flags of the commands that mount.
func serveFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "allow-other", Category: "Mount", Usage: "let other users see the mount (needs user_allow_other in /etc/fuse.conf unless root)"},
		&cli.StringFlag{Name: "metrics-addr", Category: "Mount", Usage: "serve Prometheus /metrics, /healthz and /readyz on `HOST:PORT`"},
		&cli.StringFlag{Name: "ready-file", Category: "Mount", Usage: "create `FILE` once the mount serves (removed at unmount), for orchestrators"},
		&cli.BoolFlag{Name: "daemon", Category: "Mount", Usage: "return once the mount serves and serve it in the background"},
		&cli.BoolFlag{Name: "no-sibling-push", Category: "Mount", Usage: "do not read a directory's next small files ahead of a reader reading them one by one (tar, imports)"},
		&cli.BoolFlag{Name: "no-metadata-prefetch", Category: "Mount", Usage: "do not load a blob's inode tables and directories at mount time (the first lookups then wait for them)"},
		&cli.BoolFlag{Name: "debug", Category: "Mount", Usage: "log FUSE operations (never file data or names) and cache statistics"},
		&cli.StringFlag{Name: "log-level", Category: "Mount", Value: "info", Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Category: "Mount", Value: "text", Usage: "text or json"},
		&cli.StringFlag{Name: "log-file", Category: "Mount", Usage: "append the logs to `FILE` instead of stderr (with --daemon, stderr is let go once the mount serves)"},
	}
}

// logToFile says the logs go to --log-file, not stderr.
var logToFile bool

// serveOptionsFrom parses serveFlags and sets up logging as they say.
func serveOptionsFrom(c *cli.Context) (serveOptions, error) {
	o := serveOptions{AllowOther: c.Bool("allow-other"), Debug: c.Bool("debug"), ReadyFile: c.String("ready-file"), Ready: readyNotifier(),
		MetricsAddr: c.String("metrics-addr"), NoSiblingPush: c.Bool("no-sibling-push"), NoMetadataPrefetch: c.Bool("no-metadata-prefetch")}
	level := c.String("log-level")
	if o.Debug {
		level = "debug"
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return o, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: l}
	var w io.Writer = os.Stderr
	if path := c.String("log-file"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return o, fmt.Errorf("--log-file: %w", err)
		}
		w, logToFile = f, true
	}
	switch c.String("log-format") {
	case "text":
		slog.SetDefault(slog.New(slog.NewTextHandler(w, hopts)))
	case "json":
		slog.SetDefault(slog.New(slog.NewJSONHandler(w, hopts)))
	default:
		return o, fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))
	}
	if o.ReadyFile != "" {
		abs, err := filepath.Abs(o.ReadyFile)
		if err != nil {
			return o, err
		}
		o.ReadyFile = abs
	}
	return o, nil
}
