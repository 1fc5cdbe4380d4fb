package store

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/coalesce"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/sale"
)

// The waiting room's scripts, each with queue_lib.lua before it.
var (
	//go:embed queue_lib.lua
	queueLib string
	//go:embed queue_join.lua
	queueJoinSrc string
	//go:embed queue_place.lua
	queuePlaceSrc string
	//go:embed queue_leave.lua
	queueLeaveSrc string
	//go:embed queue_done.lua
	queueDoneSrc string
	//go:embed queue_setpass.lua
	queueSetPassSrc string
	//go:embed queue_shuffle.lua
	queueShuffleSrc string
	//go:embed queue_admit.lua
	queueAdmitSrc string
	//go:embed queue_state.lua
	queueStateSrc string

	queueJoin      = redis.NewScript(queueLib + queueJoinSrc)
	queuePlace     = redis.NewScript(queueLib + queuePlaceSrc)
	queueLeave     = redis.NewScript(queueLib + queueLeaveSrc)
	queueDone      = redis.NewScript(queueLib + queueDoneSrc)
	queueSetPasses = redis.NewScript(queueLib + queueSetPassSrc)
	queueShuffle   = redis.NewScript(queueLib + queueShuffleSrc)
	queueAdmit     = redis.NewScript(queueLib + queueAdmitSrc)
	queueState     = redis.NewScript(queueLib + queueStateSrc)
)

// Queues keeps the events' waiting rooms in Redis. Every key of one
// event's queue is <prefix>queue:{<event id>}:<name>: the braces are its
// Redis Cluster hash tag, so one event's queue lives in one slot and every
// script is atomic on a cluster too. The prefix must hold no '{'.
type Queues struct {
	rdb    redis.UniversalClient
	prefix string
	// shufflePart is how many places one call of the shuffle reads or
	// moves (tests make it small).
	shufflePart int64
	// joins and polls coalesce concurrent calls for one event's queue
	// into one script call each: on sale day thousands of buyers join and
	// poll one event at once, and a script call costs Redis (and us) far
	// more for its round trip than for one place (BENCHMARKS.md, "The
	// waiting room's round trips").
	joins *coalesce.Group[joinKey, joinArg, any]
	polls *coalesce.Group[int64, string, any]
}

// coalesceMax is the most joins or polls one script call carries: enough
// to take all of a crowd's calls that arrive during one round trip, few
// enough that one call holds Redis for about a millisecond at most.
const coalesceMax = 100

// NewQueues returns the waiting rooms on rdb, every key starting with
// prefix.
func NewQueues(rdb redis.UniversalClient, prefix string) *Queues {
	q := &Queues{rdb: rdb, prefix: prefix, shufflePart: defaultShufflePart}
	q.joins = coalesce.New(coalesceMax, q.joinMany)
	q.polls = coalesce.New(coalesceMax, q.placeMany)
	return q
}

// QueueBase is the start of every key of eventID's queue.
func (q *Queues) QueueBase(eventID int64) string {
	return q.prefix + "queue:{" + strconv.FormatInt(eventID, 10) + "}:"
}

// keys are the fixed keys every queue script is given (queue_lib.lua).
func (q *Queues) keys(eventID int64, place ...string) []string {
	b := q.QueueBase(eventID)
	k := []string{b + "pre", b + "wait", b + "adm", b + "emails", b + "meta", b + "seq", b + "took", b + "gone"}
	for _, id := range place {
		k = append(k, b+"p:"+id)
	}
	return k
}

// msArg is an optional time as a script argument: Unix milliseconds, or ""
// for none.
func msArg(t *time.Time) string {
	if t == nil {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func fromMs(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// redisErr turns a failed Redis call into the queue's ErrUnavailable.
func redisErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("store: queue: %w (%v)", ctx.Err(), err)
	}
	return fmt.Errorf("%w: %v", queue.ErrUnavailable, err)
}

// placeOf reads a place as queue_lib.lua's answer gives it: one string of
// eight fields, the last (the email) everything after the seventh newline.
func placeOf(eventID int64, v any) (queue.Place, error) {
	s, _ := v.(string)
	f := strings.SplitN(s, "\n", 8)
	if len(f) != 8 {
		return queue.Place{}, fmt.Errorf("store: queue: place answered as %q", v)
	}
	var n [4]int64
	for i, field := range f[2:6] {
		var err error
		if n[i], err = strconv.ParseInt(field, 10, 64); err != nil {
			return queue.Place{}, fmt.Errorf("store: queue: place answered as %q: %w", s, err)
		}
	}
	pos, joined, admitted, exp := n[0], n[1], n[2], n[3]
	p := queue.Place{ID: f[0], EventID: eventID, Status: queue.Status(f[1]), JoinedAt: fromMs(joined), Email: f[7]}
	if pos > 0 {
		p.Position = &pos
	}
	if admitted > 0 {
		p.AdmittedAt = fromMs(admitted)
	}
	if exp > 0 {
		t := fromMs(exp)
		p.PassExpiresAt = &t
	}
	if f[6] != "" {
		p.Pass = &f[6]
	}
	return p, nil
}

// Join puts a new place in the event's queue, or answers the email's live
// place. Concurrent joins of one event go to Redis together, in one call
// of the join script (see coalesce).
func (q *Queues) Join(ctx context.Context, ev queue.Settings, id, folded, email string) (queue.Place, bool, error) {
	r, err := q.joins.Do(ctx, joinKey{ev.EventID, msArg(ev.OnSaleAt), msArg(ev.OffSaleAt)}, joinArg{id, folded, email})
	if err != nil {
		return queue.Place{}, false, redisErr(ctx, err)
	}
	v, _ := r.([]any)
	if len(v) == 0 {
		return queue.Place{}, false, fmt.Errorf("store: queue: join answered %v", r)
	}
	switch v[0] {
	case "closed":
		return queue.Place{}, false, sale.ErrSaleClosed
	case "new", "existing":
		if len(v) == 2 {
			p, err := placeOf(ev.EventID, v[1])
			return p, v[0] == "new", err
		}
	}
	return queue.Place{}, false, fmt.Errorf("store: queue: join answered %v", v)
}

// joinKey is what the joins of one call share: the event's queue and the
// sale window the script is told, so that no call mixes two readings of
// an event's settings.
type joinKey struct {
	event   int64
	on, off string
}

type joinArg struct{ id, folded, email string }

// joinMany runs one call of the join script for several joins.
func (q *Queues) joinMany(ctx context.Context, k joinKey, joins []joinArg) ([]any, error) {
	ids := make([]string, len(joins))
	args := make([]any, 0, 3+3*len(joins))
	args = append(args, q.QueueBase(k.event), k.on, k.off)
	for i, j := range joins {
		ids[i] = j.id
		args = append(args, j.id, j.folded, j.email)
	}
	return queueJoin.Run(ctx, q.rdb, q.keys(k.event, ids...), args...).Slice()
}

// Place reads a place. Concurrent polls of one event's places go to Redis
// together, in one call of the poll script.
func (q *Queues) Place(ctx context.Context, eventID int64, id string) (queue.Place, bool, error) {
	r, err := q.polls.Do(ctx, eventID, id)
	if err != nil {
		return queue.Place{}, false, redisErr(ctx, err)
	}
	v, _ := r.([]any)
	if len(v) == 0 {
		return queue.Place{}, false, queue.ErrPlaceNotFound
	}
	if len(v) != 2 {
		return queue.Place{}, false, fmt.Errorf("store: queue: poll answered %v", r)
	}
	p, err := placeOf(eventID, v[0])
	first, _ := v[1].(int64)
	return p, first == 1, err
}

// placeMany runs one call of the poll script for several places.
func (q *Queues) placeMany(ctx context.Context, eventID int64, ids []string) ([]any, error) {
	args := make([]any, 0, 1+len(ids))
	args = append(args, q.QueueBase(eventID))
	for _, id := range ids {
		args = append(args, id)
	}
	return queuePlace.Run(ctx, q.rdb, q.keys(eventID), args...).Slice()
}

// Leave turns a waiting or admitted place left.
func (q *Queues) Leave(ctx context.Context, eventID int64, id string) (queue.Place, error) {
	v, err := queueLeave.Run(ctx, q.rdb, q.keys(eventID), q.QueueBase(eventID), id).Result()
	if err != nil {
		return queue.Place{}, redisErr(ctx, err)
	}
	if none, ok := v.([]any); ok && len(none) == 0 {
		return queue.Place{}, queue.ErrPlaceNotFound
	}
	return placeOf(eventID, v)
}

// Done turns an admitted (or just expired) place done.
func (q *Queues) Done(ctx context.Context, eventID int64, id string) error {
	st, err := queueDone.Run(ctx, q.rdb, q.keys(eventID), q.QueueBase(eventID), id).Text()
	if err != nil {
		return redisErr(ctx, err)
	}
	if st == "" {
		return queue.ErrPlaceNotFound
	}
	return nil
}

// SetPasses keeps each pass on its admitted place unless it has one, in
// one script call.
func (q *Queues) SetPasses(ctx context.Context, eventID int64, passes []queue.PlacePass) ([]string, error) {
	args := make([]any, 0, 1+2*len(passes))
	args = append(args, q.QueueBase(eventID))
	for _, p := range passes {
		args = append(args, p.ID, p.Pass)
	}
	kept, err := queueSetPasses.Run(ctx, q.rdb, q.keys(eventID), args...).StringSlice()
	if err != nil {
		return nil, redisErr(ctx, err)
	}
	if len(kept) != len(passes) {
		return nil, fmt.Errorf("store: queue: set %d passes answered %d", len(passes), len(kept))
	}
	return kept, nil
}

// Admit runs one admission step.
func (q *Queues) Admit(ctx context.Context, ev queue.Settings, budget int, stock *queue.Stock) (queue.StepResult, error) {
	max := ""
	if budget >= 0 {
		max = strconv.Itoa(budget)
	}
	args := []any{q.QueueBase(ev.EventID), msArg(ev.OnSaleAt), msArg(ev.OffSaleAt),
		ev.AdmitPerSecond, strconv.FormatFloat(ev.Burst(), 'f', -1, 64), max, ev.PassTTL.Milliseconds()}
	if stock == nil {
		args = append(args, "", "", "", "", "")
	} else {
		horizon := ""
		if stock.Horizon > 0 {
			horizon = strconv.FormatInt(stock.Horizon, 10)
		}
		args = append(args, stock.Available, stock.Pending, strconv.FormatFloat(max1(stock.Reserve), 'f', -1, 64), stock.ReadAt, horizon)
		for _, id := range stock.Took {
			args = append(args, id)
		}
	}
	v, err := queueAdmit.Run(ctx, q.rdb, q.keys(ev.EventID), args...).Slice()
	if err != nil {
		return queue.StepResult{}, redisErr(ctx, err)
	}
	if len(v) < 4 || (len(v)-4)%5 != 0 {
		return queue.StepResult{}, fmt.Errorf("store: queue: admit answered %v", v)
	}
	res := queue.StepResult{}
	res.State, _ = v[0].(string)
	res.Waiting, _ = v[2].(int64)
	expired, _ := v[3].(int64)
	res.Expired = int(expired)
	for i := 4; i < len(v); i += 5 {
		a := queue.Admitted{}
		a.ID, _ = v[i].(string)
		a.Email, _ = v[i+1].(string)
		joined, _ := v[i+2].(int64)
		at, _ := v[i+3].(int64)
		exp, _ := v[i+4].(int64)
		a.JoinedAt, a.AdmittedAt, a.ExpiresAt = fromMs(joined), fromMs(at), fromMs(exp)
		res.Admitted = append(res.Admitted, a)
	}
	return res, nil
}

// PreQueue lists the pre-queue's places in arrival order. It reads a page
// at a time so a pre-queue of a million places never blocks Redis in one
// call. A page starts after the last arrival the one before ended on (a
// place's score is its arrival number, unique and never changed), not at a
// count of places: a place that leaves while the pages are read shifts
// nobody past a page's edge, so no place is missed and then moved after
// the rest, which would take its random turn from it. Only a place that
// joins once the last page was read is missed: it is the latest arrival,
// and the shuffle's next read moves it after the rest.
func (q *Queues) PreQueue(ctx context.Context, eventID int64) ([]string, error) {
	key := q.keys(eventID)[0]
	var ids []string
	from := "-inf"
	for {
		page, err := q.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: key, Start: from, Stop: "+inf", ByScore: true, Count: q.shufflePart,
		}).Result()
		if err != nil {
			return nil, redisErr(ctx, err)
		}
		for _, z := range page {
			id, _ := z.Member.(string)
			ids = append(ids, id)
		}
		if int64(len(page)) < q.shufflePart {
			return ids, nil
		}
		from = "(" + strconv.FormatFloat(page[len(page)-1].Score, 'f', -1, 64)
	}
}

// shuffleLease is how long a shuffle owns the pre-queue after its last
// part: another instance takes over from one that died after it.
const shuffleLease = 3 * time.Second

// defaultShufflePart is how many places one call of the shuffle moves:
// a few milliseconds of Redis's time.
const defaultShufflePart = 5000

// Shuffle gives the pre-queue the order given, once, in parts of
// q.shufflePart places (queue_shuffle.lua). It answers applied false when
// another instance is shuffling, and queue.ErrStaleShuffle when places of
// the pre-queue were not in order (read again and shuffle what is left).
func (q *Queues) Shuffle(ctx context.Context, eventID int64, order []string) (bool, error) {
	owner, err := newToken()
	if err != nil {
		return false, err
	}
	keys := q.keys(eventID)
	args := make([]any, 0, 4+min(int64(len(order)), q.shufflePart))
	for start := 0; ; start += int(q.shufflePart) {
		end := min(len(order), start+int(q.shufflePart))
		last := "0"
		if end == len(order) {
			last = "1"
		}
		part := order[start:end]
		args = append(args[:0], q.QueueBase(eventID), owner, shuffleLease.Milliseconds(), last)
		for _, id := range part {
			args = append(args, id)
		}
		n, err := queueShuffle.Run(ctx, q.rdb, keys, args...).Int()
		switch {
		case err != nil:
			return false, redisErr(ctx, err)
		case n == -2 || n == 0:
			return false, nil
		case n == 1:
			return true, nil
		case last == "1":
			// All of order moved and the pre-queue is not empty: places
			// the read missed.
			return false, queue.ErrStaleShuffle
		}
	}
}

// State reads the queue's state.
func (q *Queues) State(ctx context.Context, ev queue.Settings) (queue.QueueState, error) {
	v, err := queueState.Run(ctx, q.rdb, q.keys(ev.EventID), q.QueueBase(ev.EventID), msArg(ev.OnSaleAt), msArg(ev.OffSaleAt)).Slice()
	if err != nil {
		return queue.QueueState{}, redisErr(ctx, err)
	}
	if len(v) != 4 {
		return queue.QueueState{}, fmt.Errorf("store: queue: state answered %v", v)
	}
	st := queue.QueueState{EventID: ev.EventID, AdmitPerSecond: ev.AdmitPerSecond, OnSaleAt: ev.OnSaleAt}
	s, _ := v[0].(string)
	st.State = queue.State(s)
	st.Waiting, _ = v[1].(int64)
	st.Admitted, _ = v[2].(int64)
	return st, nil
}

// Backlogs reads what each event's queue holds for its admission step: the
// pre-queue's and the line's length, and whether an admitted place's pass
// runs out by horizon. Three counts an event, every event's in one
// pipeline: go-redis sends it to each cluster node as one round trip,
// however many queues there are.
func (q *Queues) Backlogs(ctx context.Context, eventIDs []int64, horizon time.Time) ([]queue.Backlog, error) {
	type counts struct{ pre, wait, lapsing *redis.IntCmd }
	cmds := make([]counts, len(eventIDs))
	until := strconv.FormatInt(horizon.UnixMilli(), 10)
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range eventIDs {
			k := q.keys(id) // pre, wait, adm first
			cmds[i] = counts{p.ZCard(ctx, k[0]), p.ZCard(ctx, k[1]), p.ZCount(ctx, k[2], "-inf", until)}
		}
		return nil
	})
	if err != nil {
		return nil, redisErr(ctx, err)
	}
	out := make([]queue.Backlog, len(eventIDs))
	for i, c := range cmds {
		out[i] = queue.Backlog{PreQueue: c.pre.Val(), Waiting: c.wait.Val(), Lapsing: c.lapsing.Val() > 0}
	}
	return out, nil
}

// max1 is a reserve of at least one ticket, so the script never divides by
// nothing.
func max1(r float64) float64 { return max(1, r) }

// qQueueStock reads, in one snapshot, what the admission step needs of an
// event's stock: the tickets left, with those of lapsed pending holds
// counted back (they return on the next hold or sweep, and a lapsed hold
// can no longer be confirmed); whether a live pending hold remains; and
// the places that made a booking (of any status) since $4 seconds before
// the reading at $3 (us), within the last $2 seconds. Each part reads an
// index range that grows with the holds since the last step, not with the
// sale (021).
const qQueueStock = `SELECT (extract(epoch FROM statement_timestamp()) * 1000000)::bigint AS read_at,
	e.available_tickets + coalesce((SELECT sum(quantity) FROM bookings
		WHERE event_id = e.id AND booking_status = 'pending' AND expires_at <= now()), 0) AS available,
	(EXISTS (SELECT 1 FROM bookings WHERE event_id = e.id AND booking_status = 'pending' AND expires_at > now()))::int AS pending,
	coalesce((SELECT array_agg(DISTINCT queue_place) FROM bookings
		WHERE event_id = e.id AND queue_place IS NOT NULL
		AND created_at > greatest(now() - make_interval(secs => $2), to_timestamp($3::float8 / 1000000) - make_interval(secs => $4))), '{}') AS took
	FROM events e WHERE e.id = $1`

// qRecentQuantity is the average quantity of the event's last 200 holds
// (of any status), or NULL before its first.
const qRecentQuantity = `SELECT avg(quantity)::float8 FROM (SELECT quantity FROM bookings WHERE event_id = $1 ORDER BY id DESC LIMIT 200) t`

// queueTookWindow is how far back QueueStock lists the places that
// booked for an instance's first reading of an event. The admission step
// keeps each one it sees (in the queue's took set, until the place's pass
// ends), so after that each reading lists only the bookings made since the
// horizon of the last reading the instance applied: a step reads what was
// booked since the one before, not every booking of the window again (at
// 1,500 holds a second with passes, the whole window was 15,000 rows for
// every step of every instance: BENCHMARKS.md, "The admission step's
// reading"). A booking no step saw in time leaves its place reserving
// stock until its pass ends: fewer admissions, never too many, but with a
// reserve of the cap a few such places hold back every ticket left.
const queueTookWindow = 10 * time.Second

// queueTookOverlap is how far before the last applied reading's horizon
// (horizon.go) the next one looks back: a margin for clocks, should the
// database's primary change between the two readings, and all that a
// booking made by another role in a long transaction has. A fixed margin
// behind the last reading was once all there was; on a loaded machine a
// hold's commit came more than its 250 ms after the hold's created_at,
// the place kept its reserve of the cap for the rest of its pass, and a
// few such places stalled an on-sale with tickets left.
const queueTookOverlap = 250 * time.Millisecond

// QueueStock reads eventID's stock for the admission step, for passes of
// passTTL (the places that booked: since queueTookOverlap before since, the
// Horizon of the last reading applied,
// and at most over the last queueTookWindow, or passTTL if shorter, since
// an older booking's pass has ended); with recent, also the average
// quantity of its recent holds (0 before the first).
func (s *Store) QueueStock(ctx context.Context, eventID int64, passTTL time.Duration, since int64, recent bool) (queue.Stock, float64, error) {
	var row struct {
		ReadAt    int64          `db:"read_at"`
		Available int            `db:"available"`
		Pending   int            `db:"pending"`
		Took      pq.StringArray `db:"took"`
	}
	horizon, err := s.stockHorizon.horizon(ctx, s.db)
	if err != nil {
		return queue.Stock{}, 0, err
	}
	window := min(queueTookWindow, passTTL)
	if err := s.db.GetContext(ctx, &row, qQueueStock, eventID, window.Seconds(),
		since, queueTookOverlap.Seconds()); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return queue.Stock{}, 0, sale.ErrEventNotFound
		}
		return queue.Stock{}, 0, mapErr(ctx, err)
	}
	// No further back than the window: a reading lists nothing older, and
	// the admission step keeps every place that went reserving until the
	// horizon passes it, so a transaction left open (a psql session in
	// BEGIN) would otherwise hold them all as long as it lasts. A hold's
	// own transaction takes milliseconds, seconds on a loaded machine; one
	// that outlasts the window (a statement may run 30 s) is missed, and
	// its place reserves until its pass ends: fewer admissions, never too
	// many.
	horizon = max(horizon, row.ReadAt-window.Microseconds())
	st := queue.Stock{ReadAt: row.ReadAt, Horizon: horizon, Available: row.Available, Pending: row.Pending, Took: row.Took}
	if !recent {
		return st, 0, nil
	}
	var avg sql.NullFloat64
	if err := s.db.GetContext(ctx, &avg, qRecentQuantity, eventID); err != nil {
		return queue.Stock{}, 0, mapErr(ctx, err)
	}
	return st, avg.Float64, nil
}

// qQueuedEvents lists the events whose queue may still admit places or
// expire passes: queued, and not closed for more than a day.
const qQueuedEvents = `SELECT ` + eventColumns + ` FROM events
	WHERE queue_admit_per_second IS NOT NULL AND (off_sale_at IS NULL OR off_sale_at > now() - interval '1 day')
	ORDER BY id LIMIT 10000`

// QueuedEvents lists the events with a queue that may still admit or
// expire places.
func (s *Store) QueuedEvents(ctx context.Context) ([]sale.Event, error) {
	var rows []eventRow
	if err := s.db.SelectContext(ctx, &rows, qQueuedEvents); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]sale.Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out, nil
}

var (
	_ queue.Store       = (*Queues)(nil)
	_ queue.StockReader = (*Store)(nil)
)
