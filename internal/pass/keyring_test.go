package pass_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/holdfast/holdfast/internal/pass"
)

// memStore is a KeyStore in memory, for the tests that are about tokens;
// store's tests hold the real one, in PostgreSQL, to the same contract.
type memStore struct {
	mu   sync.Mutex
	keys []pass.StoredKey
	down atomic.Bool // PassKeys fails, as a store whose database is away
}

func (m *memStore) PassKeys(context.Context) ([]pass.StoredKey, error) {
	if m.down.Load() {
		return nil, errors.New("connection refused")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]pass.StoredKey(nil), m.keys...), nil
}

func (m *memStore) EnsurePassKey(_ context.Context, k pass.Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.keys) == 0 {
		m.keys = append(m.keys, pass.StoredKey{Key: k})
	}
	return nil
}

func (m *memStore) RotatePassKey(_ context.Context, k pass.Key, publish, grace time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		d := publish + grace
		m.keys[i].RetiresIn = &d
	}
	m.keys = append(m.keys, pass.StoredKey{Key: k, SignsIn: publish})
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// keyringKeys remembers each keyring newKeyring made with its private
// key, for the tests that sign as another library would.
var keyringKeys sync.Map

func newKeyring(t testing.TB) *pass.Keyring {
	t.Helper()
	store := &memStore{}
	k, err := pass.NewKeyring(context.Background(), store, pass.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := store.PassKeys(context.Background())
	keyringKeys.Store(k, keys[0].Private)
	return k
}

func claims(exp time.Duration) pass.Claims {
	return pass.Claims{EventID: 42, PlaceID: "place-1", Email: "a@example.com", Cap: 4,
		ExpiresAt: time.Now().Add(exp).Truncate(time.Second)}
}

func sign(t testing.TB, k *pass.Keyring, c pass.Claims) string {
	t.Helper()
	tok, err := k.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAPassVerifiesToItsClaims(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	want := claims(10 * time.Minute)
	got, err := k.Verify(sign(t, k, want))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, want.ExpiresAt)
	}
	got.ExpiresAt = want.ExpiresAt
	if got != want {
		t.Errorf("Verify = %+v, want %+v", got, want)
	}
}

// TestAPassSaysWhatTheContractSays reads a pass's header and claims as
// any JWT library would.
func TestAPassSaysWhatTheContractSays(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	tok := sign(t, k, claims(time.Minute))
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["alg"] != "EdDSA" || parsed.Header["kid"] == nil || parsed.Header["kid"] == "" {
		t.Errorf("header = %v, want alg EdDSA and a kid", parsed.Header)
	}
	mc := parsed.Claims.(jwt.MapClaims)
	if mc["aud"] != "42" || mc["sub"] != "place-1" || mc["email"] != "a@example.com" || mc["cap"] != 4.0 {
		t.Errorf("claims = %v, want aud \"42\", sub, email, cap", mc)
	}
	if _, ok := mc["exp"].(float64); !ok {
		t.Errorf("exp = %v, want a number", mc["exp"])
	}
	if _, ok := mc["iat"].(float64); !ok {
		t.Errorf("iat = %v, want a number", mc["iat"])
	}
}

// forge signs c's claims with method and key under the given kid.
func forge(t testing.TB, method jwt.SigningMethod, key any, kid string, c pass.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims{
		"aud": "42", "sub": c.PlaceID, "email": c.Email, "cap": c.Cap,
		"exp": c.ExpiresAt.Unix(), "iat": time.Now().Unix(),
	})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kidOf(t testing.TB, k *pass.Keyring) string {
	t.Helper()
	var set pass.JWKS
	if err := json.Unmarshal(k.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS = %s (%v), want one key", k.JWKS(), err)
	}
	return set.Keys[0].Kid
}

func TestVerifyRefusesWhatIsNotOurPass(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	kid := kidOf(t, k)
	good := sign(t, k, claims(time.Minute))
	c := claims(time.Minute)

	var set pass.JWKS
	_ = json.Unmarshal(k.JWKS(), &set)
	pub, err := set.Keys[0].PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	flipped := flip(parts[2])

	cases := []struct {
		name, token string
	}{
		{"empty", ""},
		{"not a jwt", "hello"},
		{"two segments", parts[0] + "." + parts[1]},
		{"bad base64", parts[0] + ".!!!." + parts[2]},
		{"signature of another message", parts[0] + "." + forgeParts(t, k, c)[1] + "." + parts[2]},
		// A pass without a MAC has its signature checked.
		{"tampered signature, no MAC", withoutMAC(t, k, c, flipped)},
		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, c)},
		// The classic confusion: HMAC keyed with the public key.
		{"HS256 with the public key as secret", forge(t, jwt.SigningMethodHS256, []byte(pub), kid, c)},
		{"RS256", forge(t, jwt.SigningMethodRS256, rsaKey, kid, c)},
		{"another Ed25519 key under our kid", forge(t, jwt.SigningMethodEdDSA, otherPriv, kid, c)},
		{"unknown kid", forge(t, jwt.SigningMethodEdDSA, otherPriv, "nobody", c)},
		{"no kid", forge(t, jwt.SigningMethodEdDSA, otherPriv, "", c)},
		{"too long", good + strings.Repeat("A", pass.MaxTokenLength)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := k.Verify(tc.token)
			if !errors.Is(err, pass.ErrInvalid) {
				t.Errorf("Verify = %v, want ErrInvalid", err)
			}
		})
	}
}

// flip changes one character of a base64url segment.
func flip(seg string) string {
	b := []byte(seg)
	if b[3] == 'A' {
		b[3] = 'B'
	} else {
		b[3] = 'A'
	}
	return string(b)
}

// withoutMAC signs c with k's key the way any EdDSA JWT library would,
// without holdfast's MAC, and returns it with signature sig when sig is
// not "" (else its own).
func withoutMAC(t testing.TB, k *pass.Keyring, c pass.Claims, sig string) string {
	t.Helper()
	tok := forge(t, jwt.SigningMethodEdDSA, privateOf(t, k), kidOf(t, k), c)
	if sig == "" {
		return tok
	}
	parts := strings.Split(tok, ".")
	return parts[0] + "." + parts[1] + "." + sig
}

// privateOf is the one private key of a keyring made by newKeyring.
func privateOf(t testing.TB, k *pass.Keyring) ed25519.PrivateKey {
	t.Helper()
	priv, ok := keyringKeys.Load(k)
	if !ok {
		t.Fatal("the keyring was not made by newKeyring")
	}
	return priv.(ed25519.PrivateKey)
}

// forgeParts signs other claims with k, for a signature that belongs to
// another message.
func forgeParts(t *testing.T, k *pass.Keyring, c pass.Claims) []string {
	c.PlaceID = "place-2"
	return strings.Split(sign(t, k, c), ".")
}

func TestVerifyRefusesClaimsThatAreNotAPass(t *testing.T) {
	t.Parallel()
	// Signed by our own key, so only the claims are wrong.
	store := &memStore{}
	k, err := pass.NewKeyring(context.Background(), store, pass.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := store.PassKeys(context.Background())
	priv, kid := keys[0].Private, keys[0].ID
	exp := time.Now().Add(time.Minute).Unix()
	cases := map[string]jwt.MapClaims{
		"aud not a number": {"aud": "x", "sub": "p", "email": "a@example.com", "exp": exp},
		"aud an array":     {"aud": []string{"42"}, "sub": "p", "email": "a@example.com", "exp": exp},
		"aud zero":         {"aud": "0", "sub": "p", "email": "a@example.com", "exp": exp},
		"no sub":           {"aud": "42", "email": "a@example.com", "exp": exp},
		"no email":         {"aud": "42", "sub": "p", "exp": exp},
		"no exp":           {"aud": "42", "sub": "p", "email": "a@example.com"},
		"negative cap":     {"aud": "42", "sub": "p", "email": "a@example.com", "cap": -1, "exp": exp},
	}
	for name, mc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, mc)
			tok.Header["kid"] = kid
			s, err := tok.SignedString(priv)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.Verify(s); !errors.Is(err, pass.ErrInvalid) {
				t.Errorf("Verify = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestAnExpiredPassIsExpiredOnlyIfItIsOurs(t *testing.T) {
	t.Parallel()
	store := &memStore{}
	k, err := pass.NewKeyring(context.Background(), store, pass.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	expired := sign(t, k, claims(-2*time.Second))
	if _, err := k.Verify(expired); !errors.Is(err, pass.ErrExpired) {
		t.Errorf("Verify(expired) = %v, want ErrExpired", err)
	}
	// The same expired claims under a signature that is not ours: the
	// signature is checked first, so it is invalid, not expired.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	keys, _ := store.PassKeys(context.Background())
	forged := forge(t, jwt.SigningMethodEdDSA, other, keys[0].ID, claims(-2*time.Second))
	if _, err := k.Verify(forged); !errors.Is(err, pass.ErrInvalid) {
		t.Errorf("Verify(forged and expired) = %v, want ErrInvalid", err)
	}
}

func TestCheckBindsAPassToItsEventAndEmail(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	tok := sign(t, k, claims(time.Minute))
	cases := []struct {
		name      string
		token     string
		event     int64
		email     string
		wantPlace string
		wantErr   error
	}{
		{"none sent", "", 42, "a@example.com", "", nil},
		{"good", tok, 42, "a@example.com", "place-1", nil},
		{"another event", tok, 43, "a@example.com", "", pass.ErrInvalid},
		{"another email", tok, 42, "b@example.com", "", pass.ErrInvalid},
		{"another spelling of the email", tok, 42, "A@example.com", "", pass.ErrInvalid},
		{"garbage", "x.y.z", 42, "a@example.com", "", pass.ErrInvalid},
	}
	for _, tc := range cases {
		g := pass.Check(k, tc.token, tc.event, tc.email)
		if g.Place != tc.wantPlace || !errors.Is(g.Err, tc.wantErr) || (tc.wantErr == nil && g.Err != nil) {
			t.Errorf("%s: Check = %+v, want place %q, err %v", tc.name, g, tc.wantPlace, tc.wantErr)
		}
	}
	if err := (pass.Gate{}).Refusal(); !errors.Is(err, pass.ErrRequired) {
		t.Errorf("Refusal of no pass = %v, want ErrRequired", err)
	}
	if g := pass.Check(nil, tok, 42, "a@example.com"); !errors.Is(g.Err, pass.ErrInvalid) {
		t.Errorf("Check without a verifier = %+v, want ErrInvalid", g)
	}
}

// holdfast checks the MAC its passes carry, everyone else the signature:
// each refuses what does not match its check, and a pass made without a
// MAC (by another library, with our key) still verifies by its signature.
func TestHoldfastChecksTheMACAndOthersTheSignature(t *testing.T) {
	t.Parallel()
	k, other := newKeyring(t), newKeyring(t)
	c := claims(time.Minute)
	good := strings.Split(sign(t, k, c), ".")
	hdr, err := base64.RawURLEncoding.DecodeString(good[0])
	if err != nil || !strings.Contains(string(hdr), `"hf_mac":"`) {
		t.Fatalf("header %s (%v), want the MAC in it", hdr, err)
	}
	byJWKS := func(tok string) error {
		_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return privateOf(t, k).Public(), nil },
			jwt.WithValidMethods([]string{"EdDSA"}))
		return err
	}
	// The MAC intact, the signature broken: the pass is what its holder
	// was given (only the key's holder can make a MAC), so holdfast takes
	// it; a verifier with the public keys refuses it.
	badSig := good[0] + "." + good[1] + "." + flip(good[2])
	if got, err := k.Verify(badSig); err != nil || got != verified(t, k, c) {
		t.Errorf("holdfast: a pass with its MAC and a broken signature: %+v %v, want its claims", got, err)
	}
	if byJWKS(badSig) == nil {
		t.Error("a JWKS verifier took a broken signature")
	}
	// Another payload under the MAC (and signature) of this one.
	c2 := c
	c2.Email = "b@example.com"
	swapped := good[0] + "." + strings.Split(sign(t, k, c2), ".")[1] + "." + good[2]
	if _, err := k.Verify(swapped); !errors.Is(err, pass.ErrInvalid) {
		t.Errorf("another payload under this MAC: %v, want ErrInvalid", err)
	}
	// Another keyring's MAC under our kid: a header of its pass with our
	// kid spliced in.
	theirs := strings.Split(sign(t, other, c), ".")
	theirHdr, _ := base64.RawURLEncoding.DecodeString(theirs[0])
	spliced := strings.Replace(string(theirHdr), kidOf(t, other), kidOf(t, k), 1)
	if _, err := k.Verify(base64.RawURLEncoding.EncodeToString([]byte(spliced)) + "." + theirs[1] + "." + theirs[2]); !errors.Is(err, pass.ErrInvalid) {
		t.Errorf("another key's MAC under our kid: %v, want ErrInvalid", err)
	}
	// Expired: expired only with a good MAC.
	old := strings.Split(sign(t, k, claims(-2*time.Second)), ".")
	if _, err := k.Verify(strings.Join(old, ".")); !errors.Is(err, pass.ErrExpired) {
		t.Errorf("an expired pass with its MAC: %v, want ErrExpired", err)
	}
	if _, err := k.Verify(good[0] + "." + old[1] + "." + old[2]); !errors.Is(err, pass.ErrInvalid) {
		t.Errorf("an expired payload under another pass's MAC: %v, want ErrInvalid", err)
	}
	// Without the MAC: the signature decides.
	if got, err := k.Verify(withoutMAC(t, k, c, "")); err != nil || got.Email != c.Email {
		t.Errorf("a pass signed without a MAC: %+v %v, want verified by its signature", got, err)
	}
}

// verified is what Verify answers for a good pass of c.
func verified(t *testing.T, k *pass.Keyring, c pass.Claims) pass.Claims {
	t.Helper()
	got, err := k.Verify(sign(t, k, c))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAnEdgeProxyVerifiesWithTheJWKSAlone reads GET /queue/keys as a proxy
// would, turns each key back into an ed25519.PublicKey and checks a pass
// with golang-jwt, knowing nothing of this package's keyring.
func TestAnEdgeProxyVerifiesWithTheJWKSAlone(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	srv := httptest.NewServer(pass.HandleKeys(k))
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=30") {
		t.Errorf("Cache-Control = %q, want a short max-age", cc)
	}
	var raw struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, j := range raw.Keys {
		if j["kty"] != "OKP" || j["crv"] != "Ed25519" || j["alg"] != "EdDSA" || j["use"] != "sig" || j["kid"] == "" {
			t.Errorf("JWK = %v, want an OKP Ed25519 signing key with a kid", j)
		}
		pub, err := pass.JWK{Kty: j["kty"], Crv: j["crv"], X: j["x"]}.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if pass.Thumbprint(pub) != j["kid"] {
			t.Errorf("kid %q is not the key's thumbprint", j["kid"])
		}
		keys[j["kid"]] = pub
	}
	tok := sign(t, k, claims(time.Minute))
	parsed, err := jwt.Parse(tok, func(t *jwt.Token) (any, error) {
		pub, ok := keys[t.Header["kid"].(string)]
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithAudience("42"))
	if err != nil || !parsed.Valid {
		t.Fatalf("a proxy could not verify the pass with the JWK Set: %v", err)
	}
}

func TestRotationPublishesFirstThenSigns(t *testing.T) {
	t.Parallel()
	store := &memStore{}
	ctx := context.Background()
	a, err := pass.NewKeyring(ctx, store, pass.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	old := kidOf(t, a)
	oldPass := sign(t, a, claims(time.Minute))
	// Published for an hour before it signs: a still signs with the old key.
	if _, err := pass.Rotate(ctx, store, time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var set pass.JWKS
	if err := json.Unmarshal(a.JWKS(), &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS after rotation = %s, want both keys", a.JWKS())
	}
	if kid := headerKid(t, sign(t, a, claims(time.Minute))); kid != old {
		t.Errorf("before the new key's time a pass is signed by %s, want the old key %s", kid, old)
	}
	// Rotated again to sign at once: the newest key signs, both old passes
	// still verify.
	if _, err := a.Rotate(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := pass.Rotate(ctx, store, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if kid := headerKid(t, sign(t, a, claims(time.Minute))); kid == old {
		t.Errorf("after rotation a pass is still signed by the old key")
	}
	if _, err := a.Verify(oldPass); err != nil {
		t.Errorf("a pass of the old key no longer verifies within its grace: %v", err)
	}
}

func headerKid(t *testing.T, tok string) string {
	t.Helper()
	p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := p.Header["kid"].(string)
	return kid
}

// TestThumbprintIsRFC8037s checks the kid against RFC 8037's worked
// example (appendix A.3), so any JWK library computes the same one.
func TestThumbprintIsRFC8037s(t *testing.T) {
	t.Parallel()
	pub, err := pass.JWK{Kty: "OKP", Crv: "Ed25519", X: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pass.Thumbprint(pub), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
}

// TestAKeyringKeepsItsKeysWhileTheStoreIsDown: passes go on being signed
// and checked from memory while PostgreSQL is away.
func TestAKeyringKeepsItsKeysWhileTheStoreIsDown(t *testing.T) {
	t.Parallel()
	store := &memStore{}
	k, err := pass.NewKeyring(context.Background(), store, pass.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, k, claims(time.Minute))
	store.down.Store(true)
	if err := k.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh from a store that is down did not fail")
	}
	if _, err := k.Verify(tok); err != nil {
		t.Errorf("after a failed refresh the keyring refuses a good pass: %v", err)
	}
	if _, err := k.Sign(claims(time.Minute)); err != nil {
		t.Errorf("after a failed refresh the keyring cannot sign: %v", err)
	}
}

// BenchmarkVerify is the pass check of every hold of a queued sale: with
// the MAC, and by the signature alone as a pass without one is checked.
func BenchmarkVerify(b *testing.B) {
	k := newKeyring(b)
	c := claims(time.Hour)
	for _, bc := range []struct{ name, token string }{
		{"mac", sign(b, k, c)},
		{"signature", withoutMAC(b, k, c, "")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := k.Verify(bc.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
