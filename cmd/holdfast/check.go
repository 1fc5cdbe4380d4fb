package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/holdfast/holdfast/store"
)

// idList is a repeatable --event flag.
type idList []int64

func (l *idList) String() string {
	parts := make([]string, len(*l))
	for i, id := range *l {
		parts[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(parts, ",")
}

func (l *idList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("%q is not a positive event id", part)
		}
		*l = append(*l, id)
	}
	return nil
}

func runCheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	var events idList
	s := newSettings("check", getenv, stderr)
	s.str(&cfg.DatabaseURL, "database-url", "DATABASE_URL", "PostgreSQL URL")
	s.duration(&cfg.SweepEvery, "sweep-every", "HOLDFAST_SWEEP_EVERY", "the sweeper's interval, to judge how late a lapsed hold may be")
	s.fs.Var(&events, "event", "check only this event id (repeatable, or comma-separated)")
	if err := s.parse(args); err != nil {
		return err
	}
	db, err := openTool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	audits, err := store.New(db).Audit(ctx, events, cfg.SweepEvery)
	if err != nil {
		return err
	}
	bad := printAudit(stdout, audits)
	if bad > 0 {
		fmt.Fprintf(stdout, "check: %d of %d events break the invariants\n", bad, len(audits))
		return exitError(1)
	}
	fmt.Fprintf(stdout, "check: %d events, all consistent\n", len(audits))
	return nil
}

// printAudit writes the audit table and returns how many rows have problems.
func printAudit(w io.Writer, audits []store.EventAudit) int {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tNAME\tTOTAL\tAVAILABLE\tHELD\tCONFIRMED\tSTATUS")
	bad := 0
	for _, a := range audits {
		if len(a.Problems) > 0 {
			bad++
		}
		name := a.Name
		if len(name) > 32 {
			name = name[:29] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%s\n", a.ID, name, a.Total, a.Available, a.Held, a.Confirmed, a.Summary())
	}
	tw.Flush()
	return bad
}
