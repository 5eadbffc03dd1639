package policy

import (
	"sync"
	"time"

	"github.com/batchd/batchd/internal/backend"
)

// pacer delays new sends while the server's rate-limit report shows its
// window is used up. The rules are in the package documentation.
type pacer struct {
	requestsReserve int64
	tokensReserve   int64
	maxHold         time.Duration

	mu sync.Mutex
	// requestsRemaining is the last reported count, or -1 when unknown.
	requestsRemaining int64
	requestsReset     time.Time
	// sent numbers the sends admitted so far; reportSeq is the number of the
	// send whose response carried the report in use. The server counted that
	// send and, most likely, the ones before it, so sends numbered above
	// reportSeq are the ones the report may not include yet.
	sent      int64
	reportSeq int64

	tokensRemaining int64
	tokensReset     time.Time

	// retryAfterUntil is the end of the wait that the last 429 asked for.
	retryAfterUntil time.Time
}

func newPacer(cfg Config) *pacer {
	return &pacer{
		requestsReserve:   cfg.RequestsReserve,
		tokensReserve:     cfg.TokensReserve,
		maxHold:           cfg.MaxRetryAfter,
		requestsRemaining: -1,
		tokensRemaining:   -1,
	}
}

// admit returns how long a send must wait at now, or 0 when it may go. A
// send that may go is counted against the requests remaining, and its number
// is returned for observe.
func (p *pacer) admit(now time.Time) (time.Duration, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()

	var until time.Time
	if now.Before(p.retryAfterUntil) {
		until = p.retryAfterUntil
	}

	requestsKnown := p.requestsRemaining >= 0 && now.Before(p.requestsReset)
	if requestsKnown && p.requestsRemaining-(p.sent-p.reportSeq) <= p.requestsReserve {
		until = later(until, p.requestsReset)
	}

	tokensKnown := p.tokensRemaining >= 0 && now.Before(p.tokensReset)
	if tokensKnown && p.tokensRemaining <= p.tokensReserve {
		until = later(until, p.tokensReset)
	}

	if !until.IsZero() {
		return until.Sub(now), 0
	}
	p.sent++
	return 0, p.sent
}

// observe records the rate-limit report of the response to send seq,
// received at now. A report replaces the one in use unless it belongs to an
// earlier send in the same window, because responses can arrive out of order
// and an older report would count too few requests. Reset times further than
// maxHold ahead are cut to maxHold from now.
func (p *pacer) observe(now time.Time, lim backend.Limits, seq int64) {
	p.mu.Lock()
	defer p.mu.Unlock()

	latest := now.Add(p.maxHold)
	if lim.RequestsRemaining >= 0 && !lim.RequestsReset.IsZero() {
		reset := earlier(lim.RequestsReset, latest)
		stale := seq < p.reportSeq && !reset.After(p.requestsReset)
		if !stale {
			p.requestsRemaining = lim.RequestsRemaining
			p.requestsReset = reset
			p.reportSeq = seq
		}
	}
	if lim.TokensRemaining >= 0 && !lim.TokensReset.IsZero() {
		p.tokensRemaining = lim.TokensRemaining
		p.tokensReset = earlier(lim.TokensReset, latest)
	}
}

// holdFor delays new sends for d from now, as a 429's retry-after requests.
func (p *pacer) holdFor(now time.Time, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retryAfterUntil = later(p.retryAfterUntil, now.Add(min(d, p.maxHold)))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// hasReport reports whether lim holds anything that pacing reads.
func hasReport(lim backend.Limits) bool {
	return !lim.RequestsReset.IsZero() || !lim.TokensReset.IsZero()
}
