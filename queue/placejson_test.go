package queue_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/holdfast/holdfast/queue"
)

// places are a Place in each of its shapes: every optional field set and
// unset, and strings that need escaping.
func places() []queue.Place {
	pos, after := int64(41), 3
	tok := "eyJhbGciOiJFZERTQSJ9.eyJhdWQiOiI3In0.c2ln"
	odd := `<"odd\pass">` + "\u2028é"
	exp := time.UnixMilli(1764659400123).UTC()
	joined := time.UnixMilli(1764658800456).UTC()
	return []queue.Place{
		{},
		{ID: "7-0123456789abcdef0123456789abcdef", EventID: 7, Status: queue.StatusWaiting, Position: &pos, JoinedAt: joined, PollAfterSeconds: &after},
		{ID: "7-0123456789abcdef0123456789abcdef", EventID: 7, Status: queue.StatusWaiting, JoinedAt: joined, PollAfterSeconds: &after},
		{ID: "7-0123456789abcdef0123456789abcdef", EventID: 7, Status: queue.StatusAdmitted, JoinedAt: joined, Pass: &tok, PassExpiresAt: &exp, PollAfterSeconds: &after},
		{ID: "9-x", EventID: -1, Status: queue.Status("left"), JoinedAt: time.Date(2026, 12, 2, 19, 0, 0, 0, time.FixedZone("east", 3600)), Pass: &odd,
			Email: "not@shown.example", AdmittedAt: exp},
	}
}

func TestAPlaceAppendsWhatJSONMarshalWrites(t *testing.T) {
	for _, p := range places() {
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

// BenchmarkPlaceJSON compares a waiting place's answer by reflection
// (json.Marshal) with AppendJSON: go test -bench PlaceJSON ./queue.
func BenchmarkPlaceJSON(b *testing.B) {
	p := places()[1]
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = p.AppendJSON(make([]byte, 0, 512))
		}
	})
}
