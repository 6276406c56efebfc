package layers

import (
	"io"
	"testing"

	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// containers-storage's logrus messages reach zap, never the terminal.
func TestLibraryLogsGoThroughZap(t *testing.T) {
	core, seen := observer.New(zap.InfoLevel)
	RouteLibraryLogs(zap.New(core))
	defer RouteLibraryLogs(zap.NewNop())
	if logrus.StandardLogger().Out != io.Discard {
		t.Fatalf("logrus writes to %v", logrus.StandardLogger().Out)
	}
	logrus.WithField("driver", "overlay").Info("overlay: metacopy option not supported")
	logrus.Debug("below the level")
	if got := seen.All(); len(got) != 1 || got[0].Message != "overlay: metacopy option not supported" || got[0].ContextMap()["driver"] != "overlay" {
		t.Fatalf("zap saw %+v", got)
	}
}
