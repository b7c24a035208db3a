//go:build !windows

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// readyFDEnv names the descriptor on which a --daemon child says it serves.
const readyFDEnv = "CHESTFS_READY_FD"

// daemonize runs this same command again without --daemon, in a session
// of its own, and returns once the child serves: exit 0 with the mount in
// the background. A child that fails before it serves has said why on
// stderr; the parent then exits with the child's status and adds nothing.
func daemonize() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// os.Args is normalized (main): the command name first. The child
	// serves in the foreground, whatever implied --daemon here.
	args := withoutFlag(os.Args[1:], "daemon")
	args = append([]string{args[0], "--daemon=false"}, args[1:]...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	if line, _ := bufio.NewReader(r).ReadString('\n'); line == "ready\n" {
		fmt.Fprintf(os.Stderr, "chestfs: serving in the background (pid %d); stop it with chestfs unmount MOUNTPOINT or kill %d\n",
			cmd.Process.Pid, cmd.Process.Pid)
		cmd.Process.Release()
		return nil
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return cli.Exit("", ee.ExitCode())
	}
	return errors.New("the background mount ended before it served")
}

// withoutFlag drops --name (and -name) from args, up to a "--".
func withoutFlag(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if t := strings.TrimLeft(a, "-"); strings.HasPrefix(a, "-") && (t == name || t == name+"=true") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// readyNotifier returns what a --daemon child calls once it serves, or nil
// when this process is not such a child.
func readyNotifier() func() {
	fd := os.Getenv(readyFDEnv)
	if fd == "" {
		return nil
	}
	os.Unsetenv(readyFDEnv) // not for the commands run starts
	f := os.NewFile(3, "ready")
	if fd != "3" || f == nil {
		return nil
	}
	return func() {
		f.WriteString("ready\n")
		f.Close()
		// Let go of the parent's stderr (a terminal, or a pipe someone reads
		// to its end): from now on the logs go nowhere, unless --log-file.
		if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil && !logToFile {
			unix.Dup2(int(null.Fd()), 2)
			null.Close()
		}
	}
}
