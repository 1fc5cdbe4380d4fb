// Package money holds amounts of money as whole cents, so no price or total
// ever passes through a float. PostgreSQL keeps them as NUMERIC(10,2); the API
// writes them as decimal strings with two places ("299.99").
package money

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Cents is an amount of money in hundredths of the currency unit.
type Cents int64

// ErrOverflow is returned when a product does not fit in int64 cents.
var ErrOverflow = errors.New("money: amount out of range")

// Parse reads a decimal string with at most two places ("299.99", "5", "-1.5").
func Parse(s string) (Cents, error) {
	orig := s
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && (frac == "" || len(frac) > 2)) || !digits(whole) || !digits(frac) {
		return 0, fmt.Errorf("money: %q is not a decimal with at most two places", orig)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > (math.MaxInt64-99)/100 {
		return 0, fmt.Errorf("money: %q: %w", orig, ErrOverflow)
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	c := Cents(w*100 + f)
	if neg {
		c = -c
	}
	return c, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Times returns c multiplied by n, refusing to overflow.
func (c Cents) Times(n int64) (Cents, error) {
	if n == 0 || c == 0 {
		return 0, nil
	}
	p := int64(c) * n
	if p/n != int64(c) || (int64(c) == -1 && n == math.MinInt64) || (n == -1 && int64(c) == math.MinInt64) {
		return 0, ErrOverflow
	}
	return Cents(p), nil
}

// String formats c with two places: 29999 is "299.99".
func (c Cents) String() string { return string(c.appendDecimal(nil)) }

func (c Cents) appendDecimal(b []byte) []byte {
	u := uint64(c)
	if c < 0 {
		b, u = append(b, '-'), uint64(-(c+1))+1 // -(MinInt64) does not fit in int64
	}
	b = strconv.AppendUint(b, u/100, 10)
	return append(b, '.', byte('0'+u%100/10), byte('0'+u%10))
}

// MarshalJSON writes c as a JSON string, "299.99".
func (c Cents) MarshalJSON() ([]byte, error) { return c.AppendJSON(nil), nil }

// AppendJSON appends what MarshalJSON writes (httpapi.Appender's form,
// for the types that write themselves).
func (c Cents) AppendJSON(b []byte) []byte {
	b = append(b, '"')
	return append(c.appendDecimal(b), '"')
}

// Scan reads a NUMERIC column, which lib/pq hands over as text.
func (c *Cents) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case []byte:
		s = string(v)
	case string:
		s = v
	default:
		return fmt.Errorf("money: cannot scan %T", src)
	}
	parsed, err := Parse(s)
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// Value writes c as an exact decimal string for a NUMERIC parameter.
func (c Cents) Value() (driver.Value, error) { return c.String(), nil }
