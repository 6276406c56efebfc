package main

import (
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// pairable-salt FILE...: writes to ./salt.nix a fresh salt under which the
// builds of every two of the files (each importing ./salt.nix) have output
// hashes that differ at every index, so that a rebuild of one after the
// other learns an exact path map from the pair.
func cmdPairableSalt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: pairable-salt FILE FILE...")
	}
	saltFile := ts.MkAbs("salt.nix")
	var exprs []func(string) []string
	for _, f := range args {
		exprs = append(exprs, func(salt string) []string {
			ts.Check(os.WriteFile(saltFile, []byte(strconv.Quote(salt)+"\n"), 0o644))
			return []string{ts.MkAbs(f)}
		})
	}
	salt, err := e2etest.PairableSalt(ts.MkAbs("."), exprs...)
	ts.Check(err)
	ts.Check(os.WriteFile(saltFile, []byte(strconv.Quote(salt)+"\n"), 0o644))
}

// wait-file TIMEOUT FILE: waits until FILE exists (a hold point reached,
// see internal/fault.Hold).
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: wait-file TIMEOUT FILE")
	}
	limit, err := time.ParseDuration(args[0])
	ts.Check(err)
	f := ts.MkAbs(args[1])
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(f); err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(ts.Getenv("NIXLAYER_CACHE"), "learn.log"))
			ts.Fatalf("%s not there after %s; learn.log:\n%s", f, limit, log)
		}
	}
}
