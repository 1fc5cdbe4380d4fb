package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// shownSeats is what the status page's seat map of one event shows: its
// counts, and the colour of chosen seats read back from the canvas.
type shownSeats struct {
	Hidden    bool     `json:"hidden"`
	Available int      `json:"available"`
	Held      int      `json:"held"`
	Sold      int      `json:"sold"`
	Colors    []string `json:"colors"`
	Want      []string `json:"want"`
}

// readSeats reads the seat map of event %d, and the colour of each seat
// in %s (a JSON list of [row index, seat index]) beside the colour its
// status should have (%s, the statuses in order).
const readSeats = `(() => {
	const c = document.querySelector('#events [data-event-id="%d"] .seatmap');
	if (!c) return {hidden: true};
	const cell = Number(c.dataset.cell), ys = (c.dataset.rows || '').split(',').map(Number);
	const g = c.getContext('2d');
	const css = getComputedStyle(document.documentElement);
	const rgb = (hex) => { const d = document.createElement('i'); d.style.color = hex; document.body.append(d);
		const v = getComputedStyle(d).color.replace(/\s/g, ''); d.remove(); return v; };
	const at = %s, kinds = %s;
	return {
		hidden: c.hidden,
		available: Number(c.dataset.available), held: Number(c.dataset.held), sold: Number(c.dataset.sold),
		colors: c.hidden ? [] : at.map(([r, k]) => { const p = g.getImageData(k * cell + 1, ys[r] + 1, 1, 1).data;
			return 'rgb(' + p[0] + ',' + p[1] + ',' + p[2] + ')'; }),
		want: kinds.map((k) => rgb(css.getPropertyValue('--' + k).trim())),
	};
})()`

// TestStatusPageSeatMap sells seats of a venue through the API and watches
// the status page draw them, in a real browser: the seats a hold took in
// the held colour, the sold ones in the confirmed colour, the rest
// available; an event without seats draws no map.
func TestStatusPageSeatMap(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken; c.TicketCap = 0 })
	auth := []string{"Authorization", "Bearer " + testToken}
	plain := ts.newEvent(50, true)
	id, stalls := ts.adminEvent(t, "Concert Hall · Saturday", 600)
	res := ts.do("POST", fmt.Sprintf("/admin/events/%d/categories", id), `{"name":"Balcony","price":"25.00","total_tickets":1}`, auth...)
	var balcony struct {
		ID int64 `json:"id"`
	}
	res.json(t, &balcony)
	// Stalls: 10 rows of 40; Balcony: 5 rows of 40.
	var b strings.Builder
	b.WriteString(`{"sections":[`)
	for si, sec := range []struct {
		name string
		rows int
		cat  int64
	}{{"Stalls", 10, stalls}, {"Balcony", 5, balcony.ID}} {
		if si > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"%s","rows":[`, sec.name)
		for r := 1; r <= sec.rows; r++ {
			if r > 1 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":"%d","seats":[`, r)
			for n := 1; n <= 40; n++ {
				if n > 1 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"number":%d,"category_id":%d}`, n, sec.cat)
			}
			b.WriteString(`]}`)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	ts.putSeats(t, id, b.String(), 600)
	hold := func(body string) seatedHold {
		res := ts.do("POST", "/holds", fmt.Sprintf(`{"event_id":%d,"user_email":"fan@example.com",%s}`, id, body))
		var h seatedHold
		res.json(t, &h)
		if res.Status != 201 {
			t.Fatalf("hold %s: %d %s", body, res.Status, res.Body)
		}
		return h
	}
	// Sold: row 1 of the stalls, 1-10, and 4 in the middle of row 5.
	for _, body := range []string{
		fmt.Sprintf(`"best_available":{"category_id":%d,"quantity":10}`, stalls),
		`"seats":["Stalls-5-19","Stalls-5-20","Stalls-5-21","Stalls-5-22"]`,
	} {
		if res := ts.do("POST", "/holds/"+hold(body).ID+"/confirm", nil); res.Status != 200 {
			t.Fatalf("confirm: %d %s", res.Status, res.Body)
		}
	}
	// Held: the next 6 of row 1, and 3 in the balcony's first row.
	hold(fmt.Sprintf(`"best_available":{"category_id":%d,"quantity":6}`, stalls))
	hold(fmt.Sprintf(`"best_available":{"category_id":%d,"quantity":3,"section":"Balcony"}`, balcony.ID))

	ctx := newBrowser(t)
	browserStep(t, ctx, "open the page", chromedp.Navigate(ts.srv.URL+"/"))
	// Row indexes count every row of the map: the balcony's first is 10.
	at := `[[0,0],[0,9],[0,10],[0,15],[0,16],[4,18],[4,21],[4,22],[10,0],[10,2],[10,3],[14,39]]`
	kinds := `['confirmed','confirmed','held','held','available','confirmed','confirmed','available','held','held','available','available']`
	deadline := time.Now().Add(15 * time.Second)
	var s shownSeats
	for {
		s = browserStep(t, ctx, "read the seat map", chromedp.Evaluate[shownSeats](fmt.Sprintf(readSeats, id, at, kinds)))
		if !s.Hidden && s.Sold == 14 && s.Held == 9 && s.Available == 600-23 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not draw 14 sold, 9 held, 577 available seats within 15s: %+v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range s.Want {
		if s.Colors[i] != s.Want[i] {
			t.Errorf("seat %d of %s is drawn %s, want %s (%s)", i, at, s.Colors[i], s.Want[i], strings.Split(kinds, ",")[i])
		}
	}
	if p := browserStep(t, ctx, "read the plain event", chromedp.Evaluate[shownSeats](fmt.Sprintf(readSeats, plain, `[]`, `[]`))); !p.Hidden {
		t.Errorf("an event without seats draws a map: %+v", p)
	}
	screenshot(t, ctx, "status-page-seats.png")
}
