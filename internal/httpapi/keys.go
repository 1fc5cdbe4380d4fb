package httpapi

import (
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
// It scans raw's bytes itself rather than encoding/json's tokens: a token
// is an allocation, and the token walk was most of the cost of decoding a
// join or a hold (BENCHMARKS.md, 2026-12-06). raw has already decoded, so
// it is valid JSON; the scan still stops, reporting nothing, at anything it
// does not expect. The token walk stays in the tests as the oracle that
// FuzzCheckKeys holds this one to.
func checkKeys(raw []byte, t reflect.Type) *problem.Error {
	s := keyScan{b: raw}
	err := s.value(t, "", 0)
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

// keyScan is a position in a JSON text.
type keyScan struct {
	b []byte
	i int
}

func (s *keyScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next is the byte after any space, or 0 at the end.
func (s *keyScan) next() byte {
	s.space()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// value reads one value, checking its objects against t (nil: any keys,
// once each). path is the dotted field path of the value, for messages.
func (s *keyScan) value(t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return errStop
	}
	switch s.next() {
	case '{', '[':
	case '"':
		_, err := s.str()
		return err
	case 0:
		return errStop
	default:
		return s.scalar()
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType)) {
		t = nil // its own decoding; keys are still held to being unique
	}
	if s.b[s.i] == '[' {
		return s.array(t, path, depth)
	}
	return s.object(t, path, depth)
}

func (s *keyScan) array(t reflect.Type, path string, depth int) error {
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	s.i++ // [
	if s.next() == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(elem, path, depth+1); err != nil {
			return err
		}
		switch s.next() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errStop
		}
	}
}

// smallObject is how many keys an object's repeats are looked for among
// by a scan of those before, rather than a map.
const smallObject = 16

// objectOf is what an object decoded into t may hold: for a struct its
// fields by name, for a map the type of its values; neither for any other t.
func objectOf(t reflect.Type) (fields map[string]reflect.Type, elem reflect.Type) {
	if t != nil && t.Kind() == reflect.Struct {
		return fieldsOf(t), nil
	}
	if t != nil && t.Kind() == reflect.Map {
		return nil, t.Elem()
	}
	return nil, nil
}

func (s *keyScan) object(t reflect.Type, path string, depth int) error {
	fields, elem := objectOf(t)
	s.i++ // {
	if s.next() == '}' {
		s.i++
		return nil
	}
	var few [smallObject]string
	seen := few[:0]
	var many map[string]bool
	for {
		if s.next() != '"' {
			return errStop
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		if s.next() != ':' {
			return errStop
		}
		s.i++
		name := func() string {
			if path == "" {
				return key
			}
			return path + "." + key
		}
		if many == nil && len(seen) == smallObject {
			many = make(map[string]bool, 2*smallObject)
			for _, k := range seen {
				many[k] = true
			}
		}
		repeat := false
		if many != nil {
			repeat = many[key]
			many[key] = true
		} else {
			for _, k := range seen {
				if k == key {
					repeat = true
					break
				}
			}
			seen = append(seen, key)
		}
		if repeat {
			return problem.Invalidf("%s is given twice", name())
		}
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				return problem.Invalidf("unknown field %q", key)
			}
			elem = ft
		}
		// Only an object or an array below needs the path, for its own
		// messages: a scalar's is never written.
		child := path
		if c := s.next(); c == '{' || c == '[' {
			child = name()
		}
		if err := s.value(elem, child, depth+1); err != nil {
			return err
		}
		switch s.next() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errStop
		}
	}
}

// str reads a string and answers it decoded. One with an escape or a byte
// outside ASCII is decoded by encoding/json, so that a key reads exactly
// as the decoder read it (escapes, and invalid UTF-8 as U+FFFD).
func (s *keyScan) str() (string, error) {
	start := s.i
	s.i++ // "
	plain := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if plain {
				return string(s.b[start+1 : s.i-1]), nil
			}
			var v string
			if json.Unmarshal(s.b[start:s.i], &v) != nil {
				return "", errStop
			}
			return v, nil
		case c == '\\':
			plain = false
			s.i += 2
		case c >= 0x80:
			plain = false
			s.i++
		default:
			s.i++
		}
	}
	return "", errStop
}

// scalar passes over a number, true, false or null.
func (s *keyScan) scalar() error {
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			if s.i == start {
				return errStop
			}
			return nil
		}
		s.i++
	}
	if s.i == start {
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
