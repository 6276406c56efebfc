package phaserun

import (
	_ "embed"
	"strings"

	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/shellstate"
)

// driverScript is the bash program every sandboxed step runs (driver.bash
// says how). It is data to the sandbox, not Go code, so that it can be
// shellchecked and tested in plain bash.
//
//go:embed driver.bash
var driverScript string

// driverArgs are the arguments after `bash -c driverScript` for one step:
// $0 (the builder script), then MODE PHASE LAST and the data the driver
// needs from Go.
func driverArgs(script, mode, phase string, last bool) []string {
	l := "0"
	if last {
		l = "1"
	}
	return append([]string{script, mode, phase, l}, driverData()...)
}

// driverData is what the driver is given besides the step: the command that
// captures the shell state and the stdenv's standard phases (driver.bash
// describes the encoding).
func driverData() []string {
	var order, switches, enters []string
	for _, p := range phaserules.Standard {
		if p.ListBefore != "" {
			order = append(order, "@"+p.ListBefore)
		}
		order = append(order, p.Name)
		sense := "unless"
		if p.OptIn {
			sense = "if"
		}
		switches = append(switches, p.Name, p.Switch, sense)
		if p.EntersSourceRoot {
			enters = append(enters, p.Name)
		}
	}
	order = append(order, "@"+phaserules.ListAfter)
	return []string{shellstate.DumpCommand, strings.Join(order, " "), strings.Join(switches, " "), strings.Join(enters, " ")}
}
