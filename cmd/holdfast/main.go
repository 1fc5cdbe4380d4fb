// Command holdfast runs the ticket reservation service and its tools:
// serve, migrate, check and dev. main only wires the process to run, which
// takes everything from outside as arguments so tests can call it too.
//
// It only wires: config.go reads flags and environment, app.go builds the
// store, the services of sale's two halves (booking and hold) and the
// queue, and routes.go lists every route. serve.go runs the server and the
// background workers (internal/worker), whose start order, and the reverse
// it stops them in after the last request, its workers list gives and
// explains.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT
// says otherwise. Under a thousand connections the heap itself stays small;
// what grows the process is garbage the collector has not yet had reason to
// collect. The limit gives it one, and keeps the service under 64 MB
// resident (see BENCHMARKS.md).
const defaultMemoryLimit = 48 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(int(exit))
		}
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		// 2, not 1: `holdfast check` exits 1 for a violation, and a
		// script must be able to tell that from a check that could not run.
		os.Exit(2)
	}
}

// exitError ends the process with a status and no further message: the
// command has said what it had to.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `holdfast: a ticket reservation service

usage:
  holdfast serve   [flags]   run the HTTP API and the expiry sweeper
  holdfast migrate [flags]   apply migrations and exit
  holdfast check   [flags]   audit events' stock against their bookings
  holdfast dev     [flags]   private PostgreSQL and Redis, sample data, serve
  holdfast pass-keys rotate [flags]   a new signing key for the waiting room's passes

Run "holdfast COMMAND -h" for a command's flags.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = runServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		err = runMigrate(ctx, rest, getenv, stdout, stderr)
	case "check":
		err = runCheck(ctx, rest, getenv, stdout, stderr)
	case "dev":
		err = runDev(ctx, rest, getenv, stdout, stderr)
	case "pass-keys":
		err = runPassKeys(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "holdfast: unknown command %q\n\n%s", cmd, usage)
		return exitError(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
