package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// The shell scripts ask chestfs itself for the words that fit (urfave/cli's
// --generate-bash-completion), so they stay right as commands change.
const bashCompletion = `# bash completion for chestfs: source <(chestfs completion bash)
_chestfs() {
	local cur="${COMP_WORDS[COMP_CWORD]}" words
	if [[ "$cur" == -* ]]; then
		words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -o bashdefault -F _chestfs chestfs
`

const zshCompletion = `#compdef chestfs
# zsh completion for chestfs: chestfs completion zsh > "${fpath[1]}/_chestfs"
_chestfs() {
	local -a words_
	words_=("${(@f)$(${words[1,CURRENT-1]} --generate-bash-completion 2>/dev/null)}")
	_describe 'chestfs' words_ || _files
}
compdef _chestfs chestfs
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			a, err := args(c, "SHELL")
			if err != nil {
				return err
			}
			switch a[0] {
			case "bash":
				fmt.Print(bashCompletion)
			case "zsh":
				fmt.Print(zshCompletion)
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Print(s)
			default:
				return usageError{fmt.Errorf("usage: chestfs completion bash|zsh|fish (not %q)", a[0])}
			}
			return nil
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the manual page (roff), made from the command definitions",
		Hidden: true,
		Action: func(c *cli.Context) error {
			s, err := c.App.ToMan()
			if err != nil {
				return err
			}
			fmt.Print(s)
			return nil
		},
	}
}
