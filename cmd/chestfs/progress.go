package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/internal/progress"
)

// quietFlag silences progress and the closing summary of long commands.
func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no summary line"}
}

// progressFor is where a long command reports progress: a bar on a
// terminal, a line every few seconds elsewhere, nothing with -q. It ends
// with one summary line.
func progressFor(c *cli.Context, prefix string) *progress.Printer {
	mode := progress.ModeAuto
	if c.Bool("quiet") {
		mode = progress.ModeQuiet
	}
	return progress.New(os.Stderr, progress.Options{Prefix: prefix, Mode: mode})
}
