package clientaddr

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	trusted, err := ParseTrusted("10.0.0.0/8, 192.0.2.10, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no header", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"spoofed from an untrusted peer", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"from a trusted proxy", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"a bare trusted address", "192.0.2.10:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"the right-most untrusted hop", "10.1.2.3:4000", []string{"6.6.6.6, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"the header sent twice is one list", "10.1.2.3:4000", []string{"6.6.6.6", "198.51.100.1"}, "198.51.100.1"},
		{"trusted proxy without a header", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"every hop trusted", "10.1.2.3:4000", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"garbage ends the walk", "10.1.2.3:4000", []string{"198.51.100.1, not-an-ip, 10.0.0.2"}, "10.0.0.2"},
		{"ports and brackets", "[fd00::1]:4000", []string{"[2001:db8::7]:5555"}, "2001:db8::7"},
		{"IPv4 over IPv6 is unmapped", "[::ffff:10.1.2.3]:4000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"a Unix socket", "@", []string{"198.51.100.1"}, "invalid IP"},
	} {
		r := httptest.NewRequest("POST", "/holds", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := New(trusted).Resolve(r).String(); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	// Without trusted proxies the header is never read.
	r := httptest.NewRequest("POST", "/holds", nil)
	r.RemoteAddr = "10.1.2.3:4000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	if got := New(nil).Resolve(r); got != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("no trusted proxies: got %s", got)
	}
}

func TestParseTrusted(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "10.0.0.0/8,,x", "fe80::1%eth0"} {
		if _, err := ParseTrusted(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	got, err := ParseTrusted(" 10.1.0.0/8 ,::ffff:172.16.0.0/108, ")
	if err != nil || len(got) != 2 || got[0].String() != "10.0.0.0/8" || got[1].String() != "172.16.0.0/12" {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := ParseTrusted(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v", got, err)
	}
}

func TestCounted(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"198.51.100.7":                 "198.51.100.7",
		"::ffff:198.51.100.7":          "198.51.100.7",
		"2001:db8:1:2::1":              "2001:db8:1:2::",
		"2001:db8:1:2:abcd:ef01:2:3":   "2001:db8:1:2::",
		"fe80::1%eth0":                 "fe80::",
		"2001:db8:1:3:ffff:ffff:ff:ff": "2001:db8:1:3::",
	} {
		if got := Counted(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Counted(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Counted(netip.Addr{}); got.IsValid() {
		t.Errorf("Counted of no address = %s, want none", got)
	}
}
