package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// request builds client c's i-th request.
type request func(c, i int) (method, path string, body []byte)

// headerRequest builds client c's i-th request and the one header it
// carries besides Content-Type (name "" for none): a Queue-Pass, an
// Idempotency-Key.
type headerRequest func(c, i int) (method, path string, body []byte, name, value string)

// result is what one load run measured.
type result struct {
	Name     string
	Clients  int
	Duration time.Duration
	OK       int // 2xx
	Busy     int // 429
	Other4xx int
	Server   int // 5xx and transport errors
	Lat      []time.Duration
	MaxRSSKB int
	// Filled in by env.measure: the CPU each process spent on the run,
	// and the database's costliest statements.
	CPU        cpu
	Statements []string
}

func (r result) rate() float64 { return float64(r.OK) / r.Duration.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.Lat[min(len(r.Lat)-1, int(float64(len(r.Lat))*p))]
}

// runWith drives base with clients concurrent clients for d, each sending
// its requests back to back on its own keep-alive connection, each with
// the header req gives it.
func runWith(ctx context.Context, name, base string, clients int, d time.Duration, req headerRequest, rssOf int) result {
	tr := &http.Transport{
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		wg                      sync.WaitGroup
		ok, busy, other, server atomic.Int64
		mu                      sync.Mutex
		lats                    []time.Duration
		stop                    = make(chan struct{})
		maxRSS                  atomic.Int64
		rssDone                 = make(chan struct{})
	)
	if rssOf > 0 {
		go func() {
			defer close(rssDone)
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if kb := rssKB(rssOf); int64(kb) > maxRSS.Load() {
						maxRSS.Store(int64(kb))
					}
				}
			}
		}()
	} else {
		close(rssDone)
	}
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for i := 0; ; i++ {
				select {
				case <-stop:
					mu.Lock()
					lats = append(lats, local...)
					mu.Unlock()
					return
				default:
				}
				method, path, body, hname, hvalue := req(c, i)
				hreq, _ := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
				hreq.Header.Set("Content-Type", "application/json")
				if hname != "" {
					hreq.Header.Set(hname, hvalue)
				}
				t0 := time.Now()
				res, err := client.Do(hreq)
				if err != nil {
					server.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				local = append(local, time.Since(t0))
				switch {
				case res.StatusCode < 300:
					ok.Add(1)
				case res.StatusCode == 429:
					busy.Add(1)
				case res.StatusCode >= 500:
					server.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	time.Sleep(d)
	close(stop)
	wg.Wait()
	<-rssDone
	elapsed := time.Since(start)
	slices.Sort(lats)
	return result{Name: name, Clients: clients, Duration: elapsed, OK: int(ok.Load()), Busy: int(busy.Load()),
		Other4xx: int(other.Load()), Server: int(server.Load()), Lat: lats, MaxRSSKB: int(maxRSS.Load())}
}

// rssKB reads a process's resident set size from /proc.
func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}
