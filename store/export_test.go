package store

// UseTxForAllBatches makes s serve every batch of holds in the transaction
// batches with idempotency keys take (claim the keys, call hold_batch, keep
// the responses), so a test can hold hold_batch called inside a transaction
// to the same cases as hold_batch called alone.
func (s *Store) UseTxForAllBatches() { s.oneCall = false }

// OpenLazy builds a pool without checking the server answers, for a test
// whose every connection is refused.
var OpenLazy = open
