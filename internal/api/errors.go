package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/batchd/batchd/internal/batch"
)

// errMethodNotAllowed is the kind of a request whose path exists but not for
// its method.
var errMethodNotAllowed = errors.New("method not allowed")

// clientError is an error whose message is meant for the API client. Its
// kind decides the status and error type.
type clientError struct {
	kind    error
	message string
}

func (e *clientError) Error() string { return e.message }
func (e *clientError) Unwrap() error { return e.kind }

func newError(kind error, format string, args ...any) error {
	return &clientError{kind: kind, message: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return newError(batch.ErrInvalidRequest, format, args...)
}

// errorKinds maps each error kind to its HTTP status and Messages API error
// type. It is the only place that decides what a client sees for an error.
var errorKinds = []struct {
	kind      error
	status    int
	errorType string
}{
	{batch.ErrInvalidRequest, http.StatusBadRequest, "invalid_request_error"},
	{batch.ErrAuthentication, http.StatusUnauthorized, "authentication_error"},
	{batch.ErrPermission, http.StatusForbidden, "permission_error"},
	{batch.ErrNotFound, http.StatusNotFound, "not_found_error"},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "invalid_request_error"},
	{batch.ErrTooLarge, http.StatusRequestEntityTooLarge, "request_too_large"},
	{batch.ErrRateLimited, http.StatusTooManyRequests, "rate_limit_error"},
	{batch.ErrOverloaded, 529, "overloaded_error"},
}

// retryAfterOverloaded is the wait sent with 429 and 529 responses.
const retryAfterOverloaded = 5 * time.Second

type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// writeError sends err as the API's JSON error envelope. Errors of no known
// kind are internal: the client gets a 500 api_error with a generic message
// and the error is logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, errorType, message := http.StatusInternalServerError, "api_error",
		"Internal server error. The request may be retried."
	for _, k := range errorKinds {
		if errors.Is(err, k.kind) {
			status, errorType = k.status, k.errorType
			message = clientMessage(err)
			break
		}
	}

	requestID := requestIDFrom(r.Context())
	if status == http.StatusInternalServerError {
		s.logger.ErrorContext(r.Context(), "request failed", "request_id", requestID,
			"method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusTooManyRequests || status == 529 {
		w.Header().Set("retry-after", strconv.Itoa(int(retryAfterOverloaded.Seconds())))
	}

	var body errorBody
	body.Type = "error"
	body.Error.Type = errorType
	body.Error.Message = message
	body.RequestID = requestID
	writeJSON(w, status, body)
}

// clientMessage returns the message of the outermost clientError in err's
// chain, or err's own text.
func clientMessage(err error) string {
	var ce *clientError
	if errors.As(err, &ce) {
		return ce.message
	}
	return err.Error()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are rendered; they always marshal.
		panic(fmt.Sprintf("render %T: %v", v, err))
	}
	writeBody(w, status, body)
}
