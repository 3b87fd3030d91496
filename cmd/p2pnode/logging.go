package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/libp2p/go-libp2p/gologshim"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the zap logger of a command from its log settings. Logs
// go to w (stderr), never to stdout, which carries the event stream. The
// default level is warn, so that a healthy node's stderr stays quiet.
//
// Nothing in the CLI logs key material; the p2p package logs peer IDs only.
func newLogger(c logConfig, w io.Writer) (*zap.Logger, error) {
	level, err := c.level()
	if err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	var enc zapcore.Encoder
	if c.Format == "json" {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}

// level is the zap level of c.Level.
func (c logConfig) level() (zapcore.Level, error) {
	switch c.Level {
	case "", "warn":
		return zapcore.WarnLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, usageErrorf("log level %q: want debug, info, warn or error", c.Level)
}

// validate checks the level and the format, as newLogger will use them.
func (c logConfig) validate() error {
	if _, err := c.level(); err != nil {
		return err
	}
	switch c.Format {
	case "", "console", "json":
		return nil
	}
	return usageErrorf("log format %q: want json or console", c.Format)
}

// routeLibp2pLogs sends go-libp2p's own logs (it logs through log/slog,
// via its gologshim package) to log, so that --log-level and --log-format
// govern them too instead of libp2p's GOLOG_* environment variables. It
// must run before the first libp2p host is built: each libp2p logger picks
// its handler on first use.
func routeLibp2pLogs(log *zap.Logger) {
	gologshim.SetDefaultHandler(&zapHandler{log: log.Named("libp2p")})
}

// zapHandler is a slog.Handler writing to a zap logger. Records come out
// one level below their slog level (error as warn, warn as info, info as
// debug): go-libp2p rates its logs for its own developers, and at its
// warn level reports routine events (a listen address that failed, a peer
// that reset a stream) which the CLI reports itself or which are not the
// operator's concern. With go-libp2p's own default (error) an operator saw
// none of them either; --log-level info shows them.
type zapHandler struct {
	log    *zap.Logger
	prefix string // open slog groups, as "a.b."
	// demote sends records to debug. go-libp2p's dependency injection
	// (system "fx") logs at error level every error that libp2p.New also
	// returns; the CLI reports that error itself, in one line, and a port
	// in use must not come out as four.
	demote bool
}

func (h *zapHandler) level(l slog.Level) zapcore.Level {
	switch {
	case h.demote || l < slog.LevelWarn:
		return zapcore.DebugLevel
	case l < slog.LevelError:
		return zapcore.InfoLevel
	}
	return zapcore.WarnLevel
}

func (h *zapHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Core().Enabled(h.level(l))
}

func (h *zapHandler) Handle(_ context.Context, r slog.Record) error {
	ce := h.log.Check(h.level(r.Level), r.Message)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(h.prefix+a.Key, a.Value.Resolve().Any()))
		return true
	})
	if !r.Time.IsZero() {
		ce.Time = r.Time
	}
	ce.Write(fields...)
	return nil
}

func (h *zapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	var fields []zap.Field
	for _, a := range attrs {
		v := a.Value.Resolve()
		switch {
		case h.prefix == "" && a.Key == "logger":
			// gologshim names each subsystem with this attribute.
			n.log = n.log.Named(v.String())
			continue
		case h.prefix == "" && a.Key == "system" && v.String() == "fx":
			n.demote = true
		}
		fields = append(fields, zap.Any(h.prefix+a.Key, v.Any()))
	}
	n.log = n.log.With(fields...)
	return &n
}

func (h *zapHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix += name + "."
	return &n
}
