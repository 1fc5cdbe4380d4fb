// Package clientaddr resolves the address a request comes from, once, for
// everything that counts per client (the rate limit, the per-client ticket
// cap), and says how they count it: an IPv6 client by its /64 (Counted).
//
// The address is the connection's peer, unless the peer is one of the
// trusted proxies (--trusted-proxies): then it is taken from
// X-Forwarded-For, read from the right, skipping the addresses that are
// themselves trusted proxies. Each proxy appends the address it heard from,
// so the right-most untrusted entry is the last one a trusted hop vouched
// for; anything to its left was written by the client and may be made up.
// From an untrusted peer the header is ignored altogether: anyone can send
// one. The standard Forwarded header (RFC 7239) is not read.
package clientaddr

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds a request's client address.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes X-Forwarded-For only from a peer in
// trusted; with none it never reads the header.
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: trusted}
}

// ParseTrusted reads a comma-separated list of CIDR ranges ("10.0.0.0/8,
// fd00::/8"); a bare address is a range of one. An empty list is no trusted
// proxy.
func ParseTrusted(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not a CIDR range such as 10.0.0.0/8", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			// ::ffff:10.0.0.0/104 means 10.0.0.0/8; addresses are unmapped
			// before they are matched.
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%q is not a CIDR range such as 10.0.0.0/8", f)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Resolve returns r's client address, the zero Addr when the peer's is not
// an IP address (a Unix socket).
func (res *Resolver) Resolve(r *http.Request) netip.Addr {
	client := parse(r.RemoteAddr)
	if !client.IsValid() || !res.trusts(client) {
		return client
	}
	hops := forwarded(r.Header.Values("X-Forwarded-For"))
	for i := len(hops) - 1; i >= 0; i-- {
		a := parse(hops[i])
		if !a.IsValid() {
			// Garbage where an address should be: nothing left of it can
			// be believed, so the client is the last hop that could.
			return client
		}
		client = a
		if !res.trusts(a) {
			return a
		}
	}
	// Every hop is a trusted proxy: the left-most is as near the client as
	// the header goes.
	return client
}

func (res *Resolver) trusts(a netip.Addr) bool {
	for _, p := range res.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwarded splits X-Forwarded-For's values (the header may be sent more
// than once; its values are one list, in order) into entries.
func forwarded(values []string) []string {
	var hops []string
	for _, v := range values {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	return hops
}

// parse reads an address with or without a port ("192.0.2.1",
// "192.0.2.1:80", "[2001:db8::1]:80", "2001:db8::1"), unmapped (an IPv4
// client over IPv6 is the same client) and without a zone.
func parse(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}

type ctxKey struct{}

// Middleware resolves each request's client address and puts it in the
// request's context, for From.
func (res *Resolver) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := res.Resolve(r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, a)))
	})
}

// From returns the client address Middleware put in ctx; the zero Addr
// when there is none.
func From(ctx context.Context) netip.Addr {
	a, _ := ctx.Value(ctxKey{}).(netip.Addr)
	return a
}

// Key returns the client Middleware put in ctx as every limit counts it
// (Counted): the rate limit, the admin token's failures and the
// per-client ticket cap.
func Key(ctx context.Context) netip.Addr { return Counted(From(ctx)) }

// countedBits is how much of an IPv6 address names its client: a /64 is
// the least any host is given (RFC 4291's interface
// identifiers, RFC 6177), and within it a client chooses its low 64 bits
// freely (privacy addresses change them daily, and a host may hold as many
// as it likes), so counting whole addresses would let one client step
// past every limit by changing them.
const countedBits = 64

// Counted is a as a limit counts it: an IPv4 address whole, an IPv6
// address as the first address of its /64 (2001:db8:1:2::). The zero Addr
// stays zero.
func Counted(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if !a.Is6() {
		return a
	}
	return netip.PrefixFrom(a, countedBits).Masked().Addr()
}
