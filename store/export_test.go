package store

// UseTxForAllBatches makes s serve every batch of holds in the transaction
// batches with idempotency keys take (claim the keys, call hold_batch, keep
// the responses), so a test can hold hold_batch called inside a transaction
// to the same cases as hold_batch called alone.
func (s *Store) UseTxForAllBatches() { s.oneCall = false }

// OpenLazy builds a pool without checking the server answers, for a test
// whose every connection is refused.
var OpenLazy = open

// SetShufflePart makes q read and shuffle the pre-queue n places a call,
// so a test sees a shuffle of many parts without a million places.
func (q *Queues) SetShufflePart(n int64) { q.shufflePart = n }

// QPublishBatch, QPublish and QPublishPlan are the publisher's statements
// and the plan settings it runs under, for a test that reads the plan.
const (
	QPublishBatch = qPublishBatch
	QPublish      = qPublish
	QPublishPlan  = qPublishPlan
)

// PublishStatements are the publisher's plan setting and its statement,
// for a test that reads the statement's plan.
var PublishStatements = [2]string{qPublishPlan, qPublish}

// PublishBatchQuery is the round's read of what to publish, for a test of
// what it reads.
const PublishBatchQuery = qPublishBatch

// QueueStockQuery is the admission step's reading, for a test of its plan.
const QueueStockQuery = qQueueStock

// LapsedStatements are the sweeper's plan setting and its listing of the
// events with lapsed holds, for a test of what the listing reads.
var LapsedStatements = [2]string{qLapsedPlan, qLapsedEvents}

// PublishLock is the advisory lock a publish round holds, for a test that
// runs a round by hand.
const PublishLock = publishLock
