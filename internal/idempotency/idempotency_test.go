package idempotency_test

import (
	"testing"

	"github.com/holdfast/holdfast/internal/idempotency"
)

func TestKeepOnlyAnswersARetryMustSee(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]bool{
		200: true, 201: true, 409: true, 410: true, 422: true,
		400: false, 403: false, 404: false, 415: false, 429: false, 500: false, 503: false,
	} {
		if got := (idempotency.Response{Status: status}).Keep(); got != want {
			t.Errorf("Keep(%d) = %v, want %v", status, got, want)
		}
	}
}
