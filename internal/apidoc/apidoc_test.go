package apidoc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/holdfast/holdfast/internal/apidoc"
)

// load parses the embedded document and resolves its $refs. It does not
// validate it: TestValid does, and the other tests report their own
// findings rather than stop at Validate's first error.
func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(apidoc.JSON())
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	return doc
}

// TestValid checks the document against the OpenAPI 3.0 rules, examples
// included (up to the first bad one; TestExamplesMatchSchemas lists them all).
func TestValid(t *testing.T) {
	t.Parallel()
	doc := load(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
}

// visitOptions make VisitJSON check the formats the document uses that
// kin-openapi does not check by default, so that an example with a
// malformed UUID or address fails too.
func visitOptions(asRequest bool) []openapi3.SchemaValidationOption {
	opts := []openapi3.SchemaValidationOption{
		openapi3.MultiErrors(),
		openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)),
		openapi3.WithStringFormatValidator("email", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForEmail)),
	}
	if asRequest {
		return append(opts, openapi3.VisitAsRequest())
	}
	return append(opts, openapi3.VisitAsResponse())
}

// statusOfCode is the contract's map from error code to the statuses it may
// be answered with, so an example cannot claim a code under the wrong status.
var statusOfCode = map[string][]int{
	"invalid_request":        {400},
	"unauthorized":           {401},
	"queue_required":         {403},
	"pass_invalid":           {403},
	"pass_expired":           {403},
	"pass_used":              {403},
	"not_on_sale":            {403},
	"sale_closed":            {403},
	"category_required":      {400},
	"not_found":              {404},
	"method_not_allowed":     {405},
	"unsupported_media_type": {415},
	"sold_out":               {400, 409}, // 400 on /book/*, as in the seed
	"limit_exceeded":         {409},
	"extend_limit":           {409},
	"hold_cancelled":         {409},
	"hold_not_confirmed":     {409},
	"hold_released":          {409},
	"hold_confirmed":         {409},
	"total_below_held":       {409},
	"seat_taken":             {409},
	"seat_map_in_use":        {409},
	"hold_expired":           {410},
	"idempotency_mismatch":   {422},
	"busy":                   {429},
	"internal":               {500},
	"unavailable":            {503},
}

// example is one example value found in the document, with where it is.
type example struct {
	where string
	value any
}

// examples returns the examples of a media type: its example, or each of
// its named examples.
func examples(t *testing.T, where string, mt *openapi3.MediaType) []example {
	t.Helper()
	var out []example
	if mt.Example != nil {
		out = append(out, example{where, mt.Example})
	}
	for _, name := range slices.Sorted(maps.Keys(mt.Examples)) {
		ref := mt.Examples[name]
		if ref == nil || ref.Value == nil {
			t.Errorf("%s: example %q is empty or its $ref did not resolve", where, name)
			continue
		}
		out = append(out, example{where + " example " + name, ref.Value.Value})
	}
	return out
}

// checkContent checks that every media type of a body has a schema and at
// least one example, and that each example matches the schema. It returns
// the examples it checked.
func checkContent(t *testing.T, where string, content openapi3.Content, asRequest bool) []example {
	t.Helper()
	if len(content) == 0 {
		t.Errorf("%s: no content; every answer of the API has a body", where)
		return nil
	}
	var all []example
	for _, mediaType := range slices.Sorted(maps.Keys(content)) {
		at := where + " " + mediaType
		mt := content[mediaType]
		if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
			t.Errorf("%s: no schema", at)
			continue
		}
		exs := examples(t, at, mt)
		if len(exs) == 0 {
			t.Errorf("%s: no example", at)
		}
		for _, ex := range exs {
			if err := mt.Schema.Value.VisitJSON(ex.value, visitOptions(asRequest)...); err != nil {
				t.Errorf("%s does not match its schema: %v", ex.where, err)
			}
		}
		all = append(all, exs...)
	}
	return all
}

// TestExamplesMatchSchemas checks every request body and every response of
// every operation: each has a schema and examples, and each example is
// valid against its schema. Error examples must carry a code the contract
// answers with that status.
func TestExamplesMatchSchemas(t *testing.T) {
	t.Parallel()
	doc := load(t)
	operations := 0
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		ops := item.Operations()
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			op := ops[method]
			operations++
			where := method + " " + path
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s: wants an operationId and a summary", where)
			}
			for _, p := range slices.Concat(item.Parameters, op.Parameters) {
				if p.Value == nil || p.Value.Example == nil || p.Value.Schema == nil {
					continue
				}
				if err := p.Value.Schema.Value.VisitJSON(p.Value.Example, visitOptions(true)...); err != nil {
					t.Errorf("%s: example of parameter %s does not match its schema: %v", where, p.Value.Name, err)
				}
			}
			if op.RequestBody != nil {
				if op.RequestBody.Value == nil {
					t.Errorf("%s: request body $ref did not resolve", where)
				} else {
					checkContent(t, where+" request", op.RequestBody.Value.Content, true)
				}
			}
			responses := op.Responses.Map()
			if len(responses) == 0 {
				t.Errorf("%s: no responses", where)
			}
			success := false
			for _, status := range slices.Sorted(maps.Keys(responses)) {
				ref := responses[status]
				at := where + " " + status
				code, err := strconv.Atoi(status)
				if err != nil {
					t.Errorf("%s: give each response its own status, not %q", at, status)
					continue
				}
				success = success || code < 300
				if ref.Value == nil {
					t.Errorf("%s: response $ref did not resolve", at)
					continue
				}
				exs := checkContent(t, at, ref.Value.Content, false)
				if code < 400 || path == "/ready" {
					continue // /ready answers 503 with its status object
				}
				for _, ex := range exs {
					if strings.HasSuffix(ex.where, " text/html") || strings.Contains(ex.where, " text/html ") {
						continue // a page for a person: its errors are pages too
					}
					checkErrorCode(t, ex, code)
				}
			}
			if !success {
				t.Errorf("%s: no 2xx response", where)
			}
		}
	}
	if operations == 0 {
		t.Fatal("the document has no operations")
	}
}

func checkErrorCode(t *testing.T, ex example, status int) {
	t.Helper()
	body, ok := ex.value.(map[string]any)
	if !ok {
		t.Errorf("%s: an error answer must be the error object, got %T", ex.where, ex.value)
		return
	}
	code, _ := body["code"].(string)
	if !slices.Contains(statusOfCode[code], status) {
		t.Errorf("%s: code %q is answered with %v, not %d", ex.where, code, statusOfCode[code], status)
	}
}

// TestErrorCodes checks that the Error schema lists exactly the codes the
// contract has.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	doc := load(t)
	schema := doc.Components.Schemas["Error"]
	if schema == nil || schema.Value == nil || schema.Value.Properties["code"] == nil {
		t.Fatal("no Error schema with a code property")
	}
	var got []string
	for _, v := range schema.Value.Properties["code"].Value.Enum {
		got = append(got, v.(string))
	}
	want := slices.Sorted(maps.Keys(statusOfCode))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Error.code enum = %v, want %v", got, want)
	}
}

// TestDescriptionNamesRouteErrors checks that the errors any path may get,
// which belong to no one operation, are explained in the info description.
func TestDescriptionNamesRouteErrors(t *testing.T) {
	t.Parallel()
	doc := load(t)
	for _, s := range []string{"404", "not_found", "405", "method_not_allowed", "500", "internal", "X-Request-Id"} {
		if !strings.Contains(doc.Info.Description, s) {
			t.Errorf("info.description does not mention %s", s)
		}
	}
}

// TestFormatting keeps the file readable: JSON indented by two spaces, as
// encoding/json writes it.
func TestFormatting(t *testing.T) {
	t.Parallel()
	raw := apidoc.JSON()
	var want bytes.Buffer
	if err := json.Indent(&want, raw, "", "  "); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if got := bytes.TrimSpace(raw); !bytes.Equal(got, bytes.TrimSpace(want.Bytes())) {
		t.Error("openapi.json is not indented by two spaces; reformat it with `python3 -m json.tool --indent 2 --no-ensure-ascii` or jq")
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		apidoc.Handler().ServeHTTP(rec, httptest.NewRequest(method, "/openapi.json", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: status = %d, want 200", method, rec.Code)
		}
		if got := rec.Header().Get("Content-Type"); got != "application/json" {
			t.Errorf("%s: Content-Type = %q, want application/json", method, got)
		}
		if got, want := rec.Header().Get("Content-Length"), strconv.Itoa(len(apidoc.JSON())); got != want {
			t.Errorf("%s: Content-Length = %s, want %s", method, got, want)
		}
		want := apidoc.JSON()
		if method == http.MethodHead {
			want = nil
		}
		if !bytes.Equal(rec.Body.Bytes(), want) {
			t.Errorf("%s: body is not the document (%d bytes, want %d)", method, rec.Body.Len(), len(want))
		}
	}
}

func TestJSONIsACopy(t *testing.T) {
	t.Parallel()
	b := apidoc.JSON()
	b[0] = 'x'
	if apidoc.JSON()[0] != '{' {
		t.Error("changing what JSON returned changed the document")
	}
}
