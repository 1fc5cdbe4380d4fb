// Package proxy is a TCP proxy for tests that need a network between a
// client and its server they can spoil: answers delayed (a slow Redis), or
// one answer lost with its connection after the server acted on the
// request (a commit whose reply never arrives).
package proxy

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of one server. Requests pass at
// once; every chunk of the server's answer is held back by the delay set
// when it arrived, in order, so a slow server can be made of a fast one.
// When the server goes away the proxy closes the client's side too, as the
// server would have.
type Proxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // nanoseconds
	cut    atomic.Pointer[[]byte]

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Start starts a proxy to target, a host:port or the path of a Unix socket
// (a PostgreSQL reached through its socket directory); Close stops it.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay delays every answer that arrives from now on by d.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// CutOnce makes the proxy close, once, the first connection whose client
// sends bytes holding marker, at the moment the server's answer to them
// arrives, without passing it on: the server acted on the request and the
// client never hears how.
func (p *Proxy) CutOnce(marker string) {
	m := []byte(marker)
	p.cut.Store(&m)
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

type chunk struct {
	b   []byte
	due time.Time
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	defer client.Close()
	network := "tcp"
	if strings.HasPrefix(p.target, "/") {
		network = "unix"
	}
	up, err := net.DialTimeout(network, p.target, time.Second)
	if err != nil {
		return // the server is down: the client sees its connection closed
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	done := make(chan struct{})
	var once sync.Once
	end := func() {
		once.Do(func() {
			close(done)
			client.Close()
			up.Close()
		})
	}
	var marked atomic.Bool // this connection carried the marker CutOnce set
	var inner sync.WaitGroup
	inner.Add(2)
	// Client to server, at once.
	go func() {
		defer inner.Done()
		defer end()
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if m := p.cut.Load(); m != nil && bytes.Contains(buf[:n], *m) {
					marked.Store(true)
				}
				if _, werr := up.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// Server to client: read as it comes, stamp each chunk with its due
	// time, and let the writer below deliver it then.
	answers := make(chan chunk, 1024)
	go func() {
		defer inner.Done()
		defer close(answers)
		for {
			buf := make([]byte, 32<<10)
			n, err := up.Read(buf)
			if m := p.cut.Load(); n > 0 && m != nil && marked.Load() && p.cut.CompareAndSwap(m, nil) {
				end() // the answer is lost with the connection
				return
			}
			if n > 0 {
				c := chunk{b: buf[:n], due: time.Now().Add(time.Duration(p.delay.Load()))}
				select {
				case answers <- c:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for c := range answers {
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-done:
				// The client went away: drop what is queued.
				for range answers {
				}
				inner.Wait()
				return
			}
		}
		if _, err := client.Write(c.b); err != nil {
			break
		}
	}
	// Everything the server said before it went away has been delivered;
	// now the client learns it is gone.
	end()
	for range answers {
	}
	inner.Wait()
}
