package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// answer is one HTTP exchange the load generator had.
type answer struct {
	start, end time.Time
	inst       int
	op         string // "hold", "confirm", "release"
	status     int    // 0: no HTTP answer (refused, reset, timed out)
	code       string // the error body's code
	event      int64
	requestID  string
}

// record is everything one client saw.
type record struct {
	answers []answer
	// confirmed are the holds this client was told are confirmed.
	confirmed []string
	// unsure are the holds whose every confirm got no definite answer (no
	// answer, 429 or 503): the failover suite asks again, with the key.
	unsure []string
	// notConfirmed are the holds this client was told are not confirmed
	// (the last confirm answered 410 or 409, or a release answered
	// released or expired) or never asked to confirm: none may be
	// confirmed in the database.
	notConfirmed []string
}

// load is a running crowd of clients.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	records []record
	tr      *http.Transport
}

// startLoad starts clients buyers spread over insts, each sticking to one
// instance; every fourth confirms or releases on the next instance.
func startLoad(insts []*instance, events []eventSpec, clients int) *load {
	l := &load{
		stop: make(chan struct{}),
		tr: &http.Transport{
			MaxIdleConnsPerHost: clients,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		},
	}
	client := &http.Client{Transport: l.tr, Timeout: 20 * time.Second}
	total := 0
	for _, e := range events {
		total += e.weight
	}
	seed := uint64(time.Now().UnixNano())
	for c := 0; c < clients; c++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			b := &buyer{
				id:     c,
				rng:    rand.New(rand.NewPCG(seed, uint64(c))),
				client: client,
				insts:  insts,
				home:   c % len(insts),
				other:  c % len(insts),
			}
			if c%4 == 3 {
				b.other = (c + 1) % len(insts)
			}
			b.run(l.stop, events, total)
			l.mu.Lock()
			l.records = append(l.records, b.rec)
			l.mu.Unlock()
		}()
	}
	return l
}

// finish stops the clients, waits for their last requests (each bounded by
// the client's timeout) and returns what they saw.
func (l *load) finish() []record {
	close(l.stop)
	l.wg.Wait()
	l.tr.CloseIdleConnections()
	return l.records
}

type buyer struct {
	id     int
	rng    *rand.Rand
	client *http.Client
	insts  []*instance
	home   int // where it takes holds
	other  int // where it confirms and releases them
	rec    record
}

// cyclesMax bounds a client's loop even if stop never came.
const cyclesMax = 1_000_000

func (b *buyer) run(stop <-chan struct{}, events []eventSpec, total int) {
	for i := 0; i < cyclesMax; i++ {
		select {
		case <-stop:
			return
		default:
		}
		ev := pick(b.rng, events, total)
		body := fmt.Sprintf(`{"event_id":%d,"user_email":"c%d-%d@example.com","quantity":%d}`, ev, b.id, i, 1+b.rng.IntN(2))
		a, res := b.do(b.home, "hold", http.MethodPost, "/holds", body, "", ev)
		if a.status != http.StatusCreated {
			b.pause(a)
			continue
		}
		var h struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(res, &h); err != nil || h.ID == "" {
			b.rec.answers[len(b.rec.answers)-1].code = "bad_body"
			continue
		}
		switch r := b.rng.IntN(100); {
		case r < 60:
			b.confirm(h.ID, ev)
		case r < 80:
			b.release(h.ID, ev)
		default:
			b.rec.notConfirmed = append(b.rec.notConfirmed, h.ID)
		}
		time.Sleep(time.Duration(b.rng.IntN(5)) * time.Millisecond)
	}
}

// confirm confirms a hold, trying again (with the same idempotency key)
// when the answer says nothing definite: no answer, 429 or 503.
func (b *buyer) confirm(id string, ev int64) {
	for attempt := 0; attempt < 3; attempt++ {
		a, res := b.do(b.other, "confirm", http.MethodPost, "/holds/"+id+"/confirm", "", "confirm-"+id, ev)
		switch a.status {
		case http.StatusOK:
			var h struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(res, &h); err != nil || h.Status != "confirmed" {
				b.rec.answers[len(b.rec.answers)-1].code = "bad_body"
				return
			}
			b.rec.confirmed = append(b.rec.confirmed, id)
			return
		case http.StatusGone, http.StatusConflict:
			b.rec.notConfirmed = append(b.rec.notConfirmed, id)
			return
		case 0, http.StatusTooManyRequests, http.StatusServiceUnavailable:
			time.Sleep(200 * time.Millisecond)
		default:
			return
		}
	}
	b.rec.unsure = append(b.rec.unsure, id)
}

// release gives a hold back; it was never asked to confirm, so it must not
// end up confirmed whatever the answer.
func (b *buyer) release(id string, ev int64) {
	b.rec.notConfirmed = append(b.rec.notConfirmed, id)
	b.do(b.other, "release", http.MethodDelete, "/holds/"+id, "", "", ev)
}

// send sends one request, a JSON body if body is not empty and the header
// name: value if value is not empty, and fills a with its answer (status,
// request id, error code, end). It returns the body read.
func send(client *http.Client, a *answer, method, url, body, name, value string) []byte {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		panic(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if value != "" {
		req.Header.Set(name, value)
	}
	var res []byte
	resp, err := client.Do(req)
	if err == nil {
		a.status = resp.StatusCode
		a.requestID = resp.Header.Get("X-Request-Id")
		res, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if a.status >= 400 {
			var e struct {
				Code string `json:"code"`
			}
			_ = json.Unmarshal(res, &e)
			a.code = e.Code
		}
	}
	a.end = time.Now()
	return res
}

// pause backs off after an answer that was not a hold.
func (b *buyer) pause(a answer) {
	switch {
	case a.status == 0 || a.status >= 500:
		time.Sleep(50 * time.Millisecond)
	case a.status == http.StatusTooManyRequests:
		time.Sleep(20 * time.Millisecond)
	}
}

// do sends one request and records its answer.
func (b *buyer) do(inst int, op, method, path, body, key string, ev int64) (answer, []byte) {
	a := answer{start: time.Now(), inst: inst, op: op, event: ev}
	res := send(b.client, &a, method, b.insts[inst].base+path, body, "Idempotency-Key", key)
	b.rec.answers = append(b.rec.answers, a)
	return a, res
}

func pick(rng *rand.Rand, events []eventSpec, total int) int64 {
	n := rng.IntN(total)
	for _, e := range events {
		if n < e.weight {
			return e.id
		}
		n -= e.weight
	}
	return events[len(events)-1].id
}

// tally counts answers by status ("err" for none) and formats them as
// {201:n 200:n 409:n 410:n 429:n 503:n ...}.
func tally(recs []record) (map[string]int, string) {
	counts := map[string]int{}
	for _, r := range recs {
		for _, a := range r.answers {
			k := "err"
			if a.status != 0 {
				k = strconv.Itoa(a.status)
			}
			counts[k]++
		}
	}
	first := []string{"201", "200", "409", "410", "429", "503"}
	var rest []string
	for k := range counts {
		if !slices.Contains(first, k) && k != "err" {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	keys := slices.Concat(first, rest, []string{"err"})
	var buf bytes.Buffer
	buf.WriteByte('{')
	for _, k := range keys {
		if n, ok := counts[k]; ok || slices.Contains(first, k) {
			if buf.Len() > 1 {
				buf.WriteByte(' ')
			}
			fmt.Fprintf(&buf, "%s:%d", k, n)
		}
	}
	buf.WriteByte('}')
	return counts, buf.String()
}

// breakdown counts answers by operation, status and code, for the log:
// "hold 201:n hold 409 sold_out:n confirm 200:n ...".
func breakdown(recs []record) string {
	counts := map[string]int{}
	for _, r := range recs {
		for _, a := range r.answers {
			k := a.op + " err"
			if a.status != 0 {
				k = a.op + " " + strconv.Itoa(a.status)
			}
			if a.code != "" {
				k += " " + a.code
			}
			counts[k]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, counts[k])
	}
	return strings.Join(parts, ", ")
}
