package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Appender is an answer that writes its own JSON: for the few answers on a
// crowd's hot path whose encoding by reflection is a good part of their
// handler's work (the waiting room's poll, a hold). AppendJSON appends
// exactly what json.Marshal makes of the value; each such type has a test
// that holds it to that.
type Appender interface {
	AppendJSON(b []byte) []byte
}

// Marshal is json.Marshal(v), written by v itself when it is an Appender.
func Marshal(v any) ([]byte, error) {
	if a, ok := v.(Appender); ok {
		return a.AppendJSON(make([]byte, 0, 512)), nil
	}
	return json.Marshal(v)
}

// Encode writes v as JSON with status.
func Encode(w http.ResponseWriter, status int, v any) {
	body, err := Marshal(v)
	if err != nil {
		// Only a programming error gets here (a type JSON cannot hold).
		status = http.StatusInternalServerError
		body = []byte(`{"error":"internal error","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Decode reads one JSON value from r's body into v: at most MaxBody bytes,
// unknown fields refused, every key exactly a field's name (case included)
// and given once, nothing after the value. Every failure is a *problem.Error with
// code invalid_request saying what was wrong.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	return DecodeUpTo(w, r, v, MaxBody)
}

// DecodeUpTo is Decode for a body of at most limit bytes, for the one admin
// request that carries more than MaxBody (a venue's seat map).
func DecodeUpTo(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return problem.Invalidf("request body is over %d KiB", limit>>10)
		}
		return problem.Invalidf("could not read request body")
	}
	return DecodeBytes(raw, v)
}

// DecodeBytes is Decode for a body already read.
func DecodeBytes(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return problem.Invalidf("request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return problem.Invalidf("request body has data after the JSON value")
	}
	if err := checkKeys(raw, reflect.TypeOf(v)); err != nil {
		return err
	}
	return nil
}

func decodeError(err error) *problem.Error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return problem.Invalidf("malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return problem.Invalidf("truncated JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return problem.Invalidf("request body must be a JSON object")
		}
		return problem.Invalidf("%s must be %s", typ.Field, describe(typ.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return problem.Invalidf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return problem.Invalidf("malformed JSON")
	}
}

func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	default:
		return "a " + t.Kind().String()
	}
}

// Int is a JSON integer field. It refuses strings, fractions, exponents and
// booleans that encoding/json or json.Number would let through, and it keeps
// a well-formed integer too large for int64 (clamped) so that an id beyond
// any column's range reads as "no such thing", not as bad input.
type Int struct {
	N   int64
	Set bool
}

var int64Type = reflect.TypeOf(int64(0))

// UnmarshalJSON implements json.Unmarshaler.
func (i *Int) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*i = Int{}
		return nil
	}
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return &json.UnmarshalTypeError{Value: kindOf(s), Type: int64Type}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil { // out of range: keep the sign, lose the size
		n = math.MaxInt64
		if strings.HasPrefix(s, "-") {
			n = math.MinInt64
		}
	}
	*i = Int{N: n, Set: true}
	return nil
}

func kindOf(lit string) string {
	switch {
	case strings.HasPrefix(lit, `"`):
		return "string"
	case lit == "true" || lit == "false":
		return "bool"
	case strings.HasPrefix(lit, "{"):
		return "object"
	case strings.HasPrefix(lit, "["):
		return "array"
	default:
		return "number " + lit
	}
}

// ParseID reads a positive integer id from a path segment. Malformed input is
// an invalid_request *problem.Error; a well-formed id too large for int64 comes back
// clamped to math.MaxInt64, which names nothing.
func ParseID(s, what string) (int64, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" || strings.Trim(s, "0") == "" {
		return 0, problem.Invalidf("%s must be a positive integer", what)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return math.MaxInt64, nil
	}
	return n, nil
}

// AppendString appends s as a JSON string, as json.Marshal writes it
// (HTML's <, > and & escaped too).
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			// Rare in the answers that use it (ids, tokens, enums):
			// encoding/json knows every escape.
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendTime appends t as json.Marshal writes a time.Time.
func AppendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
