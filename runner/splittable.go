package runner

import "github.com/nixlayer/nixlayer/drv"

// Splittable tells, without building or realising anything, whether the
// runner would build d phase by phase; if not, why it would build it as one
// layer. The hook uses it to decline such derivations cheaply.
func Splittable(d *drv.Derivation) (ok bool, whyWhole string) {
	ok, whyWhole, _ = splittable(d)
	return ok, whyWhole
}
