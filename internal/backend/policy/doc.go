// Package policy wraps one model backend with the rules that keep batchd a
// good client of it: retries with backoff, an adaptive concurrency limit and
// pacing by the rate-limit headers the server reports.
//
// # Retries
//
// A request whose attempt fails with a temporary error (see
// [backend.Error.Temporary]: rate limits, overload, server errors, timeouts
// and connection failures) is sent again, up to [Config.MaxAttempts]
// attempts in all. Before attempt n+1 the policy waits a random duration in
// [d/2, d], where d is BaseDelay·2^(n-1) capped at MaxDelay. When the server
// sent a retry-after, the wait is at least that long, except that a
// retry-after above MaxRetryAfter counts as MaxRetryAfter. Errors that are
// not temporary are returned at once. When the attempts run out, the last
// error is returned unchanged, so the caller can record it as the request's
// errored result. Every attempt gets its own deadline of [Config.Timeout].
//
// # Concurrency
//
// The number of requests in flight is bounded by a limit that moves between
// MinConcurrency and MaxConcurrency (AIMD). It starts at MaxConcurrency. A
// 429 or 529 response halves it, but only once per round of requests.
// Responses to requests that started before the last decrease do not lower
// it again, so one burst of 429s costs one halving rather than collapsing
// the limit. Each success adds 1/limit, so the limit grows by about one slot
// for each limit's worth of successful requests. Callers wait in FIFO order
// for a free slot, and stop waiting when their context ends.
//
// # Pacing
//
// The policy reads the rate-limit report ([backend.Limits]) of every response,
// success or error, and holds new sends (they wait, holding their slot) in
// three cases:
//
//   - Requests: the report in use gave R requests remaining and a reset time
//     in the future. Responses arrive in a different order than the server
//     counted their sends, so the report in use is the server's latest: of
//     the reports with the latest reset time, the one with the lowest R.
//     Every send that may have reached the server after that report's own
//     send counts against R: the sends still waiting for their responses
//     when the report was read, and the sends started since. A send stops
//     counting when its response shows the server counted it earlier (a
//     higher R in the same window, or an earlier reset time). Once R minus
//     the sends counted against it is at most RequestsReserve, new sends wait
//     until the reset time, or until a response frees room as above. A
//     report whose reset time has passed no longer holds anything.
//   - Tokens: the last report gave at most TokensReserve tokens remaining
//     and a reset time in the future. New sends wait until that reset time.
//     Sends do not count against tokens, because the policy cannot tell how many
//     tokens a request will use.
//   - A 429 with a retry-after: new sends wait until that wait is over.
//
// A reset time more than MaxRetryAfter ahead of the response that reported it
// is treated as MaxRetryAfter ahead, and so is a longer retry-after. A wrong
// reset time, such as one from a server clock far ahead of ours, therefore
// cannot stall a backend for long.
//
// A server whose limit refills continuously, as a token bucket does, would
// accept some requests before the reset time, so for such a server the hold
// is longer than needed. It trades some throughput for fewer 429s.
//
// # Time
//
// Every wait goes through a [Sleeper] and every reading of the time through a
// [clock.Clock], so tests run minutes of backoff and pacing at once with
// [FakeSleeper] and [clock.Fake].
package policy
