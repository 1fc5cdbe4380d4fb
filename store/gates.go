package store

import (
	"context"
	"errors"
	"sync"
)

// gates line up one instance's callers of Locks.Lock per event, so that
// only the first of them asks Redis for the event's lock and the others
// wait here, in their order, for their turn.
//
// Without them every caller polled Redis with growing pauses: 200 buyers
// of one hot event on /book/safe sent Redis thousands of attempts a
// second, and each time the lock was given back it lay free for up to a
// pause (32 ms) before the next poll found it, while the booking itself
// takes a few milliseconds. The gate hands the turn over at once, and the
// one caller at its head polls for the instances elsewhere.
//
// A gate opens for good when its head finds Redis unreachable: everyone
// in it goes on at once to its own attempt and the row lock, as when
// there were no gates, rather than each waiting out the timeout of the one
// before it in turn while Redis hangs.
type gates struct {
	mu sync.Mutex
	m  map[int64]*gate
}

type gate struct {
	turn chan struct{} // capacity 1: whoever put the value in has the turn
	open chan struct{} // closed when the gate opened (see gates), under gates.mu
	in   int           // under gates.mu: callers in the gate, with the turn or waiting
}

// passage is one caller's way through a gate. A nil passage (no gate:
// Redis known down) has nothing to leave or open.
type passage struct {
	gs   *gates
	ev   int64
	g    *gate
	turn bool // the caller has the turn
	left bool
}

// enter waits in ev's gate until the caller has its turn or the gate has
// opened. With try it does not wait: a turn another holds is errTurnTaken.
// It returns ctx's error if ctx ends first.
func (gs *gates) enter(ctx context.Context, ev int64, try bool) (*passage, error) {
	gs.mu.Lock()
	if gs.m == nil {
		gs.m = map[int64]*gate{}
	}
	g := gs.m[ev]
	if g == nil {
		g = &gate{turn: make(chan struct{}, 1), open: make(chan struct{})}
		gs.m[ev] = g
	}
	g.in++
	gs.mu.Unlock()

	p := &passage{gs: gs, ev: ev, g: g}
	if try {
		select {
		case g.turn <- struct{}{}:
			p.turn = true
		default:
			if !g.isOpen() {
				p.leave()
				return nil, errTurnTaken
			}
		}
		return p, nil
	}
	// A channel's blocked senders are served in the order they came: the
	// turn goes first come, first served.
	select {
	case g.turn <- struct{}{}:
		p.turn = true
		return p, nil
	case <-g.open:
		return p, nil
	case <-ctx.Done():
		p.leave()
		return nil, ctx.Err()
	}
}

// isOpen reports whether g has opened.
func (g *gate) isOpen() bool {
	select {
	case <-g.open:
		return true
	default:
		return false
	}
}

// errTurnTaken is enter's answer, with try, to a turn another holds.
var errTurnTaken = errors.New("store: another caller has the turn")

// openGate lets everyone in p's gate through at once, and takes the gate
// from the map so that callers who come once Redis is back line up anew.
func (p *passage) openGate() {
	if p == nil {
		return
	}
	p.gs.mu.Lock()
	defer p.gs.mu.Unlock()
	if !p.g.isOpen() {
		close(p.g.open)
		if p.gs.m[p.ev] == p.g {
			delete(p.gs.m, p.ev)
		}
	}
}

// leave gives up the caller's turn, if it has it, and its place; again,
// it does nothing.
func (p *passage) leave() {
	if p == nil || p.left {
		return
	}
	p.left = true
	if p.turn {
		p.turn = false
		<-p.g.turn
	}
	p.gs.mu.Lock()
	defer p.gs.mu.Unlock()
	p.g.in--
	if p.g.in == 0 && p.gs.m[p.ev] == p.g {
		delete(p.gs.m, p.ev)
	}
}

// waiting reports whether a caller waits in ev's gate behind the one
// with the turn.
func (gs *gates) waiting(ev int64) bool {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.m[ev]
	return g != nil && !g.isOpen() && g.in > 1
}
