// Package httpapi is the HTTP plumbing every holdfast handler shares: the
// one map from a domain error's kind (package problem) to its status, its
// contract code and its Retry-After, decode (strict: exact keys, once each,
// a size cap) and encode, the Content-Type rule of JSON bodies, the fixed
// set of method labels, request ids, access logs and panic recovery.
//
// Handlers return errors; WriteError is the only place that turns an error
// into a status and a body. An endpoint whose contract answers a kind with
// another status (sold_out is 400 on /book/*) says so with WithStatuses,
// once, where its handler is made; the domain never knows a status. An
// error that is not a *problem.Error is a fault of ours: it is logged with
// its detail and the client reads only "internal error".
package httpapi
