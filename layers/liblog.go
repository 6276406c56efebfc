package layers

import (
	"io"
	"sync"

	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// containers-storage logs through logrus' standard logger, which prints to
// stderr by itself (e.g. "level=info msg=\"overlay: metacopy option not
// supported\"" for a user without mount rights). RouteLibraryLogs sends it
// to zap instead; the last logger given wins (logrus is process-wide).
func RouteLibraryLogs(l *zap.Logger) {
	libLog.mu.Lock()
	defer libLog.mu.Unlock()
	libLog.z = l.Named("containers-storage")
	libLog.once.Do(func() {
		std := logrus.StandardLogger()
		std.SetOutput(io.Discard)
		std.AddHook(&libLog)
	})
	level := logrus.InfoLevel
	if l.Core().Enabled(zapcore.DebugLevel) {
		level = logrus.DebugLevel
	}
	logrus.SetLevel(level)
}

// zapHook forwards logrus entries to zap.
type zapHook struct {
	mu   sync.Mutex
	once sync.Once
	z    *zap.Logger
}

var libLog zapHook

func (h *zapHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *zapHook) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	z := h.z
	h.mu.Unlock()
	if z == nil {
		return nil
	}
	level := zapcore.DebugLevel
	switch e.Level {
	case logrus.InfoLevel:
		level = zapcore.InfoLevel
	case logrus.WarnLevel:
		level = zapcore.WarnLevel
	case logrus.ErrorLevel, logrus.FatalLevel, logrus.PanicLevel:
		level = zapcore.ErrorLevel
	}
	if ce := z.Check(level, e.Message); ce != nil {
		fields := make([]zap.Field, 0, len(e.Data))
		for k, v := range e.Data {
			fields = append(fields, zap.Any(k, v))
		}
		ce.Write(fields...)
	}
	return nil
}
