package runner

import (
	"cmp"
	"context"
	"io"

	"github.com/nixlayer/nixlayer/verdict"
	"github.com/nixlayer/nixlayer/verify"
)

// Verify builds drvPath the way Nix does and compares it file by file with
// the layered result (verify.Check).
func (e *Engine) Verify(ctx context.Context, drvPath string, log io.Writer) (*verify.Verification, error) {
	return e.VerifyIn(ctx, drvPath, "", log)
}

// VerifyIn is Verify for results kept in resultsDir ("" for the cache's).
func (e *Engine) VerifyIn(ctx context.Context, drvPath, resultsDir string, log io.Writer) (*verify.Verification, error) {
	d, err := e.run.ReadDerivation(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	return verify.Check(ctx, d, e.builder.ResultsDir(resultsDir), e.LastVerdict(drvPath), cmp.Or(log, io.Discard))
}

// LastVerdict is the verdict recorded on the newest build of drvPath
// that reused rewritten layers (nil when there is none): whether its
// outputs are exact, the rule that decided, and the phase an exact build
// reruns from.
func (e *Engine) LastVerdict(drvPath string) *verdict.Exactness {
	all, err := e.layers.List()
	if err != nil {
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- { // newest first
		if all[i].Meta.DrvPath == drvPath {
			if ex := e.learner.LoadExactness(all[i].ID); ex != nil {
				return ex
			}
		}
	}
	return nil
}
