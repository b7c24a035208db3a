package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// normalizeArgs makes the command line what urfave/cli parses:
//   - "chestfs SOURCE MOUNTPOINT -o OPTS", as mount.fuse3 runs a helper for an
//     fstab line or a systemd .mount unit of type fuse.chestfs, is a mount in
//     the background (mount(8) waits for its helper to return);
//   - "-o key_file=K,allow_other,ro" becomes the flags it names;
//   - flags given after the positional arguments move before them (up to a
//     "--"), since the parser stops at the first positional argument.
func normalizeArgs(app *cli.App, argv []string) []string {
	if len(argv) < 2 {
		return argv
	}
	out := []string{argv[0]}
	rest := argv[1:]
	if isMountHelperCall(app, rest) {
		rest = append([]string{"mount", "--fstab"}, rest...)
	}
	cmd := findCommand(app.Commands, rest[0])
	for cmd != nil && len(rest) > 1 && len(cmd.Subcommands) > 0 {
		out = append(out, rest[0])
		rest = rest[1:]
		cmd = findCommand(cmd.Subcommands, rest[0])
	}
	if cmd == nil {
		return append(out, rest...)
	}
	out = append(out, rest[0])
	return append(out, reorder(cmd, expandMountOptions(cmd, rest[1:]))...)
}

// isMountHelperCall reports whether args are SOURCE MOUNTPOINT [-o OPTS]
// rather than a command.
func isMountHelperCall(app *cli.App, args []string) bool {
	if strings.HasPrefix(args[0], "-") || findCommand(app.Commands, args[0]) != nil || args[0] == "help" {
		return false
	}
	n := 0
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-o":
			i++
		case !strings.HasPrefix(args[i], "-"):
			n++
		}
	}
	return n == 2
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// ignoredMountOptions are generic mount(8) options that say nothing to
// chestfs (it always mounts read-only, nosuid, nodev).
var ignoredMountOptions = map[string]bool{
	"ro": true, "nosuid": true, "nodev": true, "noexec": true, "suid": true, "dev": true, "exec": true,
	"auto": true, "noauto": true, "user": true, "nouser": true, "users": true, "owner": true, "_netdev": true,
	"nofail": true, "defaults": true, "relatime": true, "noatime": true, "nodiratime": true, "async": true,
}

// expandMountOptions turns each "-o a=b,c" into the flags --a=b --c
// (underscores as dashes). Unknown options are left as flags, for the
// parser to refuse by name.
func expandMountOptions(cmd *cli.Command, args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			return append(out, args[i:]...)
		}
		if args[i] != "-o" || i+1 == len(args) {
			out = append(out, args[i])
			continue
		}
		i++
		for _, o := range strings.Split(args[i], ",") {
			name, val, hasVal := strings.Cut(strings.TrimSpace(o), "=")
			switch {
			case name == "" || ignoredMountOptions[name] || strings.HasPrefix(name, "x-") || name == "comment":
			case name == "rw":
				fmt.Fprintln(os.Stderr, "chestfs: -o rw: chestfs mounts read-only; the mount will be read-only")
			case name == "foreground":
				out = append(out, "--daemon=false")
			case hasVal:
				out = append(out, "--"+strings.ReplaceAll(name, "_", "-")+"="+val)
			default:
				out = append(out, "--"+strings.ReplaceAll(name, "_", "-"))
			}
		}
	}
	return out
}

// reorder moves flags (with their values) ahead of the positional
// arguments; everything from a "--" on stays where it is.
func reorder(cmd *cli.Command, args []string) []string {
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		tv := true
		if df, ok := f.(cli.DocGenerationFlag); ok {
			tv = df.TakesValue()
		}
		for _, n := range f.Names() {
			takesValue[n] = tv
		}
	}
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(append(flags, pos...), args[i:]...)
		case len(a) < 2 || a[0] != '-':
			pos = append(pos, a)
		default:
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(flags, pos...)
}
