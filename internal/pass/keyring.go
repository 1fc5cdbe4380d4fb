package pass

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key is one Ed25519 key pair. Its ID (the JWT "kid") is the key's JWK
// thumbprint (RFC 7638), so the same key has the same ID everywhere.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// Public is the key's public half.
func (k Key) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// NewKey makes a key from crypto/rand.
func NewKey() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("pass: new key: %w", err)
	}
	return Key{ID: Thumbprint(priv.Public().(ed25519.PublicKey)), Private: priv}, nil
}

// Thumbprint is the RFC 7638 thumbprint of an Ed25519 public key: the
// SHA-256 of its JWK's required members in lexical order, base64url.
func Thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// StoredKey is a key as the key store has it, with its times measured by
// the database's clock at the moment it was read: how long until the key
// signs (zero or less: it signs now) and until it stops verifying.
type StoredKey struct {
	Key
	SignsIn time.Duration
	// RetiresIn is how long the key still verifies; nil: until a
	// rotation retires it.
	RetiresIn *time.Duration
}

// KeyStore keeps the keys every instance shares.
type KeyStore interface {
	// PassKeys returns every key that still verifies, by the database's
	// clock.
	PassKeys(ctx context.Context) ([]StoredKey, error)
	// EnsurePassKey adds k, signing at once, unless there is already a key
	// no rotation has retired; among instances starting together exactly
	// one adds its key.
	EnsurePassKey(ctx context.Context, k Key) error
	// RotatePassKey adds k, to sign from publish on, and retires every
	// other key grace after that.
	RotatePassKey(ctx context.Context, k Key, publish, grace time.Duration) error
}

// Defaults of Options.
const (
	// DefaultRefresh is how often a keyring reads the keys again.
	DefaultRefresh = 30 * time.Second
	// DefaultPublish is how long a rotated-in key is published before it
	// signs: long enough for every instance to have read it (one refresh)
	// and for an edge proxy's copy of GET /queue/keys to have expired
	// (KeysMaxAge), with a refresh to spare. A key that signed at once
	// would make passes that other instances refuse until they refresh.
	DefaultPublish = 3 * DefaultRefresh
	// DefaultGrace is how long the keys a rotation replaces keep
	// verifying once the new key signs: at least the longest pass_ttl, so
	// every pass they signed expires first.
	DefaultGrace = time.Hour
)

// Options tune a Keyring; zero fields take the defaults.
type Options struct {
	Refresh time.Duration
}

// Keyring signs passes with the newest key that signs and verifies them
// with every key that still verifies. It holds the keys in memory, read
// from the key store at start and again every Options.Refresh, so checking
// a pass costs no round trip to anything; a rotated-in key reaches every
// instance within one refresh.
type Keyring struct {
	store   KeyStore
	refresh time.Duration
	log     *slog.Logger
	keys    atomic.Pointer[keyset]
	parser  *jwt.Parser
	// validator checks a pass's times once its MAC or signature is.
	validator *jwt.Validator
}

// keyset is one reading of the key store, never changed once made.
type keyset struct {
	keys []loadedKey // in the order they start signing
	byID map[string]*loadedKey
	jwks []byte // the public keys, as GET /queue/keys answers them
}

type loadedKey struct {
	Key
	public  ed25519.PublicKey
	mac     []byte    // the key of the pass's MAC (macKey)
	signsAt time.Time // on this process's monotonic clock
	retires time.Time // zero: not retired
}

// macKey is the secret of the MAC a pass carries for holdfast's own
// instances (Sign): derived from the private key, so it is exactly as
// secret, lives and retires with it, and needs no storage of its own.
func macKey(k Key) []byte {
	m := hmac.New(sha256.New, k.Private.Seed())
	m.Write([]byte("holdfast pass mac v1"))
	return m.Sum(nil)
}

// passMAC is the MAC of a pass's payload segment, base64url.
func passMAC(key []byte, payload string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// NewKeyring makes the first key if the store has none, reads the keys and
// returns a keyring; Run keeps it fresh.
func NewKeyring(ctx context.Context, store KeyStore, opts Options, log *slog.Logger) (*Keyring, error) {
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	k := &Keyring{
		store: store, refresh: opts.Refresh, log: log,
		// The parser only decodes (strictly); check refuses every alg
		// but EdDSA (none, HS256 with our public key as its secret,
		// RS256) before any key is looked up. No leeway on exp: a pass
		// is never taken past the expiry it states; instances' clocks
		// agree to milliseconds under NTP.
		parser:    jwt.NewParser(jwt.WithStrictDecoding()),
		validator: jwt.NewValidator(jwt.WithExpirationRequired(), jwt.WithLeeway(0)),
	}
	first, err := NewKey()
	if err != nil {
		return nil, err
	}
	if err := store.EnsurePassKey(ctx, first); err != nil {
		return nil, fmt.Errorf("pass: first key: %w", err)
	}
	if err := k.Refresh(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Run reads the keys every refresh until ctx is done. A failed read keeps
// the keys it had: passes go on being checked while PostgreSQL is away.
func (k *Keyring) Run(ctx context.Context) {
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.Refresh(ctx); err != nil && ctx.Err() == nil {
				k.log.WarnContext(ctx, "pass keys not refreshed; keeping the last ones", "err", err)
			}
		}
	}
}

// Refresh reads the keys from the store now.
func (k *Keyring) Refresh(ctx context.Context) error {
	stored, err := k.store.PassKeys(ctx)
	if err != nil {
		return fmt.Errorf("pass: read keys: %w", err)
	}
	set, err := newKeyset(stored, time.Now())
	if err != nil {
		return err
	}
	k.keys.Store(set)
	return nil
}

// Rotate adds a new key that signs from DefaultPublish on and retires the
// others grace after that, then reads the keys again.
func (k *Keyring) Rotate(ctx context.Context, grace time.Duration) (Key, error) {
	key, err := Rotate(ctx, k.store, DefaultPublish, grace)
	if err != nil {
		return Key{}, err
	}
	return key, k.Refresh(ctx)
}

// Rotate adds a new key to store that signs from publish on, and retires
// every other key grace after that. It is what `holdfast pass-keys rotate`
// runs.
func Rotate(ctx context.Context, store KeyStore, publish, grace time.Duration) (Key, error) {
	if publish < 0 || grace < 0 {
		return Key{}, errors.New("pass: rotate: publish and grace must not be negative")
	}
	key, err := NewKey()
	if err != nil {
		return Key{}, err
	}
	if err := store.RotatePassKey(ctx, key, publish, grace); err != nil {
		return Key{}, fmt.Errorf("pass: rotate: %w", err)
	}
	return key, nil
}

func newKeyset(stored []StoredKey, now time.Time) (*keyset, error) {
	set := &keyset{byID: make(map[string]*loadedKey, len(stored))}
	jwks := JWKS{Keys: make([]JWK, 0, len(stored))}
	for _, s := range stored {
		if len(s.Private) != ed25519.PrivateKeySize || s.ID != Thumbprint(s.Public()) {
			return nil, fmt.Errorf("pass: key %q is damaged", s.ID)
		}
		lk := loadedKey{Key: s.Key, public: s.Public(), mac: macKey(s.Key), signsAt: now.Add(s.SignsIn)}
		if s.RetiresIn != nil {
			lk.retires = now.Add(*s.RetiresIn)
		}
		set.keys = append(set.keys, lk)
		jwks.Keys = append(jwks.Keys, PublicJWK(s.ID, lk.public))
	}
	for i := range set.keys {
		set.byID[set.keys[i].ID] = &set.keys[i]
	}
	var err error
	if set.jwks, err = json.Marshal(jwks); err != nil {
		return nil, fmt.Errorf("pass: key set: %w", err)
	}
	return set, nil
}

// signer is the key that signs at now: the last of those that have begun.
func (s *keyset) signer(now time.Time) (*loadedKey, bool) {
	for i := len(s.keys) - 1; i >= 0; i-- {
		k := &s.keys[i]
		if !k.signsAt.After(now) && (k.retires.IsZero() || k.retires.After(now)) {
			return k, true
		}
	}
	return nil, false
}

// verifier is the key t's kid names, if it still verifies.
func (s *keyset) verifier(t *jwt.Token) (*loadedKey, error) {
	kid, _ := t.Header["kid"].(string)
	key, ok := s.byID[kid]
	if !ok || (!key.retires.IsZero() && !key.retires.After(time.Now())) {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	return key, nil
}

// claims is a pass as a JWT claims set. aud is the event id as one string,
// not the one-element array golang-jwt would write for a ClaimStrings.
type claims struct {
	Audience  string           `json:"aud"`
	Subject   string           `json:"sub"`
	Email     string           `json:"email"`
	Cap       int              `json:"cap"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c *claims) GetIssuer() (string, error)                   { return "", nil }
func (c *claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings{c.Audience}, nil }

// MaxTokenLength bounds a pass; a longer header is refused unparsed.
const MaxTokenLength = 2048

// Sign makes a pass for c with the key that signs now. Times in a JWT are
// whole seconds, so the pass expires at c.ExpiresAt truncated to one.
func (k *Keyring) Sign(c Claims) (string, error) {
	switch {
	case c.EventID <= 0:
		return "", errors.New("pass: sign: event id must be positive")
	case c.PlaceID == "" || c.Email == "":
		return "", errors.New("pass: sign: place and email are required")
	case c.Cap < 0:
		return "", errors.New("pass: sign: cap must not be negative")
	case c.ExpiresAt.IsZero():
		return "", errors.New("pass: sign: expiry is required")
	}
	now := time.Now()
	key, ok := k.keys.Load().signer(now)
	if !ok {
		return "", errors.New("pass: sign: no key signs now")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &claims{
		Audience: strconv.FormatInt(c.EventID, 10), Subject: c.PlaceID, Email: c.Email, Cap: c.Cap,
		ExpiresAt: jwt.NewNumericDate(c.ExpiresAt), IssuedAt: jwt.NewNumericDate(now),
	})
	t.Header["kid"] = key.ID
	// The header carries a MAC of the payload (see Verify): the payload
	// segment is the same bytes with the MAC in the header or without.
	unsigned, err := t.SigningString()
	if err != nil {
		return "", fmt.Errorf("pass: sign: %w", err)
	}
	t.Header[macHeader] = passMAC(key.mac, unsigned[strings.IndexByte(unsigned, '.')+1:])
	s, err := t.SignedString(key.Private)
	if err != nil {
		return "", fmt.Errorf("pass: sign: %w", err)
	}
	return s, nil
}

// macHeader is the JOSE header parameter of a pass's MAC. A JWS verifier
// ignores a header parameter it does not know (RFC 7515 4), so the pass
// stays a plain EdDSA JWT to everyone else.
const macHeader = "hf_mac"

// Verify checks token against the key its kid names, among those that
// still verify, and its expiry, and returns its claims. A token that is
// malformed, names an unknown key, is badly signed or does not say what a
// pass says is ErrInvalid; a good one past its exp is ErrExpired.
//
// holdfast checks the MAC of the payload its header carries, not the
// Ed25519 signature: a signature check costs ~70 us of CPU, the MAC ~1 us,
// and the pass check is on every hold of a queued sale. Only a holder of
// the private key can make either (the MAC's key is derived from it), so
// the MAC proves what the signature does, to us; the signature is for
// everyone else, with the public keys of GET /queue/keys. A pass without
// a MAC has its signature checked.
func (k *Keyring) Verify(token string) (Claims, error) {
	if len(token) > MaxTokenLength {
		return Claims{}, fmt.Errorf("%w: token of %d bytes", ErrInvalid, len(token))
	}
	set := k.keys.Load()
	var c claims
	t, parts, err := k.parser.ParseUnverified(token, &c)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	err = k.check(set, t, parts, &c)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		// The MAC or signature was checked first: only a pass of ours
		// expires.
		return Claims{}, fmt.Errorf("%w: %v", ErrExpired, err)
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	event, err := strconv.ParseInt(c.Audience, 10, 64)
	if err != nil || event <= 0 || c.Subject == "" || c.Email == "" || c.Cap < 0 {
		return Claims{}, fmt.Errorf("%w: claims are not a pass's", ErrInvalid)
	}
	return Claims{EventID: event, PlaceID: c.Subject, Email: c.Email, Cap: c.Cap, ExpiresAt: c.ExpiresAt.Time.UTC()}, nil
}

// check checks a parsed pass as golang-jwt's parser checks a signed one:
// the alg, the key its kid names, then the MAC its header carries (see
// Verify) or, without one, its signature, then the claims' times.
func (k *Keyring) check(set *keyset, t *jwt.Token, parts []string, c *claims) error {
	if t.Method != jwt.SigningMethodEdDSA {
		return fmt.Errorf("signing method %v is invalid", t.Header["alg"])
	}
	key, err := set.verifier(t)
	if err != nil {
		return err
	}
	if mac, ok := t.Header[macHeader].(string); ok {
		if !hmac.Equal([]byte(mac), []byte(passMAC(key.mac, parts[1]))) {
			return errors.New("the MAC does not match the payload")
		}
	} else if err := t.Method.Verify(parts[0]+"."+parts[1], t.Signature, key.public); err != nil {
		return fmt.Errorf("the signature does not match: %w", err)
	}
	return k.validator.Validate(c)
}

// JWKS returns the public keys that verify passes, as a JSON JWK Set.
func (k *Keyring) JWKS() []byte { return k.keys.Load().jwks }
