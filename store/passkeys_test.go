package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

func keyring(t *testing.T, s *store.Store) *pass.Keyring {
	t.Helper()
	k, err := pass.NewKeyring(context.Background(), s, pass.Options{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func kids(t *testing.T, k *pass.Keyring) []string {
	t.Helper()
	var set pass.JWKS
	if err := json.Unmarshal(k.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range set.Keys {
		out = append(out, j.Kid)
	}
	return out
}

func signedBy(t *testing.T, tok string) string {
	t.Helper()
	p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := p.Header["kid"].(string)
	return kid
}

func somePass(ev int64, place, email string) pass.Claims {
	return pass.Claims{EventID: ev, PlaceID: place, Email: email, Cap: 10, ExpiresAt: time.Now().Add(10 * time.Minute)}
}

func mustSign(t *testing.T, k *pass.Keyring, c pass.Claims) string {
	t.Helper()
	tok, err := k.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestKeyringsStartingTogetherShareOneKey starts many keyrings on one
// database at once, as instances of a deployment would: exactly one key is
// made, and a pass any of them signs every other verifies.
func TestKeyringsStartingTogetherShareOneKey(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	const n = 8
	rings := make([]*pass.Keyring, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rings[i], errs[i] = pass.NewKeyring(context.Background(), s, pass.Options{}, quietLog())
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("keyring %d: %v", i, err)
		}
	}
	var rows int
	if err := s.DB().GetContext(context.Background(), &rows, `SELECT count(*) FROM pass_keys`); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d keyrings starting together made %d keys, want 1", n, rows)
	}
	tok := mustSign(t, rings[0], somePass(1, "p", "a@example.com"))
	for i, k := range rings {
		if got := kids(t, k); len(got) != 1 || got[0] != signedBy(t, tok) {
			t.Errorf("keyring %d publishes %v, want the one key %s", i, got, signedBy(t, tok))
		}
		if _, err := k.Verify(tok); err != nil {
			t.Errorf("keyring %d refuses keyring 0's pass: %v", i, err)
		}
	}
}

// TestRotationSignsWithTheNewKeyAndKeepsTheOld rotates the key shared by
// two instances: the new key is published before it signs, then signs on
// both; passes of the old key verify until its grace ends.
func TestRotationSignsWithTheNewKeyAndKeepsTheOld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	a, b := keyring(t, s), keyring(t, s)
	oldPass := mustSign(t, a, somePass(1, "p", "a@example.com"))
	oldKid := signedBy(t, oldPass)

	// Published for an hour first: both instances know the new key, and
	// still sign with the old one.
	pending, err := pass.Rotate(ctx, s, time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*pass.Keyring{a, b} {
		if err := k.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got := kids(t, k); len(got) != 2 {
			t.Errorf("after rotation the JWK Set has %v, want the old and the new key", got)
		}
		if kid := signedBy(t, mustSign(t, k, somePass(1, "p", "a@example.com"))); kid != oldKid {
			t.Errorf("a key published for an hour signs already (%s, want %s)", kid, oldKid)
		}
	}

	// A rotation that signs at once (publish 0): the newest key signs on
	// both instances; the old pass still verifies, within its grace.
	next, err := pass.Rotate(ctx, s, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*pass.Keyring{a, b} {
		if err := k.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	newPass := mustSign(t, a, somePass(1, "p", "a@example.com"))
	if kid := signedBy(t, newPass); kid != next.ID {
		t.Errorf("after rotation a pass is signed by %s, want the new key %s (not %s or %s)", kid, next.ID, oldKid, pending.ID)
	}
	if _, err := b.Verify(newPass); err != nil {
		t.Errorf("the other instance refuses a pass of the new key: %v", err)
	}
	if _, err := b.Verify(oldPass); err != nil {
		t.Errorf("a pass of the old key no longer verifies within its grace: %v", err)
	}

	// No grace: the old keys stop verifying once the instances refresh.
	if _, err := pass.Rotate(ctx, s, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(oldPass); !errors.Is(err, pass.ErrInvalid) {
		t.Errorf("a pass of a retired key: %v, want ErrInvalid", err)
	}
	if _, err := b.Verify(newPass); !errors.Is(err, pass.ErrInvalid) {
		t.Errorf("a pass of a key retired with no grace: %v, want ErrInvalid", err)
	}
	if err := s.EnsurePassKey(ctx, mustKey(t)); err != nil {
		t.Fatal(err)
	}
	var current int
	if err := s.DB().GetContext(ctx, &current, `SELECT count(*) FROM pass_keys WHERE retired_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if current != 1 {
		t.Errorf("%d current keys after rotations and a restart, want 1", current)
	}
}

func mustKey(t *testing.T) pass.Key {
	t.Helper()
	k, err := pass.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// queued gives the event a waiting room.
func queued(t *testing.T, s *store.Store, ev int64) {
	t.Helper()
	if _, err := s.DB().ExecContext(context.Background(), `UPDATE events SET queue_admit_per_second = 50, queue_pass_ttl_seconds = 600 WHERE id = $1`, ev); err != nil {
		t.Fatal(err)
	}
}

func withPass(r hold.Request, g pass.Gate) hold.Request {
	r.Order.Pass = g
	return r
}

// TestAQueuedEventTakesHoldsOnlyWithAPass holds both batch paths (one call
// of hold_batch, and the transaction batches with keys take) to the
// waiting room's rules.
func TestAQueuedEventTakesHoldsOnlyWithAPass(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"one call", "transaction"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t)
			if path == "transaction" {
				s.UseTxForAllBatches()
			}
			open, ev := newEvent(t, s, 100), newEvent(t, s, 100)
			queued(t, s, ev)
			expired := pass.Gate{Err: pass.ErrExpired}
			outs, err := s.CreateHolds(ctx, ev, []hold.Request{
				request(ev, "a@example.com", 1),
				withPass(request(ev, "b@example.com", 1), expired),
				withPass(request(ev, "c@example.com", 2), pass.Gate{Place: "place-c"}),
			}, time.Minute, noRender)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range []error{pass.ErrRequired, pass.ErrExpired, nil} {
				if !errors.Is(outs[i].Err, want) || (want == nil && outs[i].Err != nil) {
					t.Errorf("request %d: %v, want %v", i, outs[i].Err, want)
				}
			}
			if got := stock(t, s, ev); got != 98 {
				t.Errorf("stock %d, want 98: refused requests took nothing", got)
			}
			var place string
			if err := s.DB().GetContext(ctx, &place, `SELECT queue_place FROM bookings WHERE hold_id = $1`, outs[2].Hold.ID); err != nil || place != "place-c" {
				t.Errorf("the hold's queue_place = %q (%v), want place-c", place, err)
			}

			// Another hold with the pass while the first is pending: fine.
			// Once one is confirmed, the pass is used.
			more, err := s.CreateHolds(ctx, ev, []hold.Request{withPass(request(ev, "c@example.com", 1), pass.Gate{Place: "place-c"})}, time.Minute, noRender)
			if err != nil || more[0].Err != nil {
				t.Fatalf("a second hold with a pass not yet used: %v %v", err, more[0].Err)
			}
			if _, err := s.Confirm(ctx, outs[2].Hold.ID, nil, noRender); err != nil {
				t.Fatal(err)
			}
			used, err := s.CreateHolds(ctx, ev, []hold.Request{
				withPass(request(ev, "c@example.com", 1), pass.Gate{Place: "place-c"}),
				withPass(request(ev, "d@example.com", 1), pass.Gate{Place: "place-d"}),
			}, time.Minute, noRender)
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(used[0].Err, pass.ErrUsed) {
				t.Errorf("a hold with a used pass: %v, want ErrUsed", used[0].Err)
			}
			if used[1].Err != nil {
				t.Errorf("another place's pass in the same batch: %v, want a hold", used[1].Err)
			}
			// Its booking cancelled (a refund), the pass stays used: the
			// tickets that come back are the queue's.
			if _, err := s.Cancel(ctx, outs[2].Hold.ID); err != nil {
				t.Fatal(err)
			}
			again, err := s.CreateHolds(ctx, ev, []hold.Request{withPass(request(ev, "c@example.com", 1), pass.Gate{Place: "place-c"})}, time.Minute, noRender)
			if err != nil || !errors.Is(again[0].Err, pass.ErrUsed) {
				t.Errorf("a hold with a pass whose booking was cancelled: %v %v, want ErrUsed", err, again[0].Err)
			}

			// An event without a queue ignores the header's outcome.
			free, err := s.CreateHolds(ctx, open, []hold.Request{
				request(open, "a@example.com", 1),
				withPass(request(open, "b@example.com", 1), pass.Gate{Err: pass.ErrInvalid}),
			}, time.Minute, noRender)
			if err != nil || free[0].Err != nil || free[1].Err != nil {
				t.Errorf("holds on an event without a queue: %v %v %v", err, free[0].Err, free[1].Err)
			}
			audit(t, s, ev)
		})
	}
}

func TestAQueuedEventBooksOnlyWithAPass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	ev := newEvent(t, s, 10)
	queued(t, s, ev)
	book := func(g pass.Gate) error {
		t.Helper()
		out, err := s.BookLocked(ctx, sale.Order{EventID: ev, Email: "a@example.com", Quantity: 1, Pass: g}, 0, nil, nil)
		if err != nil {
			t.Fatalf("BookLocked: %v", err)
		}
		return out.Err
	}
	if err := book(pass.Gate{}); !errors.Is(err, pass.ErrRequired) {
		t.Errorf("no pass: %v, want ErrRequired", err)
	}
	if err := book(pass.Gate{Err: pass.ErrInvalid}); !errors.Is(err, pass.ErrInvalid) {
		t.Errorf("a bad pass: %v, want ErrInvalid", err)
	}
	if err := book(pass.Gate{Place: "p1"}); err != nil {
		t.Errorf("a good pass: %v, want a booking", err)
	}
	// /book/safe confirms at once: the pass is used.
	if err := book(pass.Gate{Place: "p1"}); !errors.Is(err, pass.ErrUsed) {
		t.Errorf("the same pass again: %v, want ErrUsed", err)
	}
	// Cancelled (a refund), the booking still used the pass.
	var hold uuid.UUID
	if err := s.DB().GetContext(ctx, &hold, `SELECT hold_id FROM bookings WHERE event_id = $1 AND queue_place = 'p1'`, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, hold); err != nil {
		t.Fatal(err)
	}
	if err := book(pass.Gate{Place: "p1"}); !errors.Is(err, pass.ErrUsed) {
		t.Errorf("the pass of a cancelled booking: %v, want ErrUsed", err)
	}
	if got := stock(t, s, ev); got != 10 {
		t.Errorf("stock %d, want 10: one booking, cancelled", got)
	}
}

// TestARotatedKeyReachesARunningKeyring rotates the key behind an
// instance's back: its keyring, refreshing on its own, verifies the new
// key's passes within a refresh.
func TestARotatedKeyReachesARunningKeyring(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	running, err := pass.NewKeyring(ctx, s, pass.Options{Refresh: 20 * time.Millisecond}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	go running.Run(ctx)
	other := keyring(t, s)
	if _, err := pass.Rotate(ctx, s, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := other.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tok := mustSign(t, other, somePass(1, "p", "a@example.com"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := running.Verify(tok)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a running keyring never learnt the rotated key: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A pass good when its request came but expired by the time the request's
// statement runs (it waited in a queue, or for the event's lock) takes no
// hold: pass_expired, as if it had come expired.
func TestAPassThatExpiredWhileItsRequestWaitedTakesNoHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	ev := newEvent(t, s, 10)
	queued(t, s, ev)
	lapsed := pass.Gate{Place: "place-a", Expires: time.Now().Add(-time.Millisecond)}
	good := pass.Gate{Place: "place-b", Expires: time.Now().Add(time.Minute)}
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{
		withPass(request(ev, "a@example.com", 1), lapsed),
		withPass(request(ev, "b@example.com", 1), good),
	}, time.Minute, noRender)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(outs[0].Err, pass.ErrExpired) || outs[1].Err != nil {
		t.Fatalf("a pass expired while waiting: %v; a good one: %v", outs[0].Err, outs[1].Err)
	}
	out, err := s.BookLocked(ctx, sale.Order{EventID: ev, Email: "a@example.com", Quantity: 1, Pass: lapsed}, 0, nil, nil)
	if err != nil || !errors.Is(out.Err, pass.ErrExpired) {
		t.Fatalf("/book/safe with a pass expired while waiting: %v %v", err, out.Err)
	}
	if got := stock(t, s, ev); got != 9 {
		t.Fatalf("stock %d, want 9: only the good pass held", got)
	}
}
