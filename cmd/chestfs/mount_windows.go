package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"
)

// FUSE does not exist on Windows: mount, run, sidecar and unmount say so. The commands
// that read an image without mounting it (ls, cat, extract, decrypt,
// inspect) and the key service commands work.
func unavailable(name string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           "not available on " + runtime.GOOS + " (needs FUSE)",
		SkipFlagParsing: true,
		Action: func(*cli.Context) error {
			return fmt.Errorf("%s: not available on this platform (%s): FUSE mounts need Linux or macOS; use ls, cat or extract instead", name, runtime.GOOS)
		},
	}
}

func mountCommand() *cli.Command   { return unavailable("mount") }
func runCommand() *cli.Command     { return unavailable("run") }
func sidecarCommand() *cli.Command { return unavailable("sidecar") }
func unmountCommand() *cli.Command { return unavailable("unmount") }
