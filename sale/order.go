package sale

import (
	"net/mail"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
)

// Order is a validated request for tickets.
type Order struct {
	EventID int64 `json:"event_id"`
	// Email is in Unicode NFC, as it is stored.
	Email    string `json:"user_email"`
	Quantity int    `json:"quantity"`
	// Items are the tickets by category, each category at most once, their
	// quantities adding up to Quantity; nil for the seed's body, which asks
	// for the event's only category. Omitted when nil, so the seed's body
	// hashes as it always did for its idempotency key.
	Items []Item `json:"items,omitempty"`
	// Seats are the seats asked for by id, each once; Best asks for the
	// best available seats instead. Both nil for an order of tickets;
	// Quantity is then the number of seats.
	Seats []string       `json:"seats,omitempty"`
	Best  *BestAvailable `json:"best_available,omitempty"`
	// Pass is what the request's Queue-Pass came to, for a queued event.
	// It is no part of the order's values an idempotency key is hashed
	// over: a key names the order, whichever pass it came with.
	Pass pass.Gate `json:"-"`
	// Client is the address the request came from (see package
	// clientaddr), for the per-client cap; the zero Addr when unknown. It
	// is no part of the request's values: a retry from another address is
	// the same request.
	Client netip.Addr `json:"-"`
}

// Request is the JSON body of /book/* and POST /holds, as sent. Its fields
// are loose on purpose so that every mistake gets a precise message from
// Order instead of a generic decoding error.
type Request struct {
	EventID   httpapi.Int `json:"event_id"`
	UserEmail *string     `json:"user_email"`
	Quantity  httpapi.Int `json:"quantity"`
	// Items, instead of Quantity, asks for tickets of several categories.
	Items []ItemRequest `json:"items"`
	// Seats or BestAvailable, instead, asks for seats.
	Seats         []string     `json:"seats"`
	BestAvailable *BestRequest `json:"best_available"`
}

// Item is some tickets of one category of an event.
type Item struct {
	CategoryID int64 `json:"category_id"`
	Quantity   int   `json:"quantity"`
}

// ItemRequest is one item of a Request, as sent.
type ItemRequest struct {
	CategoryID httpapi.Int `json:"category_id"`
	Quantity   httpapi.Int `json:"quantity"`
}

// itemsOrder is Order for a request of items.
func (r Request) itemsOrder(maxQuantity int) (Order, error) {
	if len(r.Items) == 0 {
		return Order{}, problem.Invalidf("items must hold at least one item")
	}
	items := make([]Item, len(r.Items))
	seen := make(map[int64]bool, len(r.Items))
	total := int64(0)
	for i, it := range r.Items {
		switch {
		case !it.CategoryID.Set:
			return Order{}, problem.Invalidf("items[%d].category_id is required", i)
		case it.CategoryID.N <= 0:
			return Order{}, problem.Invalidf("items[%d].category_id must be a positive integer", i)
		case seen[it.CategoryID.N]:
			return Order{}, problem.Invalidf("items name category %d twice; send each category once", it.CategoryID.N)
		case !it.Quantity.Set:
			return Order{}, problem.Invalidf("items[%d].quantity is required", i)
		case it.Quantity.N < 1 || it.Quantity.N > int64(maxQuantity):
			return Order{}, problem.Invalidf("items[%d].quantity must be between 1 and %d", i, maxQuantity)
		}
		seen[it.CategoryID.N] = true
		total += it.Quantity.N
		items[i] = Item{CategoryID: it.CategoryID.N, Quantity: int(it.Quantity.N)}
	}
	// --max-quantity counts all items together.
	if total > int64(maxQuantity) {
		return Order{}, problem.Invalidf("the items' quantities add up to %d; at most %d in one request", total, maxQuantity)
	}
	// A quantity beside items is their sum, as an Order writes itself.
	if r.Quantity.Set && r.Quantity.N != total {
		return Order{}, problem.Invalidf("quantity is %d but the items add up to %d; send items alone", r.Quantity.N, total)
	}
	email, err := NormalizeEmail(*r.UserEmail)
	if err != nil {
		return Order{}, err
	}
	return Order{EventID: r.EventID.N, Email: email, Quantity: int(total), Items: items}, nil
}

// MaxEmailLength is the longest address accepted (RFC 5321's path limit).
const MaxEmailLength = 254

// Order validates r, allowing at most maxQuantity tickets.
func (r Request) Order(maxQuantity int) (Order, error) {
	switch {
	case !r.EventID.Set:
		return Order{}, problem.Invalidf("event_id is required")
	case r.EventID.N <= 0:
		return Order{}, problem.Invalidf("event_id must be a positive integer")
	case r.UserEmail == nil:
		return Order{}, problem.Invalidf("user_email is required")
	case r.Seats != nil || r.BestAvailable != nil:
		return r.seatedOrder(maxQuantity)
	case r.Items != nil:
		return r.itemsOrder(maxQuantity)
	case !r.Quantity.Set:
		return Order{}, problem.Invalidf("quantity is required")
	case r.Quantity.N < 1 || r.Quantity.N > int64(maxQuantity):
		return Order{}, problem.Invalidf("quantity must be between 1 and %d", maxQuantity)
	}
	email, err := NormalizeEmail(*r.UserEmail)
	if err != nil {
		return Order{}, err
	}
	return Order{EventID: r.EventID.N, Email: email, Quantity: int(r.Quantity.N)}, nil
}

// NormalizeEmail validates a bare address ("a@example.com") of at most
// MaxEmailLength characters (after NFC, characters rather than bytes: RFC
// 6532 counts them so) and returns it in Unicode NFC, the form it is stored
// in. Invalid UTF-8 and any control or format character (categories Cc and
// Cf: NUL, U+0085, zero-width spaces and joiners, bidi controls, the soft
// hyphen, the BOM) are refused: they make one address look like another, or
// like nothing, and PostgreSQL could not store a NUL.
func NormalizeEmail(s string) (string, error) {
	if s == "" {
		return "", problem.Invalidf("user_email is required")
	}
	// A JSON decoder turns invalid UTF-8 into U+FFFD, which no address
	// holds: refused in either form, whichever decoder read the body.
	if !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError) {
		return "", problem.Invalidf("user_email is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf) {
			return "", problem.Invalidf("user_email must not hold control or format characters (such as U+%04X)", r)
		}
	}
	// NFC can lengthen or shorten a string; the limit is on what is stored.
	s = norm.NFC.String(s)
	if utf8.RuneCountInString(s) > MaxEmailLength {
		return "", problem.Invalidf("user_email is longer than %d characters", MaxEmailLength)
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s || strings.ContainsAny(s, " \t\r\n<>()\"") {
		return "", errNotBare
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" || domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", errNotBare
	}
	return s, nil
}

// BuyerKey is the form in which the per-buyer cap compares emails: the
// NFKC case folding of email (Unicode's compatibility caseless match,
// D145), so that no spelling of one address (capitals, NFC or NFD, a
// full-width letter, ß or ss) counts as another buyer. It is the one
// implementation of that rule: the store writes it beside every booking it
// makes, and the database counts by it.
//
// Beyond D145 it drops Unicode's default ignorable characters (a
// combining grapheme joiner, a variation selector, a Hangul filler: none
// is seen, and NFKC_Casefold, the fold for identifiers, removes them; the
// email rules refuse the rest, Cc and Cf), and it reads a domain written
// in punycode (xn--) as the Unicode name it encodes: a@münchen.de and
// a@xn--mnchen-3ya.de are one mailbox.
func BuyerKey(email string) string {
	key := fold(email)
	// The fold first, so a full-width or capital xn-- is an A-label too;
	// each label on its own, so one that does not decode keeps its
	// spelling without keeping the others'; the fold again over what the
	// labels decoded to. Folded, the key is its own key.
	if at := strings.LastIndexByte(key, '@'); at >= 0 && strings.Contains(key[at+1:], "xn--") {
		labels := strings.Split(key[at+1:], ".")
		for i, l := range labels {
			if u, err := idna.Punycode.ToUnicode(l); err == nil {
				labels[i] = u
			}
		}
		key = fold(key[:at+1] + strings.Join(labels, "."))
	}
	return key
}

// errNotBare is NormalizeEmail's refusal of what is not a bare address,
// made once: every hold and join validates an email.
var errNotBare = problem.Invalidf("user_email must be a bare email address such as a@example.com")

// fold is Unicode's compatibility caseless match of s (D145), without the
// default ignorable characters.
//
// For ASCII that is its lower case: no ASCII character is ignorable or has
// a decomposition, and its full case folding is A-Z to a-z. Nearly every
// address is ASCII, and the full fold is four normalisations and a Caser
// (a microsecond a call); FuzzFoldASCII holds the short cut to the full
// fold, foldUnicode.
func fold(s string) string {
	if isASCII(s) {
		return strings.ToLower(s)
	}
	return foldUnicode(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func foldUnicode(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.Cf) {
			return -1
		}
		return r
	}, s)
	// A Caser keeps state: one per call, never shared between goroutines.
	c := cases.Fold()
	return norm.NFKC.String(c.String(norm.NFKD.String(c.String(norm.NFD.String(s)))))
}
