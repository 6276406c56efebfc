package main

import (
	"context"
	"errors"
)

// Placeholder until the language server lands (issue 6).
func cmdLSP(ctx context.Context, args []string) error { return errors.New("not implemented yet") }
