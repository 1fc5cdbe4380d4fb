package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type recorder struct {
	name string
	log  *[]string
	fail error
}

func (r recorder) Start(context.Context) error { *r.log = append(*r.log, "start "+r.name); return nil }
func (r recorder) Stop(context.Context) error  { *r.log = append(*r.log, "stop "+r.name); return r.fail }

func TestAGroupStopsInTheReverseOrderOfStart(t *testing.T) {
	t.Parallel()
	var log []string
	var g Group
	for _, n := range []string{"keys", "sweeper", "batcher"} {
		var fail error
		if n == "sweeper" {
			fail = errors.New("stuck")
		}
		if err := g.Start(context.Background(), n, recorder{name: n, log: &log, fail: fail}); err != nil {
			t.Fatal(err)
		}
	}
	err := g.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "stop sweeper: stuck") {
		t.Errorf("Stop: got %v, want the sweeper's error", err)
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	got, want := fmt.Sprint(log), "[start keys start sweeper start batcher stop batcher stop sweeper stop keys]"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestALoopOutlivesItsStartContextUntilStopped(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	l := NewLoop(func(ctx context.Context) {
		close(ran)
		<-ctx.Done()
	})
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-ran
	cancel()
	select {
	case <-l.done:
		t.Fatal("the loop ended with its start context")
	case <-time.After(50 * time.Millisecond):
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestALoopThatWillNotEndIsReported(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	l := NewLoop(func(context.Context) { <-release })
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop: got %v, want the deadline", err)
	}
}
