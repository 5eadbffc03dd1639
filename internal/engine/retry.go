package engine

import (
	"context"
	"math/rand/v2"
	"time"
)

// Store write retries: a store error is usually a short lock wait or a
// dropped connection, so a few quick, capped, jittered attempts are enough.
const (
	storeAttempts  = 5
	storeBaseDelay = 50 * time.Millisecond
	storeMaxDelay  = 2 * time.Second
)

// retry calls fn until it succeeds, storeAttempts have failed, or ctx ends.
// It returns fn's last error.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := range storeAttempts {
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
		if attempt == storeAttempts-1 {
			break
		}

		delay := min(storeMaxDelay, storeBaseDelay<<attempt)
		delay = delay/2 + rand.N(delay/2+1) // jitter in [delay/2, delay]
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
	return err
}
