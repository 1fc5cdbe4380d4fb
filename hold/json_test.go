package hold_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/money"
)

// holds are a Hold in each of its shapes: every optional field set and
// unset, empty and nil lists, and strings that need escaping.
func holds() []hold.Hold {
	created := time.UnixMilli(1764658800456).UTC()
	expires := created.Add(5 * time.Minute)
	confirmed := time.Date(2026, 12, 6, 21, 0, 0, 123456789, time.FixedZone("east", 3600))
	items := []hold.Item{{CategoryID: 7, Quantity: 2, Price: 2999, Amount: 5998}, {CategoryID: 8, Quantity: 1, Price: -5, Amount: -5}}
	return []hold.Hold{
		{},
		{ID: uuid.MustParse("0193a3c4-5d6e-7f80-9a1b-2c3d4e5f6071"), EventID: 42, UserEmail: "buyer@example.com", Quantity: 2,
			TotalAmount: 5998, Status: hold.StatusPending, ExpiresAt: expires, CreatedAt: created, Items: items[:1]},
		{ID: uuid.New(), EventID: 1, UserEmail: `<"é"\u2028&>@example.com`, Quantity: 3, TotalAmount: money.Cents(-1 << 63),
			Status: hold.StatusConfirmed, ExpiresAt: expires, CreatedAt: created, ConfirmedAt: &confirmed, Items: items,
			Seats: []string{"A-1-1", `B-"2"-<3>`}, Place: "not shown"},
		{ID: uuid.New(), Status: hold.StatusReleased, Items: []hold.Item{}, Seats: []string{}},
	}
}

func TestAHoldAppendsWhatJSONMarshalWrites(t *testing.T) {
	t.Parallel()
	for _, h := range holds() {
		want, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

// FuzzHoldJSON holds AppendJSON to json.Marshal over the values a field
// can take.
func FuzzHoldJSON(f *testing.F) {
	f.Add("a@example.com", int64(5998), int64(1764658800456), int64(2), "A-1-1")
	f.Add("<\"\\\u2028>", int64(-1), int64(-62135596800000), int64(0), "")
	f.Fuzz(func(t *testing.T, email string, cents, ms, n int64, seat string) {
		at := time.UnixMilli(ms % 253402300799000).UTC() // years json.Marshal writes
		h := hold.Hold{ID: uuid.New(), EventID: n, UserEmail: email, Quantity: int(n), TotalAmount: money.Cents(cents),
			Status: hold.Status(seat), ExpiresAt: at, CreatedAt: at.Add(time.Duration(n)), ConfirmedAt: &at,
			Items: []hold.Item{{CategoryID: n, Quantity: int(n), Price: money.Cents(cents), Amount: money.Cents(cents * 2)}}}
		if seat != "" {
			h.Seats = []string{seat, email}
		}
		want, err := json.Marshal(h)
		if err != nil {
			return
		}
		if got := h.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkHoldJSON compares a hold's answer by reflection (json.Marshal)
// with AppendJSON: go test -bench HoldJSON ./hold.
func BenchmarkHoldJSON(b *testing.B) {
	h := holds()[1]
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = h.AppendJSON(make([]byte, 0, 512))
		}
	})
}
