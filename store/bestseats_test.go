package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// rowsEvent is an event of one category whose section "A" has rows of the
// given lengths, all free.
func rowsEvent(t *testing.T, s *store.Store, lengths ...int) (ev, cat int64) {
	t.Helper()
	total := 0
	for _, n := range lengths {
		total += n
	}
	return mapEvent(t, s, total, func(cat int64) sale.SeatMap {
		sec := sale.Section{Name: "A"}
		for r, n := range lengths {
			sec.Rows = append(sec.Rows, seatRow(fmt.Sprint(r+1), n, cat))
		}
		return sale.SeatMap{Sections: []sale.Section{sec}}
	})
}

// When no row has the seats side by side, the seats are taken across rows
// so that no single seat is left stranded when a choice allows it: four of
// rows of 3, 2 and 2 are rows 2 and 3, not row 1 and one seat of row 2.
func TestBestAvailableAcrossRowsStrandsNoSeat(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev, cat := rowsEvent(t, s, 3, 2, 2)
	outs := holdSeats(t, s, ev, bestRequest(ev, "a@example.com", cat, 4))
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"A-2-1", "A-2-2", "A-3-1", "A-3-2"}) {
		t.Fatalf("four of rows of 3, 2 and 2: %v %v, want rows 2 and 3", o.Hold.Seats, o.Err)
	}
	// A single seat already stranded is taken before a run is split, and
	// a run is split only so that two or more are left.
	ev, cat = rowsEvent(t, s, 1, 5, 3)
	outs = holdSeats(t, s, ev, bestRequest(ev, "b@example.com", cat, 7)) // 1 + 5 + 1 of 3
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"A-1-1", "A-2-1", "A-2-2", "A-2-3", "A-2-4", "A-2-5", "A-3-1"}) {
		t.Fatalf("seven of rows of 1, 5 and 3: %v %v", o.Hold.Seats, o.Err)
	}
	audit(t, s, ev)
}

// The first row in the map's order that fits is the one taken, even when
// the rows before it fill more than the part of the map first read (the
// window): section A's 30 rows of 3 cannot take a pair without stranding
// a seat, and its row 31 can, before section B's row.
func TestBestAvailableLooksPastTheWindowBeforeTheNextSection(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev, cat := mapEvent(t, s, 110, func(cat int64) sale.SeatMap {
		a := sale.Section{Name: "A"}
		for r := 1; r <= 30; r++ {
			a.Rows = append(a.Rows, seatRow(fmt.Sprint(r), 3, cat))
		}
		a.Rows = append(a.Rows, seatRow("31", 10, cat))
		b := sale.Section{Name: "B", Rows: []sale.Row{seatRow("1", 10, cat)}}
		return sale.SeatMap{Sections: []sale.Section{a, b}}
	})
	outs := holdSeats(t, s, ev, bestRequest(ev, "a@example.com", cat, 2))
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"A-31-1", "A-31-2"}) {
		t.Fatalf("a pair: %v %v, want A-31-1 A-31-2", o.Hold.Seats, o.Err)
	}
}

// strandedBy counts the free seats after that have no free neighbour in
// their row and had one before: the seats a pick left stranded (one
// stranded already is not the pick's doing).
func strandedBy(before, after [][]bool) int {
	alone := func(row []bool, i int) bool {
		return row[i] && (i == 0 || !row[i-1]) && (i == len(row)-1 || !row[i+1])
	}
	n := 0
	for r, row := range after {
		for i := range row {
			if alone(row, i) && !alone(before[r], i) {
				n++
			}
		}
	}
	return n
}

// fewestStranded is the fewest seats any choice of q free seats leaves
// stranded (strandedBy): in one row side by side, when some row has q side by side (the
// contract's first rule: together is then true), else anywhere. ok is
// false with fewer than q free.
func fewestStranded(rows [][]bool, q int) (best int, together, ok bool) {
	type seat struct{ r, i int }
	var free []seat
	for r, row := range rows {
		for i, f := range row {
			if f {
				free = append(free, seat{r, i})
			}
		}
	}
	if len(free) < q {
		return 0, false, false
	}
	try := func(pick []seat) {
		after := make([][]bool, len(rows))
		for r := range rows {
			after[r] = slices.Clone(rows[r])
		}
		for _, p := range pick {
			after[p.r][p.i] = false
		}
		if n := strandedBy(rows, after); !ok || n < best {
			best, ok = n, true
		}
	}
	for r, row := range rows {
		for i := 0; i+q <= len(row); i++ {
			if !slices.Contains(row[i:i+q], false) {
				pick := make([]seat, q)
				for k := range pick {
					pick[k] = seat{r, i + k}
				}
				try(pick)
			}
		}
	}
	if ok {
		return best, true, true
	}
	var walk func(from int, pick []seat)
	walk = func(from int, pick []seat) {
		if len(pick) == q {
			try(pick)
			return
		}
		for k := from; k <= len(free)-(q-len(pick)); k++ {
			walk(k+1, append(pick, free[k]))
		}
	}
	walk(0, nil)
	return best, false, ok
}

// Best available on random small maps, some seats taken first: the pick
// leaves no more seats stranded than the best choice the rules allow, and
// is side by side in one row when any row can have it. Seeded: a failure
// names the case that shows it.
func TestBestAvailableLeavesNoMoreStrandedThanItMust(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	rng := rand.New(rand.NewPCG(27, 1))
	for c := range 120 {
		lengths := make([]int, 1+rng.IntN(5))
		for r := range lengths {
			lengths[r] = 1 + rng.IntN(7)
		}
		ev, cat := rowsEvent(t, s, lengths...)
		rows := make([][]bool, len(lengths))
		var taken []string
		for r, n := range lengths {
			rows[r] = make([]bool, n)
			for i := range rows[r] {
				rows[r][i] = rng.IntN(3) > 0
				if !rows[r][i] {
					taken = append(taken, fmt.Sprintf("A-%d-%d", r+1, i+1))
				}
			}
		}
		if len(taken) > 0 {
			if o := holdSeats(t, s, ev, seatsRequest(ev, "first@example.com", taken...))[0]; o.Err != nil {
				t.Fatalf("case %d: taking %v: %v", c, taken, o.Err)
			}
		}
		q := 1 + rng.IntN(5)
		want, together, ok := fewestStranded(rows, q)
		o := holdSeats(t, s, ev, bestRequest(ev, "best@example.com", cat, q))[0]
		if !ok {
			if o.Err == nil {
				t.Fatalf("case %d: rows %v, %d asked: held %v with fewer free", c, rows, q, o.Hold.Seats)
			}
			continue
		}
		if o.Err != nil {
			t.Fatalf("case %d: rows %v, %d asked: %v", c, rows, q, o.Err)
		}
		picked := slices.Clone(rows)
		for r := range picked {
			picked[r] = slices.Clone(rows[r])
		}
		for k, id := range o.Hold.Seats {
			var r, i, r0, i0 int
			if _, err := fmt.Sscanf(id, "A-%d-%d", &r, &i); err != nil || !picked[r-1][i-1] {
				t.Fatalf("case %d: picked %s, not a free seat (%v)", c, id, err)
			}
			fmt.Sscanf(o.Hold.Seats[0], "A-%d-%d", &r0, &i0)
			if together && (r != r0 || i != i0+k) {
				t.Fatalf("case %d: rows %v, %d asked: %v, not side by side though a row has them", c, rows, q, o.Hold.Seats)
			}
			picked[r-1][i-1] = false
		}
		if got := strandedBy(rows, picked); got > want {
			t.Fatalf("case %d: free %v, %d asked: %v leaves %d stranded, a choice leaves %d", c, rows, q, o.Hold.Seats, got, want)
		}
	}
}

// A section the map does not have is not a sold-out one: the buyer must
// be able to tell a typo from the end of the sale.
func TestBestAvailableOfNoSuchSectionIsNotFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev, cat := seatedEvent(t, s, 1, 2)
	in := func(section string, qty int) hold.Request {
		r := bestRequest(ev, "a@example.com", cat, qty)
		r.Order.Best.Section = section
		return r
	}
	outs := holdSeats(t, s, ev, in("Z", 1), in("A", 3), in("A", 2))
	if err := outs[0].Err; !errors.Is(err, problem.NotFound) || !strings.Contains(err.Error(), `"Z"`) {
		t.Fatalf("a section the map does not have: %v, want not_found naming it", err)
	}
	if err := outs[1].Err; !errors.Is(err, problem.SoldOut) {
		t.Fatalf("three of section A's two: %v, want sold_out", err)
	}
	if o := outs[2]; o.Err != nil || len(o.Hold.Seats) != 2 {
		t.Fatalf("two of section A: %v %v", o.Hold.Seats, o.Err)
	}
}
