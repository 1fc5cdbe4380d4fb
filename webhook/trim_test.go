package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// An attempt's error is kept cut to a length; cut inside a multi-byte
// character it was not UTF-8, which PostgreSQL refuses, failing the record
// of its whole batch of attempts.
func TestTrimKeepsUTF8(t *testing.T) {
	s := strings.Repeat("a", 299) + "é and more"
	got := trim(s, 300)
	if !utf8.ValidString(got) || len(got) > 300 || !strings.HasPrefix(s, got) {
		t.Fatalf("trim = %q (%d bytes, valid %v)", got, len(got), utf8.ValidString(got))
	}
}

// A receiver whose certificate names a host with a NUL byte (Go's x509
// parses it) fails its attempt with an error that quotes the name, NUL
// and all. PostgreSQL's text refuses NUL, so its record failed the whole
// batch of attempts, every 15 s: the bad delivery was never retried with
// backoff nor given up, and other endpoints' answers in the batch were
// lost. Short errors were not cleaned at all.
func TestTheAttemptErrorOfABadCertificateIsText(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"evil\x00.example"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()
	opts := DefaultOptions()
	opts.AllowPrivate = true // the receiver is on loopback
	d := NewDeliverer(nil, opts, nil)
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	_, err = d.send(t.Context(), Claim{URL: url, Secrets: []string{"whsec_x"}}, []byte(`{}`))
	if err == nil || !strings.ContainsRune(err.Error(), 0) {
		t.Fatalf("the attempt's error %v: want one that quotes the NUL", err)
	}
	if got := trim(err.Error(), 300); strings.ContainsRune(got, 0) || !utf8.ValidString(got) || !strings.Contains(got, "evil.example") {
		t.Fatalf("recorded as %q: want text with the NUL dropped", got)
	}
}
