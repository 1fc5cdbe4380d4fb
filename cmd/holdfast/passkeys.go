package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/store"
)

// runPassKeys runs `holdfast pass-keys rotate`: a new key for the
// waiting room's passes, published at once, signing from --publish on;
// the keys it replaces keep verifying for --grace after that.
func runPassKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprint(stderr, "usage: holdfast pass-keys rotate [flags]\n")
		return exitError(2)
	}
	cfg := defaultConfig()
	publish, grace := pass.DefaultPublish, pass.DefaultGrace
	s := newSettings("pass-keys rotate", getenv, stderr)
	s.str(&cfg.DatabaseURL, "database-url", "DATABASE_URL", "PostgreSQL URL")
	s.duration(&publish, "publish", "HOLDFAST_PASS_KEY_PUBLISH",
		"how long the new key is published before it signs: at least the instances' key refresh (30s) plus the max-age of GET /queue/keys (30s)")
	s.duration(&grace, "grace", "HOLDFAST_PASS_KEY_GRACE",
		"how long the old keys keep verifying once the new one signs; raised to the longest pass_ttl of any event unless --force")
	force := false
	s.boolean(&force, "force", "HOLDFAST_PASS_KEY_FORCE",
		"keep a --grace shorter than the longest pass_ttl (after a key leak: passes it signed stop working sooner)")
	if err := s.parse(args[1:]); err != nil {
		return err
	}
	if publish < 0 || grace < 0 {
		return fmt.Errorf("--publish and --grace must not be negative")
	}
	db, err := openTool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	st := store.New(db)
	// A pass lives up to its event's pass_ttl (24 h at most): retired
	// sooner, the keys would turn live passes pass_invalid, and a place
	// keeps the token it was first given.
	longest, err := st.LongestPassTTL(ctx)
	if err != nil {
		return err
	}
	if grace < longest && !force {
		fmt.Fprintf(stderr, "pass-keys: --grace %s raised to %s, the longest pass_ttl of an event (--force keeps it)\n", grace, longest)
		grace = longest
	}
	key, err := pass.Rotate(ctx, st, publish, grace)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	fmt.Fprintf(stdout, "pass-keys: added key %s; it signs from %s, the keys it replaces stop verifying at %s\n",
		key.ID, now.Add(publish).Format(time.RFC3339), now.Add(publish+grace).Format(time.RFC3339))
	return nil
}
