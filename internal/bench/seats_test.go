package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Venue of the seated benchmark: 20,000 seats, 200 rows of 100 in 4
// sections of 50 rows.
const (
	venueSections = 4
	venueRows     = 50
	venueSeats    = 100
)

// seatedVenue makes an event of one category whose stock is a map of
// venueSections x venueRows x venueSeats seats, by SQL (the servers run
// without an admin token).
func (e *env) seatedVenue() (ev, cat int64, err error) {
	total := venueSections * venueRows * venueSeats
	if ev, err = e.event(total); err != nil {
		return 0, 0, err
	}
	if err = e.db.QueryRow(`SELECT id FROM categories WHERE event_id = $1`, ev).Scan(&cat); err != nil {
		return 0, 0, err
	}
	_, err = e.db.Exec(`INSERT INTO seats (event_id, id, section, row_name, number, category_id, section_pos, row_pos, seat_pos)
		SELECT $1, chr(65 + s) || '-' || r || '-' || n, chr(65 + s), r::text, n, $2, s, r, n
		FROM generate_series(0, $3 - 1) s, generate_series(1, $4) r, generate_series(1, $5) n`,
		ev, cat, venueSections, venueRows, venueSeats)
	return ev, cat, err
}

// BenchmarkSeatsBestAvailable sells a 20,000-seat venue to 64 clients,
// each asking for the best 2 to 4 seats (a refused 3 or 4 asks again for
// 2), until a pair is refused, and compares the seated holds per second
// with the general admission holds per second of the same server
// (BenchmarkHoldsBatched's 64 clients, run before it in the same run). It
// checks that no seat was held twice and counts what was left.
func BenchmarkSeatsBestAvailable(b *testing.B) {
	ev, cat, err := e.seatedVenue()
	if err != nil {
		b.Fatal(err)
	}
	const clients = 64
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	type answer struct {
		Seats []string `json:"seats"`
		Code  string   `json:"code"`
	}
	var (
		mu       sync.Mutex
		holders  = map[string]int{}
		lat      []time.Duration
		holds    atomic.Int64
		other    atomic.Int64
		lastHold atomic.Int64
		split    atomic.Int64
	)
	start := time.Now()
	pid := e.batched.cmd.Process.Pid
	e.resetStatements()
	before := e.cpuNow(pid)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				qty := 2 + rand.IntN(3)
			again:
				body := fmt.Appendf(nil, `{"event_id":%d,"user_email":"s%d-%d@example.com","best_available":{"category_id":%d,"quantity":%d}}`, ev, c, i, cat, qty)
				t0 := time.Now()
				res, err := client.Post(e.batched.base+"/holds", "application/json", bytes.NewReader(body))
				if err != nil {
					other.Add(1)
					return
				}
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				var a answer
				_ = json.Unmarshal(raw, &a)
				switch {
				case res.StatusCode == 201:
					d := time.Since(t0)
					holds.Add(1)
					lastHold.Store(int64(time.Since(start)))
					mu.Lock()
					lat = append(lat, d)
					for _, s := range a.Seats {
						holders[s]++
					}
					mu.Unlock()
					if !sideBySide(a.Seats) {
						split.Add(1)
					}
				case res.StatusCode == 409 && a.Code == "sold_out" && qty > 2:
					qty = 2
					goto again
				case res.StatusCode == 409 && a.Code == "sold_out":
					return
				case res.StatusCode == 429:
					goto again
				default:
					other.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Duration(lastHold.Load())
	cpu := e.cpuNow(pid).minus(before)
	// Where the time goes: the database's eight costliest statements,
	// nested ones (inside hold_seats) included.
	statements := e.topStatements(elapsed, 8, 100)
	twice := 0
	for _, n := range holders {
		if n > 1 {
			twice++
		}
	}
	var free, singles int
	if err := e.db.QueryRow(`WITH f AS (
			SELECT s.section_pos, s.row_pos, s.seat_pos,
			       s.seat_pos - row_number() OVER (PARTITION BY s.section_pos, s.row_pos ORDER BY s.seat_pos) AS grp
			FROM seats s WHERE s.event_id = $1
			  AND NOT EXISTS (SELECT 1 FROM booking_seats b WHERE b.event_id = s.event_id AND b.seat_id = s.id AND b.live))
		SELECT (SELECT count(*) FROM f),
		       (SELECT count(*) FROM (SELECT 1 FROM f GROUP BY section_pos, row_pos, grp HAVING count(*) = 1) x)`, ev).
		Scan(&free, &singles); err != nil {
		b.Fatal(err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	rate := float64(holds.Load()) / elapsed.Seconds()
	ga := "-"
	e.mu.Lock()
	for _, r := range e.results {
		if r.Name == "POST /holds (batched)" && r.Clients == clients && r.rate() > 0 {
			ga = fmt.Sprintf("%.0f/s, seated x %.2f", r.rate(), rate/r.rate())
		}
	}
	e.mu.Unlock()
	perHold := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(1, holds.Load())) }
	e.note("seats: a %d-seat venue sold to %d clients asking best available for 2-4 seats: %d holds in %.2fs = %.0f holds/s "+
		"(p50 %.1f ms, p99 %.1f ms); general admission, same server, %d clients: %s; "+
		"seats held twice: %d; held %d of %d seats, %d left (%d single seats between taken ones or a row's end); "+
		"%d holds not side by side in one row; %d other answers; CPU us per hold: holdfast %.0f, postgres %.0f",
		venueSections*venueRows*venueSeats, clients, holds.Load(), elapsed.Seconds(), rate, pct(0.5), pct(0.99), clients, ga,
		twice, len(holders), venueSections*venueRows*venueSeats, free, singles, split.Load(), other.Load(),
		perHold(cpu.server), perHold(cpu.postgres))
	for _, st := range statements {
		e.note("  seats, %d clients: %s", clients, st)
	}
	b.ReportMetric(rate, "holds/s")
	if twice > 0 {
		b.Errorf("%d seats held twice", twice)
	}
}

// sideBySide reports whether seats (ids "section-row-number", in the map's
// order) are neighbours in one row.
func sideBySide(seats []string) bool {
	var first []string
	var n0 int
	for i, s := range seats {
		parts := strings.Split(s, "-")
		if len(parts) != 3 {
			return false
		}
		n, err := strconv.Atoi(parts[2])
		if err != nil {
			return false
		}
		if i == 0 {
			first, n0 = parts, n
			continue
		}
		if parts[0] != first[0] || parts[1] != first[1] || n != n0+i {
			return false
		}
	}
	return true
}
