package store

import (
	"context"
	"errors"
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

// Count is how many Hit has counted for client in window.
func (c *RateCounter) Count(ctx context.Context, client string, window int64) (int64, error) {
	n, err := c.rdb.Get(ctx, c.key(client, window)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
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
