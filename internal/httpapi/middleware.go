package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	outcomeKey
)

// outcome is where WriteError leaves the error code it answered with, for
// middleware that runs after the handler (metrics).
type outcome struct{ code string }

// CodeOf returns the error code the request was answered with, or "" if it
// succeeded (or was not seen by RequestID).
func CodeOf(ctx context.Context) string {
	if o, ok := ctx.Value(outcomeKey).(*outcome); ok {
		return o.code
	}
	return ""
}

// NoteCode records the error code a request is answered with, for an
// answer written without WriteError (a replayed one, say).
func NoteCode(ctx context.Context, code string) { setCode(ctx, code) }

func setCode(ctx context.Context, code string) {
	if o, ok := ctx.Value(outcomeKey).(*outcome); ok {
		o.code = code
	}
}

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "X-Request-Id"

// RequestID gives every request an id: the client's X-Request-Id when it is
// short and plain, else a new random one. The id goes back in the response
// header and into the context, where the log handler from LogHandler finds it.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !plainID(id) {
			id = newID()
		}
		w.Header().Set(RequestIDHeader, id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, outcomeKey, &outcome{})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// RequestIDFrom returns the request id in ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func plainID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		ok := c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// newID returns 16 random hex digits. A request id needs to be unique, not
// secret, so it comes from the runtime's fast generator rather than a
// system call per request.
func newID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// LogHandler wraps h so that every record logged with a request's context
// carries its request_id.
func LogHandler(h slog.Handler) slog.Handler { return ctxHandler{h} }

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestIDFrom(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler {
	return ctxHandler{h.Handler.WithGroup(name)}
}

// StatusRecorder remembers the status a handler wrote, for middleware that
// reports on it afterwards (the access log, metrics).
type StatusRecorder struct {
	http.ResponseWriter
	status int
}

// Status is the status written, 200 if the handler wrote a body without
// one, 0 if it wrote nothing.
func (s *StatusRecorder) Status() int { return s.status }

func (s *StatusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// AccessLog logs each request once it is answered: at debug level when it
// went well, warn for a 5xx, so a load test does not drown the log.
func AccessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &StatusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			level := slog.LevelDebug
			if rec.status >= 500 {
				level = slog.LevelWarn
			}
			log.Log(r.Context(), level, "request",
				"method", clip(r.Method, 16), "path", clip(r.URL.Path, 256), "status", rec.status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000)
		})
	}
}

// clip cuts a client's string to at most n bytes for a log line: a method
// or path may be a megabyte long.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Recover turns a panic in a handler into a logged 500 with the JSON error
// body, instead of a dropped connection.
func Recover(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					WriteError(w, r, log, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// Deadline gives every request's context a deadline, so every query it runs
// carries one: a request cannot outlive d however it gets stuck. Statements
// are bounded on the server too (statement_timeout); this bounds the whole.
func Deadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// RequireJSON refuses a write (POST, PUT, PATCH) whose Content-Type is not
// application/json, parameters allowed but a charset only UTF-8, with 415
// unsupported_media_type before anything else is done. Its purpose is the
// browser: a cross-site form can post text/plain, form-urlencoded or
// multipart without the visitor's consent, but not application/json. Wrap
// only routes that take a JSON body; a route without one (confirm, release)
// reads none, whatever the header says.
func RequireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			if !isJSON(r.Header.Values("Content-Type")) {
				Encode(w, http.StatusUnsupportedMediaType, ErrorBody{
					Error: "Content-Type must be application/json", Code: CodeUnsupportedMedia})
				setCode(r.Context(), CodeUnsupportedMedia)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func isJSON(values []string) bool {
	if len(values) != 1 {
		return false
	}
	mt, params, err := mime.ParseMediaType(values[0])
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}
