package main

import (
	"context"

	"github.com/holdfast/holdfast/queue"
)

// passSigner is the signer of the waiting room's passes: internal/pass's,
// whose keys every instance shares through PostgreSQL. MERGE: until
// internal/pass is wired here, there is none, and admitted places carry no
// pass (tests set queue.Service.Signer).
func (a *app) passSigner(ctx context.Context) (queue.Signer, error) {
	return nil, nil
}
