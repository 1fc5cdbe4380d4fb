package pass

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
)

// JWKS is a JSON Web Key Set (RFC 7517), as GET /queue/keys answers it.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWK is one public key of a JWKS: an Ed25519 key (RFC 8037).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	X   string `json:"x"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// PublicJWK is pub as the JWK that names it kid.
func PublicJWK(kid string, pub ed25519.PublicKey) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", Kid: kid, X: base64.RawURLEncoding.EncodeToString(pub), Alg: "EdDSA", Use: "sig"}
}

// PublicKey is the Ed25519 key j holds, as a verifier that has only the
// JWK Set (an edge proxy) reads it.
func (j JWK) PublicKey() (ed25519.PublicKey, error) {
	if j.Kty != "OKP" || j.Crv != "Ed25519" {
		return nil, errors.New("pass: jwk is not an Ed25519 key")
	}
	b, err := base64.RawURLEncoding.DecodeString(j.X)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("pass: jwk x is not an Ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

// KeysMaxAge is how long a client may keep GET /queue/keys: short, since a
// rotated-in key is published only DefaultPublish before it signs.
const KeysMaxAge = DefaultRefresh

// HandleKeys answers GET /queue/keys with the keyring's public keys.
func HandleKeys(k *Keyring) http.Handler {
	cache := "public, max-age=" + strconv.Itoa(int(KeysMaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := k.JWKS()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", cache)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(body, '\n'))
	})
}
