package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"

	"github.com/holdfast/holdfast/internal/problem"
)

// checkKeysByTokens is the key check as it was first written, a walk of
// encoding/json's tokens: kept as the oracle that FuzzCheckKeys holds
// checkKeys to. It is simpler and slower (a token is an allocation).
func checkKeysByTokens(raw []byte, t reflect.Type) *problem.Error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	err := walkValue(dec, t, "", 0)
	var e *problem.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// walkValue reads one value from dec, checking its objects against t (nil:
// any keys, once each). path is the dotted field path of the value, for
// messages.
func walkValue(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return errStop
	}
	tok, err := dec.Token()
	if err != nil {
		return errStop
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType)) {
		t = nil // its own decoding; keys are still held to being unique
	}
	switch delim {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := walkValue(dec, elem, path, depth+1); err != nil {
				return err
			}
		}
	case '{':
		fields, elem := objectOf(t)
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return errStop
			}
			key, _ := tok.(string)
			name := key
			if path != "" {
				name = path + "." + key
			}
			if seen[key] {
				return problem.Invalidf("%s is given twice", name)
			}
			seen[key] = true
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					return problem.Invalidf("unknown field %q", key)
				}
				elem = ft
			}
			if err := walkValue(dec, elem, name, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errStop
	}
	return nil
}
