// Command chestfs mounts an encrypted ext4 image (a local file or an Azure
// blob) read-only through FUSE, in one unprivileged process.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/chestfs/chestfs/internal/secret"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	// Before any secret is read: no core dumps, and no /proc/PID/mem or
	// ptrace access by other processes of the same user.
	if err := secret.Harden(); err != nil {
		slog.Warn("could not harden the process against memory reads", "err", err)
	}
	app := newApp()
	os.Args = normalizeArgs(app, os.Args) // --daemon re-runs these
	if err := app.Run(os.Args); err != nil {
		// An empty message: the command said why already (run: its command's status).
		if msg := oneLine(err); msg != "" {
			fmt.Fprintln(os.Stderr, "chestfs: "+strings.TrimPrefix(msg, "chestfs: "))
		}
		os.Exit(exitCode(err))
	}
}

// oneLine keeps every failure to a single line on stderr.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
