package store

// UseTxForAllBatches makes s serve every batch of holds in the transaction
// of several statements, the path batches with idempotency keys take, so a
// test can hold it and hold_batch to the same cases.
func (s *Store) UseTxForAllBatches() { s.oneCall = false }

// OpenLazy builds a pool without checking the server answers, for a test
// whose every connection is refused.
var OpenLazy = open
