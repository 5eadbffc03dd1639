package policy

import (
	"slices"
	"sync"
	"time"

	"github.com/batchd/batchd/internal/backend"
)

// pacer delays new sends while the server's rate-limit report shows its
// window is used up. The rules are in the package documentation.
//
// Responses reach the pacer in a different order than their sends reached
// the server, so the pacer does not simply trust the last report it read.
// Within one window the server's remaining count only falls, so the report
// with the lowest count is the most recent one in the server's order, and a
// report with a later reset time belongs to a later window. The report in use
// is the most recent by that order. Every send that may have reached the
// server after it is counted against it: the sends that were waiting for
// their responses when it was read, and those admitted since. A send leaves
// that set when its own response shows the server counted it before the
// report in use, or in an earlier window.
type pacer struct {
	requestsReserve int64
	tokensReserve   int64
	maxHold         time.Duration

	mu sync.Mutex
	// sent numbers the sends admitted so far.
	sent int64
	// pending contains the numbers of the admitted sends whose responses
	// have not arrived, in increasing order.
	pending []int64

	// requestsRemaining is the count of the report in use, or -1 when there
	// is none. requestsReset is its reset time.
	requestsRemaining int64
	requestsReset     time.Time
	// uncounted contains, in increasing order, the sends that the report in
	// use may not include.
	uncounted []int64
	// room is closed when sends held by the requests count may go again
	// because responses showed that the server had counted sends that were
	// still counted against the report in use. It is nil when no send waits
	// for that.
	room chan struct{}

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
// is returned for finish. A held send also gets a channel, or nil, that is
// closed if it may go before the wait is over. The send then calls admit
// again.
func (p *pacer) admit(now time.Time) (time.Duration, int64, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()

	var until time.Time
	if now.Before(p.retryAfterUntil) {
		until = p.retryAfterUntil
	}

	if p.requestsRemaining >= 0 && !now.Before(p.requestsReset) {
		// The window of the report in use is over.
		p.requestsRemaining = -1
		p.uncounted = p.uncounted[:0]
	}
	var room <-chan struct{}
	if p.requestsRemaining >= 0 && !p.requestsRoom() {
		until = later(until, p.requestsReset)
		if len(p.uncounted) > 0 {
			if p.room == nil {
				p.room = make(chan struct{})
			}
			room = p.room
		}
	}

	tokensKnown := p.tokensRemaining >= 0 && now.Before(p.tokensReset)
	if tokensKnown && p.tokensRemaining <= p.tokensReserve {
		until = later(until, p.tokensReset)
	}

	if !until.IsZero() {
		return until.Sub(now), 0, room
	}
	p.sent++
	p.pending = append(p.pending, p.sent)
	if p.requestsRemaining >= 0 {
		p.uncounted = append(p.uncounted, p.sent)
	}
	return 0, p.sent, nil
}

// requestsRoom reports whether the report in use leaves room for a send
// after the reserve, counting every send it may not include.
func (p *pacer) requestsRoom() bool {
	return p.requestsRemaining-int64(len(p.uncounted)) > p.requestsReserve
}

// finish records the end of send seq at now and the rate-limit report its
// response carried, if any. Every admitted send is finished once. Reset
// times further than maxHold ahead are cut to maxHold from now.
func (p *pacer) finish(now time.Time, lim backend.Limits, seq int64) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.pending = remove(p.pending, seq)

	latest := now.Add(p.maxHold)
	if lim.RequestsRemaining >= 0 && !lim.RequestsReset.IsZero() {
		p.observeRequests(lim.RequestsRemaining, earlier(lim.RequestsReset, latest), seq)
		if p.room != nil && p.requestsRoom() {
			close(p.room)
			p.room = nil
		}
	}
	if lim.TokensRemaining >= 0 && !lim.TokensReset.IsZero() {
		p.tokensRemaining = lim.TokensRemaining
		p.tokensReset = earlier(lim.TokensReset, latest)
	}
}

// observeRequests records the report of send seq: remaining requests
// until reset. A send without a report stays among the uncounted ones, since the
// pacer cannot tell whether the server counted it.
func (p *pacer) observeRequests(remaining int64, reset time.Time, seq int64) {
	switch {
	case p.requestsRemaining < 0 || reset.After(p.requestsReset),
		reset.Equal(p.requestsReset) && remaining < p.requestsRemaining:
		// The first report, or one the server wrote later than the
		// report in use.
		p.requestsRemaining = remaining
		p.requestsReset = reset
		p.uncounted = append(p.uncounted[:0], p.pending...)
	default:
		// The server counted this send before the report in use, or in
		// an earlier window.
		p.uncounted = remove(p.uncounted, seq)
	}
}

// remove deletes seq from the sorted slice s, if it is there.
func remove(s []int64, seq int64) []int64 {
	if i, found := slices.BinarySearch(s, seq); found {
		return slices.Delete(s, i, i+1)
	}
	return s
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
