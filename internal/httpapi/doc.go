// Package httpapi is the HTTP plumbing every holdfast handler shares: the
// error type clients see and the one table that maps its codes to statuses,
// decode (strict: exact keys, once each, a size cap) and encode, the
// Content-Type rule of JSON bodies, the fixed set of method labels, request
// ids, access logs and panic recovery.
//
// Handlers return errors; WriteError is the only place that turns an error
// into a status and a body. An error that is not an *Error is a fault of
// ours: it is logged with its detail and the client reads only
// "internal error".
package httpapi
