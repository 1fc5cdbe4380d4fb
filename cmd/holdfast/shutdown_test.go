package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/store"
)

// On SIGTERM (a cancelled context, as signal.NotifyContext gives serve),
// requests already queued for a batch are served before the process goes:
// none is dropped without an answer.
func TestShutdownAnswersEveryQueuedRequest(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = testenv.DatabaseURL(t)
	cfg.RedisURL, cfg.RedisPrefix = testenv.Redis(t)
	cfg.LockWait = 20 * time.Second
	cfg.ClientCap = 0 // every request comes from 127.0.0.1

	db, err := store.Open(context.Background(), cfg.DatabaseURL, store.DBOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ev int64
	if err := db.QueryRow(`INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
		VALUES ('s', now(), 100, 100, 1) RETURNING id`).Scan(&ev); err != nil {
		t.Fatal(err)
	}

	ctx, sigterm := context.WithCancel(context.Background())
	defer sigterm()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	logs := &testenv.LogBuffer{}
	go func() { done <- serve(ctx, cfg, newLogger(logs, "info"), func(a string) { addrc <- a }) }()
	addr := <-addrc

	// Stall the event: the first batch waits on its row, the crowd queues.
	tx, err := db.BeginTxx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, ev); err != nil {
		t.Fatal(err)
	}
	client := checkedClient(t) // serve's router is out of reach: check against the document
	var wg sync.WaitGroup
	statuses := make(chan int, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"event_id":%d,"user_email":"s%d@example.com","quantity":1}`, ev, i)
			res, err := client.Post("http://"+addr+"/holds", "application/json", strings.NewReader(body))
			if err != nil && strings.Contains(err.Error(), "connection refused") {
				// Never reached the server (a slow goroutine, a closed
				// listener): nothing was queued, nothing dropped.
				statuses <- -1
				return
			}
			if err != nil {
				t.Errorf("a queued request got no answer: %v", err)
				statuses <- 0
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			statuses <- res.StatusCode
		}()
	}
	time.Sleep(time.Second) // let the crowd queue
	sigterm()
	time.Sleep(300 * time.Millisecond) // shutdown has begun; the queue is still stalled
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(statuses)
	answered := 0
	for s := range statuses {
		if s == -1 {
			continue
		}
		answered++
		if s != http.StatusCreated && s != http.StatusServiceUnavailable {
			t.Errorf("a queued request got %d, want 201 or 503", s)
		}
	}
	if answered < 20 {
		t.Fatalf("only %d of 30 requests reached the server before the shutdown; the test proved little", answered)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
}
