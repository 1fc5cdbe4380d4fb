package queue

import "time"

// SetReportTimes sets how slow a step must be to be reported and how
// often a report may come again, for tests that cannot wait for the
// defaults or must not trip them on a busy machine.
func (a *Admitter) SetReportTimes(slow, every time.Duration) {
	a.slowStep, a.reportEvery = slow, every
}
