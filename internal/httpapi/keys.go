package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/internal/problem"
)

// checkKeys walks the objects of raw, a JSON value that has already decoded
// into a value of type t, and refuses a key that is not exactly one of its
// struct's JSON field names, or one given twice. encoding/json matches keys
// without regard to case and lets the last of two repeats win, so
// {"event_id":1,"Event_ID":2} would name event 2 to holdfast and event 1 to a
// gateway reading the body with a stricter library. The walk follows t into
// nested structs, pointers, slices and arrays, so an item of a list is held
// to its own type's names; a map's keys are held only to being unique, and a
// type with its own UnmarshalJSON is left to it.
//
// A scan of the tokens rather than another JSON library: the decoder's
// messages stay what clients and tests know, and the rule is one short walk.
func checkKeys(raw []byte, t reflect.Type) *problem.Error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	err := walkValue(dec, t, "", 0)
	var e *problem.Error
	if errors.As(err, &e) {
		return e
	}
	// Anything else is a syntax error Decode has already reported, or the
	// nesting limit: nothing for the walk to add.
	return nil
}

// maxDepth matches encoding/json's own nesting limit.
const maxDepth = 10000

var errStop = errors.New("httpapi: stop the walk")

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

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
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = fieldsOf(t)
		} else if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
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

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// fieldsOf returns the JSON names of struct type t's fields, as
// encoding/json names them: the tag's name, else the Go name; "-" skipped;
// the fields of an untagged embedded struct promoted.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	addFields(t, fields, 0)
	fieldCache.Store(t, fields)
	return fields
}

func addFields(t reflect.Type, fields map[string]reflect.Type, depth int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct && depth < 8 {
				addFields(et, fields, depth+1)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := fields[name]; !dup || depth == 0 {
			// A shallower field hides a promoted one of the same name.
			fields[name] = f.Type
		}
	}
}
