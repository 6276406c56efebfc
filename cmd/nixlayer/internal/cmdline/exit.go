package cmdline

import (
	"errors"
	"fmt"
)

// UsageError is a command line nixlayer cannot read: exit code 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef is a UsageError "usage: …".
func Usagef(format string, a ...any) error {
	return UsageError{"usage: " + fmt.Sprintf(format, a...)}
}

// ExitCodeError carries a command's own exit code (the hook's).
type ExitCodeError int

func (e ExitCodeError) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// ExitCode is the error for a command's own exit code (nil for 0).
func ExitCode(code int) error {
	if code == 0 {
		return nil
	}
	return ExitCodeError(code)
}

// Exit codes, as help and the README document them.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

const exitCodesHelp = `Exit codes: 0 success; 1 the command failed (evaluation, build, verification
differences, a refused request; the error says which); 2 the command line is
wrong (unknown command or flag, missing value); hook: Nix's build-hook
protocol decides.`

// CodeOf is the exit code for a command's error.
func CodeOf(err error) int {
	var u UsageError
	var c ExitCodeError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &c):
		return int(c)
	case errors.As(err, &u):
		return ExitUsage
	default:
		return ExitError
	}
}
