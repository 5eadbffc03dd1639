package batch

import "errors"

// Error kinds. Code anywhere in batchd wraps one of these with %w and a
// message for the client. The API maps each kind to an HTTP status and an
// error type in one table, so a kind decides the response a client gets.
var (
	ErrInvalidRequest = errors.New("invalid request")
	ErrAuthentication = errors.New("authentication failed")
	ErrPermission     = errors.New("permission denied")
	ErrNotFound       = errors.New("not found")
	ErrTooLarge       = errors.New("request too large")
	ErrRateLimited    = errors.New("rate limited")
	ErrOverloaded     = errors.New("overloaded")
)
