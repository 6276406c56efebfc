package main

import (
	"context"
	"errors"
)

// Placeholders until the inspection commands land (issue 8).
var errNotYet = errors.New("not implemented yet")

func cmdShell(ctx context.Context, args []string) error  { return errNotYet }
func cmdMount(ctx context.Context, args []string) error  { return errNotYet }
func cmdUmount(ctx context.Context, args []string) error { return errNotYet }
func cmdLs(ctx context.Context, args []string) error     { return errNotYet }
func cmdLog(ctx context.Context, args []string) error    { return errNotYet }
func cmdGC(ctx context.Context, args []string) error     { return errNotYet }
func cmdExport(ctx context.Context, args []string) error { return errNotYet }
func cmdImport(ctx context.Context, args []string) error { return errNotYet }
