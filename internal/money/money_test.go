package money

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"testing"
)

func TestParseAndString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want Cents
		out  string
	}{
		{"299.99", 29999, "299.99"},
		{"5", 500, "5.00"},
		{"0.5", 50, "0.50"},
		{"-1.05", -105, "-1.05"},
		{"0", 0, "0.00"},
		{"49.50", 4950, "49.50"},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if err != nil || got != c.want || got.String() != c.out {
			t.Errorf("Parse(%q) = %d (%q), %v; want %d (%q)", c.in, got, got.String(), err, c.want, c.out)
		}
	}
	for _, bad := range []string{"", "1.234", "abc", "1.", ".5", "1e3", "--1", "1,00", "99999999999999999999"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestTimesIsExact(t *testing.T) {
	t.Parallel()
	c, _ := Parse("299.99")
	got, err := c.Times(990)
	if err != nil || got.String() != "296990.10" {
		t.Fatalf("299.99 x 990 = %s, %v", got, err)
	}
	big := Cents(1 << 62)
	if _, err := big.Times(4); err == nil {
		t.Fatal("overflow not refused")
	}
	b, _ := json.Marshal(struct{ P Cents }{got})
	if string(b) != `{"P":"296990.10"}` {
		t.Fatalf("JSON = %s", b)
	}
}

func FuzzMoneyArithmetic(f *testing.F) {
	f.Add("299.99", int64(3))
	f.Add("0.01", int64(-7))
	f.Add("-92233720368547758.07", int64(1))
	f.Fuzz(func(t *testing.T, s string, n int64) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		// Round trip.
		back, err := Parse(c.String())
		if err != nil || back != c {
			t.Fatalf("Parse(%q).String() = %q does not parse back (%v)", s, c.String(), err)
		}
		// Times against exact arithmetic.
		exact := new(big.Int).Mul(big.NewInt(int64(c)), big.NewInt(n))
		got, err := c.Times(n)
		if !exact.IsInt64() {
			if err == nil {
				t.Fatalf("%s x %d overflowed silently to %s", c, n, got)
			}
			return
		}
		if err != nil || int64(got) != exact.Int64() {
			t.Fatalf("%s x %d = %s (%v), want %s cents", c, n, got, err, exact)
		}
	})
}

// String writes what the %d.%02d of its sign and magnitude writes, at the
// edges of int64 too.
func TestStringAtTheEdges(t *testing.T) {
	t.Parallel()
	for _, c := range []Cents{0, 1, 9, 10, 99, 100, 101, -1, -9, -10, -99, -100, -101, math.MaxInt64, math.MinInt64, math.MinInt64 + 1} {
		u, sign := uint64(c), ""
		if c < 0 {
			sign, u = "-", uint64(-(c+1))+1
		}
		if want := fmt.Sprintf("%s%d.%02d", sign, u/100, u%100); c.String() != want {
			t.Errorf("Cents(%d).String() = %q, want %q", int64(c), c.String(), want)
		}
		if got, want := string(c.AppendJSON([]byte("x"))), `x"`+c.String()+`"`; got != want {
			t.Errorf("Cents(%d).AppendJSON = %s, want %s", int64(c), got, want)
		}
	}
}
