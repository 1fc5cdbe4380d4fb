package queue

import (
	"context"

	"github.com/holdfast/holdfast/sale"
)

// Event reads an event as the waiting room knows it, for the pages that
// show a queue (its name, its pace, its sale window): from the service's
// cache, which the admitter keeps fresh for queued events, so a page view
// costs PostgreSQL nothing most of the time. sale.ErrEventNotFound when
// there is no such event.
func (s *Service) Event(ctx context.Context, id int64) (sale.Event, error) {
	return s.event(ctx, id)
}
