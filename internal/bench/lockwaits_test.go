package bench

import (
	"os"
	"path/filepath"
	"testing"
)

// The sweep benchmark's verdict rests on reading PostgreSQL's log right:
// a wait is hold creation's only when its statement is.
func TestLockWaitsTellHoldCreationFromTheSweeper(t *testing.T) {
	log := `2026-11-22 06:00:00.000 UTC [1] LOG:  checkpoint starting: time
2026-11-22 06:34:17.324 UTC [9671] LOG:  process 9671 still waiting for ShareLock on transaction 3509 after 50.050 ms
2026-11-22 06:34:17.324 UTC [9671] DETAIL:  Process holding the lock: 9672. Wait queue: 9671.
2026-11-22 06:34:17.324 UTC [9671] CONTEXT:  while updating tuple (12,3) in relation "events"
2026-11-22 06:34:17.324 UTC [9671] STATEMENT:  UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired'
2026-11-22 06:34:18.000 UTC [9680] LOG:  process 9680 still waiting for ShareLock on transaction 3510 after 50.100 ms
2026-11-22 06:34:18.000 UTC [9680] DETAIL:  Process holding the lock: 9671. Wait queue: 9680.
2026-11-22 06:34:18.000 UTC [9680] CONTEXT:  SQL statement "SELECT e.available_tickets FROM events e WHERE e.id = p_event FOR UPDATE"
	PL/pgSQL function hold_batch(bigint,text[],integer[],bigint,integer) line 22 at SQL statement
2026-11-22 06:34:18.000 UTC [9680] STATEMENT:  SELECT n, outcome FROM hold_batch($1::bigint, $2::text[], $3::int[], $4::bigint, $5::int)
`
	path := filepath.Join(t.TempDir(), "postgres.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if all, holds := lockWaits(path, 0); all != 2 || holds != 1 {
		t.Fatalf("read %d waits, %d of hold creation; want 2 and 1", all, holds)
	}
	if all, holds := lockWaits(path, int64(len(log))); all != 0 || holds != 0 {
		t.Fatalf("read %d waits past the end", all+holds)
	}
}
