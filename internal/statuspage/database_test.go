package statuspage

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

// dbSource is a Source that says what its database is.
type dbSource struct {
	fakeSource
	db  Database
	err error
}

func (d *dbSource) Database(context.Context) (Database, error) { return d.db, d.err }

// TestFeedShowsDatabase: the feed carries the database's role and
// replication when the source can say them, and leaves them out, the rest
// intact, when it cannot.
func TestFeedShowsDatabase(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  Source
		want *databaseJSON
	}{
		{"role read", &dbSource{db: Database{Role: "primary", Replication: "synchronous"}}, &databaseJSON{Role: "primary", Replication: "synchronous"}},
		{"role not read", &dbSource{err: errors.New("down")}, nil},
		{"source without it", &fakeSource{}, nil},
	}
	for _, tc := range cases {
		rec, _ := serve(t, tc.src, "/status.json")
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", tc.name, rec.Code, rec.Body)
		}
		var got feed
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if (got.Database == nil) != (tc.want == nil) || (got.Database != nil && *got.Database != *tc.want) {
			t.Errorf("%s: database %+v; want %+v", tc.name, got.Database, tc.want)
		}
	}
}
