// Command chestfs mounts an encrypted ext4 image (a local file or an Azure
// blob) read-only through FUSE, in one unprivileged process.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/chestfs/chestfs/internal/secret"
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
	}
}

func newApp() *cli.App {
	usageError := func(c *cli.Context, err error, isSub bool) error {
		return fmt.Errorf("usage: %w (see '%s --help')", err, c.Command.HelpName)
	}
	commands := commands()
	for _, cmd := range commands {
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = usageError
		}
	}
	return &cli.App{
		Name:  "chestfs",
		Usage: "mount an encrypted ext4 image (LUKS2, LUKS1, plain dm-crypt) read-only, unprivileged",
		Description: "chestfs reads a LUKS-encrypted ext4 image from a local file or Azure Blob Storage,\n" +
			"decrypts it in process and serves it read-only through FUSE. No dm-crypt, no loop device,\n" +
			"no CAP_SYS_ADMIN: only /dev/fuse and fusermount3.",
		Commands:             commands,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		OnUsageError:         usageError,
		ExitErrHandler:       func(*cli.Context, error) {},
	}
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	// Before any secret is read: no core dumps, and no /proc/PID/mem or
	// ptrace access by other processes of the same user.
	if err := secret.Harden(); err != nil {
		slog.Warn("could not harden the process against memory reads", "err", err)
	}
	if err := newApp().Run(os.Args); err != nil {
		var ec cli.ExitCoder
		isExit := errors.As(err, &ec) && ec.ExitCode() != 0
		switch msg := oneLine(err); {
		case isExit && msg == "": // the command said why already (run: the command's own status)
		case strings.HasPrefix(msg, "chestfs: "):
			fmt.Fprintln(os.Stderr, msg)
		default:
			fmt.Fprintln(os.Stderr, "chestfs: "+msg)
		}
		if isExit {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// oneLine keeps every failure to a single line on stderr.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
