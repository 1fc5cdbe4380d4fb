package store

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RateCounter counts requests per client and second in Redis, for the rate
// limit every instance shares.
type RateCounter struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRateCounter returns a RateCounter whose keys start with prefix.
func NewRateCounter(rdb redis.UniversalClient, prefix string) *RateCounter {
	return &RateCounter{rdb: rdb, prefix: prefix}
}

// qUnhit takes one back, only from a key still there: DECR of a key gone
// (its window over) would make one without an expiry.
const qUnhit = `if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end return 0`

// Unhit takes one of client's requests in window back, if the window's
// count is still kept.
func (c *RateCounter) Unhit(ctx context.Context, client string, window int64) error {
	return c.rdb.Eval(ctx, qUnhit, []string{c.key(client, window)}).Err()
}

func (c *RateCounter) key(client string, window int64) string {
	return c.prefix + "rate:" + client + ":" + strconv.FormatInt(window, 10)
}

// Hit counts one request from client in window (a Unix second) and returns
// the window's count so far. The key lives two seconds, long enough for
// every instance's clock to have left the window.
func (c *RateCounter) Hit(ctx context.Context, client string, window int64) (int64, error) {
	key := c.key(client, window)
	var incr *redis.IntCmd
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Incr(ctx, key)
		p.Expire(ctx, key, 2*time.Second)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return incr.Val(), nil
}
