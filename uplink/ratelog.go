package uplink

import (
	"log/slog"
	"sync"
	"time"
)

// peerLogBurst is how many peer events (learned, moved, hello changed)
// are logged per dropSummaryInterval; more are counted and summarized.
const peerLogBurst = 32

// rateLog logs events that a remote host can cause at most burst times
// per period; the others are counted and summarized once the period ends
// (STYLE.md 5.3: a peer cannot make corral write a line per datagram).
type rateLog struct {
	log   *slog.Logger
	per   time.Duration
	burst int

	mu sync.Mutex // mu guards the following fields
	// +checklocks:mu
	start time.Time
	// +checklocks:mu
	n, suppressed int
}

// Info logs msg at info level unless the period's burst is spent.
func (r *rateLog) Info(msg string, args ...any) {
	if r.allow(time.Now()) {
		r.log.Info(msg, args...)
	}
}

// allow reports whether one more line may be written at now.
func (r *rateLog) allow(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rollLocked(now)
	if r.n < r.burst {
		r.n++
		return true
	}
	r.suppressed++
	return false
}

// flush writes the summary of a period that has ended (control goroutine).
func (r *rateLog) flush(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rollLocked(now)
}

// +checklocks:r.mu
func (r *rateLog) rollLocked(now time.Time) {
	if now.Sub(r.start) < r.per {
		return
	}
	if r.suppressed > 0 {
		r.log.Warn("peer events not logged (rate limit)", "events", r.suppressed, "interval", r.per)
	}
	r.start, r.n, r.suppressed = now, 0, 0
}
