package signature_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/webhook/signature"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":"x"}`)
	rotating := signature.Sign(now, body, "old", "new")
	cases := []struct {
		name   string
		header string
		secret string
		at     time.Time
		want   error
	}{
		{"good", signature.Sign(now, body, "s"), "s", now, nil},
		{"old secret while rotating", rotating, "old", now, nil},
		{"new secret while rotating", rotating, "new", now, nil},
		{"wrong secret", rotating, "other", now, signature.ErrMismatch},
		{"late", signature.Sign(now, body, "s"), "s", now.Add(301 * time.Second), signature.ErrTooOld},
		{"early", signature.Sign(now, body, "s"), "s", now.Add(-301 * time.Second), signature.ErrTooOld},
		{"within tolerance", signature.Sign(now, body, "s"), "s", now.Add(299 * time.Second), nil},
		{"body changed", signature.Sign(now, []byte(`{"id":"y"}`), "s"), "s", now, signature.ErrMismatch},
		{"t changed", strings.Replace(signature.Sign(now, body, "s"), "t=1700000000", "t=1700000001", 1), "s", now, signature.ErrMismatch},
		{"no v1", "t=1700000000", "s", now, signature.ErrMalformed},
		{"no t", "v1=00", "s", now, signature.ErrMalformed},
		{"garbage", "hello", "s", now, signature.ErrMalformed},
		{"bad hex", "t=1700000000,v1=zz", "s", now, signature.ErrMalformed},
		{"other schemes ignored", signature.Sign(now, body, "s") + ",v0=abc", "s", now, nil},
	}
	for _, c := range cases {
		err := signature.Verify(body, c.header, c.secret, signature.DefaultTolerance, c.at)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

// A receiver reads the raw body, verifies it before parsing it, and dedupes
// on the event's id (delivery is at least once).
func Example() {
	secret := "whsec_..." // from POST /admin/webhooks
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		if err := signature.Verify(body, r.Header.Get(signature.Header), secret, signature.DefaultTolerance, time.Now()); err != nil {
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		// json.Unmarshal(body, &event); skip it if event.ID was seen; act on it.
		w.WriteHeader(http.StatusNoContent)
	})
	body := []byte(`{"id":"0b5e0c0e-8f8a-4a55-9a3c-6e1f3f1f0a11","type":"hold.confirmed"}`)
	req := httptest.NewRequest(http.MethodPost, "/holdfast", bytes.NewReader(body))
	req.Header.Set(signature.Header, signature.Sign(time.Now(), body, secret))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output: 204
}
