package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestAPlaceFromJoinToDone follows one buyer through the waiting room with
// the service's own pass keys: join, admitted with a pass, a hold with it,
// the confirm, and the place done; the pass then takes nothing more.
func TestAPlaceFromJoinToDone(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ev := ts.queuedEvent(1000, "")
	res := ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), `{"user_email":"ada@example.com"}`)
	var p placeBody
	res.json(t, &p)
	if res.Status != 201 {
		t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	time.Sleep(20 * time.Millisecond)
	ts.app.admitter.Run(context.Background())
	res = ts.do("GET", "/queue/"+p.ID, nil)
	res.json(t, &p)
	if p.Status != "admitted" || p.Pass == nil {
		t.Fatalf("poll: %d %s, want admitted with a pass", res.Status, res.Body)
	}
	pass := *p.Pass

	expectError(t, "no pass", ts.do("POST", "/holds", order(ev, "ada@example.com", 1)), 403, "queue_required")
	expectError(t, "another email", ts.do("POST", "/holds", order(ev, "bob@example.com", 1), "Queue-Pass", pass), 403, "pass_invalid")
	res = ts.do("POST", "/holds", order(ev, "ada@example.com", 2), "Queue-Pass", pass)
	var h holdBody
	res.json(t, &h)
	if res.Status != 201 {
		t.Fatalf("hold with the pass: %d %s", res.Status, res.Body)
	}
	if res := ts.do("POST", "/holds/"+h.ID+"/confirm", nil); res.Status != 200 {
		t.Fatalf("confirm: %d %s", res.Status, res.Body)
	}
	res = ts.do("GET", "/queue/"+p.ID, nil)
	res.json(t, &p)
	if p.Status != "done" || p.Pass != nil {
		t.Errorf("poll after the confirm: %s, want done without a pass", res.Body)
	}
	expectError(t, "the pass again", ts.do("POST", "/holds", order(ev, "ada@example.com", 1), "Queue-Pass", pass), 403, "pass_used")
	expectError(t, "book with it", ts.do("POST", "/book/safe", order(ev, "ada@example.com", 1), "Queue-Pass", pass), 403, "pass_used")
	if out, ok := ts.check(ev); !ok {
		t.Errorf("check: %s", out)
	}
}
