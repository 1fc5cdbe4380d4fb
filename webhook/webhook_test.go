package webhook_test

import (
	"net/netip"
	"testing"

	"github.com/holdfast/holdfast/webhook"
)

func TestPublic(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"93.184.215.14": true, "2606:4700::1111": true, "8.8.8.8": true,
		"127.0.0.1": false, "10.0.0.1": false, "172.16.5.4": false, "192.168.1.1": false,
		"169.254.169.254": false, "100.64.0.1": false, "0.0.0.0": false, "::1": false, "::": false,
		"fe80::1": false, "fc00::1": false, "::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false,
		"224.0.0.1": false, "64:ff9b::a00:1": false, "198.18.0.1": false, "255.255.255.255": false,
	} {
		if got := webhook.Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestCreateRequestValid(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		req webhook.CreateRequest
		ok  bool
	}{
		{webhook.CreateRequest{URL: "https://example.com/hook"}, true},
		{webhook.CreateRequest{URL: "http://example.com:8080/hook?x=1", Types: []string{"hold.created", "hold.cancelled"}}, true},
		{webhook.CreateRequest{URL: "https://example.com/hook", Types: []string{"hold.paid"}}, false},
		{webhook.CreateRequest{URL: "ftp://example.com/"}, false},
		{webhook.CreateRequest{URL: "/relative"}, false},
		{webhook.CreateRequest{URL: "https://a:b@example.com/"}, false},
		{webhook.CreateRequest{URL: "https:///nohost"}, false},
		{webhook.CreateRequest{URL: ""}, false},
	} {
		if err := c.req.Valid(); (err == nil) != c.ok {
			t.Errorf("%+v: Valid() = %v, want ok %v", c.req, err, c.ok)
		}
	}
}
