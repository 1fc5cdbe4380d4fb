package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

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
	// Below a second (or negative) the grace would call fresh holds stale.
	if err := validSweepEvery(cfg.SweepEvery); err != nil {
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
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%s\n", a.ID, printable(a.Name, 32), a.Total, a.Available, a.Held, a.Confirmed, a.Summary())
	}
	tw.Flush()
	return bad
}

// printable is name as the terminal may show it: the admin API refuses
// control characters in names, but an event inserted with plain SQL may
// carry any, and an escape sequence printed raw would rewrite the
// operator's screen. Control and format characters (Unicode Cc, Cf) are
// shown escaped, and the name is cut to max characters, never inside one.
func printable(name string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range name {
		if n == max-3 && utf8.RuneCountInString(name) > max {
			b.WriteString("...")
			break
		}
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			fmt.Fprintf(&b, "\\u%04x", r)
		} else {
			b.WriteRune(r)
		}
		n++
	}
	return b.String()
}
