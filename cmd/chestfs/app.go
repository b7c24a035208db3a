package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// commands lists every command; each is defined in the file that implements it.
func commands() []*cli.Command {
	return []*cli.Command{
		mountCommand(), runCommand(), sidecarCommand(), unmountCommand(),
		lsCommand(), catCommand(), extractCommand(), decryptCommand(), inspectCommand(),
		packCommand(), uploadCommand(),
		verityCommand(),
		mockKMSCommand(), importKeyCommand(),
		versionCommand(), completionCommand(), manCommand(),
	}
}

func newApp() *cli.App {
	onUsage := func(c *cli.Context, err error, isSub bool) error {
		return usageError{fmt.Errorf("usage: %w (see 'chestfs help %s')", err, c.Command.Name)}
	}
	cmds := commands()
	for _, cmd := range cmds {
		setUsageHandler(cmd, onUsage)
	}
	return &cli.App{
		Name:  "chestfs",
		Usage: "mount an encrypted ext4 image (LUKS2, LUKS1, plain dm-crypt) read-only, unprivileged",
		Description: "chestfs reads a LUKS-encrypted ext4 image from a local file or Azure Blob Storage,\n" +
			"decrypts it in process and serves it read-only through FUSE. No dm-crypt, no loop device,\n" +
			"no CAP_SYS_ADMIN: only /dev/fuse and fusermount3.",
		Version:              versionString(),
		Commands:             cmds,
		EnableBashCompletion: true,
		OnUsageError:         onUsage,
		ExitErrHandler:       func(*cli.Context, error) {},
		CommandNotFound: func(c *cli.Context, name string) {
			msg := fmt.Sprintf("unknown command '%s'", name)
			if near := nearest(name, c.App.Commands); near != "" {
				msg += fmt.Sprintf("; did you mean '%s'?", near)
			}
			fmt.Fprintf(os.Stderr, "chestfs: %s (see 'chestfs help')\n", msg)
			os.Exit(exitUsage)
		},
	}
}

func setUsageHandler(cmd *cli.Command, h cli.OnUsageErrorFunc) {
	if cmd.OnUsageError == nil {
		cmd.OnUsageError = h
	}
	for _, sub := range cmd.Subcommands {
		setUsageHandler(sub, h)
	}
}

// nearest is the command name closest to name (edit distance at most 3).
func nearest(name string, cmds []*cli.Command) string {
	best, bestD := "", 4
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		if d := editDistance(name, c.Name); d < bestD || (strings.HasPrefix(c.Name, name) && bestD > 1) {
			best, bestD = c.Name, min(d, 1)
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Set by the Makefile (-ldflags -X) where Go's own VCS stamping is off.
var (
	version   string
	commit    string
	buildDate string
)

// versionString is the module version, the commit it was built from, its
// time, and the Go version, from the build information Go embeds.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, when, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+modified"
			}
		}
	}
	v, rev, when = orDefault(version, v), orDefault(commit, rev), orDefault(buildDate, when)
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		rev = "unknown"
	}
	if when == "" {
		when = "unknown"
	}
	return fmt.Sprintf("%s (commit %s%s, built %s, %s)", v, rev, dirty, when, bi.GoVersion)
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, commit, build time and Go version",
		Action: func(c *cli.Context) error {
			fmt.Printf("chestfs %s\n", versionString())
			return nil
		},
	}
}

// orDefault is set, or def when set is empty.
func orDefault(set, def string) string {
	if set != "" {
		return set
	}
	return def
}
