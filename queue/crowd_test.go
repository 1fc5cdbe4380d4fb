package queue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/store"
)

// TestACrowdJoinsAndPollsAtOnce hammers one event's queue from three
// instances at once, on one Redis and on a Redis Cluster: the store sends
// concurrent joins and polls to Redis together, several to a script call,
// and each caller must still get its own answer. Every email (each joined
// by several callers at once, in two spellings) ends with exactly one
// place, created once; every poll answers the place it asked for, with
// its email's position; and the positions are 1..n with none shared.
func TestACrowdJoinsAndPollsAtOnce(t *testing.T) {
	t.Parallel()
	for _, redisKind := range []string{"single", "cluster"} {
		t.Run(redisKind, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			if redisKind == "cluster" {
				url, _ := testenv.RedisCluster(t)
				rdb, err := store.OpenRedis(url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rdb.Close() })
				w.rdb = rdb
			}
			instances := []*queue.Service{w.instance(), w.instance(), w.instance()}
			// Admitting one place a minute: every place stays waiting.
			ev := w.event(1, nil, 600)
			const emails, joinersPerEmail = 300, 3
			type joined struct {
				p       queue.Place
				created bool
			}
			got := make([][]joined, emails)
			for i := range got {
				got[i] = make([]joined, joinersPerEmail)
			}
			var wg sync.WaitGroup
			for k := range joinersPerEmail {
				for i := range emails {
					wg.Add(1)
					go func() {
						defer wg.Done()
						addr := email(i)
						if k%2 == 1 {
							addr = fmt.Sprintf("BUYER%d@Example.com", i)
						}
						p, created, err := instances[(i+k)%3].Join(context.Background(), ev.ID, addr)
						if err != nil {
							t.Errorf("join %s: %v", addr, err)
							return
						}
						got[i][k] = joined{p, created}
					}()
				}
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			placeOf := make([]string, emails)
			byPlace := map[string]int{}
			for i, answers := range got {
				created := 0
				for _, a := range answers {
					if a.created {
						created++
					}
					if a.p.ID != answers[0].p.ID {
						t.Fatalf("email %d answered places %s and %s", i, answers[0].p.ID, a.p.ID)
					}
				}
				if created != 1 {
					t.Fatalf("email %d: %d joins created a place, want 1", i, created)
				}
				if j, dup := byPlace[answers[0].p.ID]; dup {
					t.Fatalf("emails %d and %d share place %s", j, i, answers[0].p.ID)
				}
				placeOf[i], byPlace[answers[0].p.ID] = answers[0].p.ID, i
			}
			// Every place polled by several callers at once.
			positions := make([]int64, emails)
			for k := range joinersPerEmail {
				for i := range emails {
					wg.Add(1)
					go func() {
						defer wg.Done()
						p, err := instances[(i+k)%3].Get(context.Background(), placeOf[i])
						if err != nil {
							t.Errorf("poll %d: %v", i, err)
							return
						}
						if p.ID != placeOf[i] || p.Status != queue.StatusWaiting || p.Position == nil {
							t.Errorf("poll of %s answered %s, %s, position %d", placeOf[i], p.ID, p.Status, pos(p))
							return
						}
						if k == 0 {
							positions[i] = *p.Position
						}
					}()
				}
			}
			wg.Wait()
			seen := make([]bool, emails+1)
			for i, n := range positions {
				if n < 1 || n > emails || seen[n] {
					t.Fatalf("email %d at position %d: positions must be 1..%d, each once", i, n, emails)
				}
				seen[n] = true
			}
		})
	}
}
