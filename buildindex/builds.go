package buildindex

import "time"

// BuildStatus is how a build of the index ended.
type BuildStatus string

const (
	StatusBuilt  BuildStatus = "built"
	StatusFailed BuildStatus = "failed"
	// StatusUnfinished is a start without an end: still running, or a
	// build Nix ran itself that failed (Nix runs post-build-hook only
	// after a success).
	StatusUnfinished BuildStatus = "unfinished"
)

// endStatus is the status an end record's event gives its build.
func endStatus(event string) BuildStatus {
	if event == EventFailed {
		return StatusFailed
	}
	return StatusBuilt
}

// Build is one build of the index: a start joined with its end.
type Build struct {
	Drv      string            `json:"drv"`
	Name     string            `json:"name"`
	By       string            `json:"by"` // nix or nixlayer
	Status   BuildStatus       `json:"status"`
	Outputs  map[string]string `json:"outputs,omitempty"`
	Start    time.Time         `json:"start,omitzero"`
	End      time.Time         `json:"end,omitzero"`
	Duration time.Duration     `json:"duration,omitempty"`
	Message  string            `json:"message,omitempty"`
}

// Join pairs the start and end records of each build, oldest first. An end
// without a start (a post-build-hook without the pre-build-hook) gets its
// start from the duration when it has one.
func Join(recs []Record) []Build {
	var out []Build
	open := map[[2]string]int{} // drv, by → index of its unfinished build
	for _, r := range recs {
		key := [2]string{r.Drv, r.By}
		if r.Event == EventStart {
			open[key] = len(out)
			out = append(out, Build{Drv: r.Drv, Name: r.Name, By: r.By, Status: StatusUnfinished, Start: r.Time})
			continue
		}
		i, ok := open[key]
		if ok {
			delete(open, key)
		} else {
			i = len(out)
			out = append(out, Build{Drv: r.Drv, Name: r.Name, By: r.By})
			if r.Duration > 0 {
				out[i].Start = r.Time.Add(-r.Duration)
			}
		}
		b := &out[i]
		b.Status, b.End, b.Outputs, b.Message = endStatus(r.Event), r.Time, r.Outputs, r.Message
		b.Duration = r.Duration
		if b.Duration <= 0 && !b.Start.IsZero() {
			b.Duration = b.End.Sub(b.Start)
		}
		if b.Name == "" {
			b.Name = r.Name
		}
	}
	return out
}

// Builds reads the index and joins its records into builds, oldest first.
func Builds(cacheDir string) ([]Build, error) {
	recs, err := Records(cacheDir)
	if err != nil {
		return nil, err
	}
	return Join(recs), nil
}

// LastNixBuild returns the newest successful build of drvPath that Nix
// ran itself (recorded by post-build-hook), or nil.
func LastNixBuild(cacheDir, drvPath string) (*Build, error) {
	recs, err := Records(cacheDir)
	if err != nil {
		return nil, err
	}
	var mine []Record
	for _, r := range recs {
		if r.Drv == drvPath && r.By == ByNix {
			mine = append(mine, r)
		}
	}
	bs := Join(mine)
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i].Status == StatusBuilt {
			return &bs[i], nil
		}
	}
	return nil, nil
}
