package runner

import (
	"cmp"
	"context"
	"io"

	"github.com/nixlayer/nixlayer/planner"
)

// Plan computes the plan for a derivation without building anything but
// its inputs.
func (e *Engine) Plan(ctx context.Context, drvPath string, po planner.Options) (*planner.Plan, error) {
	j, err := e.run.Prepare(ctx, drvPath, cmp.Or(po.Log, io.Discard))
	if err != nil {
		return nil, err
	}
	return e.plans.Plan(j, po)
}
