package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestBadSettingsAreRefusedAtStart(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		m := map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	cases := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string
	}{
		{"no database", []string{"serve"}, func(string) string { return "" }, "--database-url"},
		{"bad database scheme", []string{"serve", "--database-url", "mysql://x"}, env(), "--database-url"},
		{"brace in the redis prefix", []string{"serve", "--redis-prefix", "a{"}, env(), "--redis-prefix"},
		{"several hosts, any node", []string{"serve", "--database-url", "postgres:///x?host=a,b"}, env(), "target_session_attrs"},
		{"bad duration env", []string{"serve"}, env("HOLDFAST_HOLD_TTL", "ten minutes"), "HOLDFAST_HOLD_TTL"},
		{"zero hold ttl", []string{"serve", "--hold-ttl", "0s"}, env(), "--hold-ttl"},
		{"hold max under ttl", []string{"serve", "--hold-ttl", "10m", "--hold-max", "5m"}, env(), "--hold-max"},
		{"hold ttl past default max", []string{"serve", "--hold-ttl", "1h"}, env(), "--hold-max"},
		{"bad hold max env", []string{"serve"}, env("HOLDFAST_HOLD_MAX", "forever"), "HOLDFAST_HOLD_MAX"},
		{"sweep under 1s", []string{"serve", "--sweep-every", "500ms"}, env(), "--sweep-every"},
		{"negative lock wait", []string{"serve", "--lock-wait", "-1s"}, env(), "--lock-wait"},
		{"work over lock ttl", []string{"serve", "--simulate-work", "6s"}, env(), "--simulate-work"},
		{"quantity zero", []string{"serve", "--max-quantity", "0"}, env(), "--max-quantity"},
		{"bad int env", []string{"serve"}, env("HOLDFAST_DB_MAX_CONNS", "many"), "HOLDFAST_DB_MAX_CONNS"},
		{"bad bool env", []string{"serve"}, env("HOLDFAST_UNSAFE_DEMO", "perhaps"), "HOLDFAST_UNSAFE_DEMO"},
		{"bad redis url", []string{"serve", "--redis-url", "http://nope"}, env(), "--redis-url"},
		{"bad log level", []string{"serve", "--log-level", "loud"}, env(), "--log-level"},
		{"unknown flag", []string{"serve", "--colour", "red"}, env(), "colour"},
		{"stray argument", []string{"migrate", "now"}, env(), "unexpected argument"},
		{"bad check event", []string{"check", "--event", "x"}, env(), "flag -event"},
		{"bad trusted proxy", []string{"serve", "--trusted-proxies", "10.0.0.0/8,10.0.0.0/33"}, env(), "--trusted-proxies"},
		{"bad trusted proxy env", []string{"serve"}, env("HOLDFAST_TRUSTED_PROXIES", "proxy.example"), "--trusted-proxies"},
		{"negative client cap", []string{"serve", "--max-tickets-per-client", "-1"}, env(), "--max-tickets-per-client"},
		{"debug on every interface", []string{"serve", "--debug-addr", ":6060"}, env(), "--debug-addr"},
		{"debug on every IPv4 interface", []string{"serve", "--debug-addr", "0.0.0.0:6060"}, env(), "--debug-addr"},
		{"debug on every IPv6 interface", []string{"serve", "--debug-addr", "[::]:6060"}, env(), "--debug-addr"},
		{"debug on a private address", []string{"serve", "--debug-addr", "10.1.2.3:6060"}, env(), "--debug-addr"},
		{"debug on a host name", []string{"serve", "--debug-addr", "example.com:6060"}, env(), "--debug-addr"},
		{"debug env on every interface", []string{"serve"}, env("HOLDFAST_DEBUG_ADDR", ":6060"), "--debug-addr"},
		{"debug without a port", []string{"serve", "--debug-addr", "127.0.0.1"}, env(), "--debug-addr"},
		{"no connections", []string{"serve", "--max-connections", "0"}, env(), "--max-connections"},
		{"bad connections env", []string{"serve"}, env("HOLDFAST_MAX_CONNECTIONS", "lots"), "HOLDFAST_MAX_CONNECTIONS"},
		{"no webhook retries", []string{"serve", "--webhook-retry-for", "0s"}, env(), "--webhook-retry-for"},
		{"a negative outbox retention", []string{"serve", "--outbox-retention", "-1h"}, env(), "--outbox-retention"},
		{"first retry past 10s", []string{"serve", "--webhook-retry-base", "11s"}, env(), "--webhook-retry-base"},
		{"bad webhook private env", []string{"serve"}, env("HOLDFAST_WEBHOOK_ALLOW_PRIVATE", "maybe"), "HOLDFAST_WEBHOOK_ALLOW_PRIVATE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, tc.getenv, &stdout, &stderr)
			if err == nil {
				t.Fatalf("started with a bad setting")
			}
			if msg := err.Error() + stderr.String(); !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q does not name %q", msg, tc.want)
			}
		})
	}
}

func TestDebugAddrOnLoopbackIsAccepted(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:6060", "127.0.0.2:0", "[::1]:6060", "localhost:6060"} {
		cfg := defaultConfig()
		cfg.DatabaseURL = "postgres://u@127.0.0.1:1/db"
		cfg.DebugAddr = addr
		if err := cfg.validate(true); err != nil {
			t.Errorf("--debug-addr %s: %v", addr, err)
		}
	}
}

// The command line holds the admin token and the database URL: pprof must
// not serve it.
func TestPprofDoesNotServeTheCommandLine(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(debugMux())
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == 200 || strings.Contains(string(body), os.Args[0]) {
		t.Fatalf("GET /debug/pprof/cmdline: %d %q", res.StatusCode, body)
	}
	res, err = http.Get(srv.URL + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /debug/pprof/heap: %d, want the profiles still served", res.StatusCode)
	}
}

func TestFlagsBeatEnvironmentBeatsDefaults(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	s := newSettings("serve", func(k string) string {
		return map[string]string{"HOLDFAST_LOCK_WAIT": "3s", "HOLDFAST_MAX_QUANTITY": "4"}[k]
	}, &bytes.Buffer{})
	s.serveFlags(&cfg)
	if err := s.parse([]string{"--max-quantity", "6"}); err != nil {
		t.Fatal(err)
	}
	if cfg.LockWait.String() != "3s" || cfg.MaxQuantity != 6 || cfg.HoldTTL.String() != "10m0s" {
		t.Fatalf("cfg = %+v", cfg)
	}
}
