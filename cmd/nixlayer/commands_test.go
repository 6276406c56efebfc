package main

import (
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
)

// Every command answers --help and -h from the table, without running;
// a flag's value that reads --help is a value.
func TestEveryCommandAnswersHelp(t *testing.T) {
	for _, c := range commands {
		for _, h := range []string{"--help", "-h"} {
			var b strings.Builder
			cmd := commands.Find(c.Name)
			if !cmd.WantsHelp([]string{"-v", h}) {
				t.Errorf("%s %s: not taken as help", c.Name, h)
			}
			cmd.PrintHelp(&b)
			if !strings.HasPrefix(b.String(), "usage: nixlayer "+c.Name) || !strings.Contains(b.String(), "Exit codes:") {
				t.Errorf("%s --help:\n%s", c.Name, b.String())
			}
			for _, f := range c.Flags {
				if !strings.Contains(b.String(), f.Names[0]) {
					t.Errorf("%s --help does not list %s", c.Name, f.Names[0])
				}
			}
		}
	}
	if commands.Find("build").WantsHelp([]string{"--argstr", "x", "--help"}) {
		t.Error("the value of --argstr taken as --help")
	}
	if c, err := parseCommand("build", []string{"-E", "x", "--progress=json", "--exact"}); err != nil || !c.ProgressJSON() || !c.Flags["--exact"] {
		t.Errorf("build's own flags from the table: %+v, %v", c, err)
	}
	if _, err := parseCommand("plan", []string{"-E", "x", "--exact"}); cmdline.CodeOf(err) != cmdline.ExitUsage {
		t.Errorf("plan --exact: %v (exit %d), want a usage error", err, cmdline.CodeOf(err))
	}
}
