// Package problem holds the errors holdfast's rules answer a request with:
// a Kind, which says what went wrong in the domain's words (sold out, not
// on sale, a hold that expired), and a message for a person. It knows
// nothing of HTTP: internal/httpapi holds the one map from kind to status
// and contract code, with the few endpoints whose contract differs (sold
// out is 400 on /book/* and 409 on /holds) passing their own statuses.
//
// It is a leaf under internal/ rather than part of the domain package
// because everything that refuses a request needs it, the domain's own
// dependencies included: internal/pass (a pass that expired),
// internal/idempotency (a key used with other values), internal/ratelimit
// (too many requests), and the store (text the database cannot hold).
package problem
