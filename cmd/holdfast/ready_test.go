package main

import (
	"net/http"
	"testing"
)

// TestReadyShowsDatabaseRole: /ready says what the server the pool reaches
// is and whether its commits wait for a standby. The test server is a lone
// primary, with no synchronous standby named.
func TestReadyShowsDatabaseRole(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	var ready struct{ Status, Postgres, Role, Replication string }
	res := ts.do(http.MethodGet, "/ready", nil)
	res.json(t, &ready)
	if res.Status != http.StatusOK || ready.Role != "primary" || ready.Replication != "asynchronous" {
		t.Fatalf("/ready = %d %s; want 200 with role primary, replication asynchronous", res.Status, res.Body)
	}
}
