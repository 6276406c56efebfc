package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Placeholder until hook mode lands (issue 5).
func cmdHook(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "# decline")
	return 0
}

func cmdPreBuildHook(ctx context.Context, args []string) error  { return errors.New("not implemented yet") }
func cmdPostBuildHook(ctx context.Context, args []string) error { return errors.New("not implemented yet") }
func cmdSetupNix(ctx context.Context, args []string) error      { return errors.New("not implemented yet") }
