// Package signature signs holdfast's webhook deliveries and lets a receiver
// check them. It depends on nothing but the standard library, so a
// receiver's program can import it alone.
//
// Every delivery carries the header
//
//	Holdfast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// with one v1 per live secret of the endpoint: while a secret rotates, the
// old one and the new one both sign, so a receiver that knows either
// accepts the delivery. The timestamp is signed with the body, so a
// captured delivery cannot be replayed later with a fresh t; a receiver
// refuses one whose t is further than its tolerance from its own clock
// (DefaultTolerance, 300 s, unless it has a reason for another).
//
// Delivery is at least once: the same event may arrive more than once (a
// retry after an answer that was lost, a replay); receivers dedupe on the
// event's id.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header is the name of the HTTP header that carries the signature.
const Header = "Holdfast-Signature"

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock.
const DefaultTolerance = 300 * time.Second

// Errors Verify returns.
var (
	ErrMalformed = errors.New("signature: malformed Holdfast-Signature header")
	ErrTooOld    = errors.New("signature: timestamp outside the tolerance")
	ErrMismatch  = errors.New("signature: no v1 signature matches the secret")
)

// Sign is the header value for body sent at t, signed with each secret.
func Sign(t time.Time, body []byte, secrets ...string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(ts)
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(mac(s, ts, body)))
	}
	return b.String()
}

func mac(secret, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks that header signs body with secret, at a time within
// tolerance of now. Other schemes than v1 in the header are ignored.
func Verify(body []byte, header, secret string, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil {
				return ErrMalformed
			}
			sigs = append(sigs, sig)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ErrTooOld
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrMismatch
}
