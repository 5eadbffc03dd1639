package openai

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/batchd/batchd/internal/apitest/openapi"
	"github.com/batchd/batchd/internal/backend"
)

func newTestBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()

	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return b
}

// sendError calls Send with params and returns its *backend.Error, failing
// the test when Send succeeds or returns another kind of error.
func sendError(t *testing.T, b *Backend, params string) *backend.Error {
	t.Helper()

	_, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(params)})
	if err == nil {
		t.Fatal("Send succeeded, want an error")
	}
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("Send error = %v (%T), want a *backend.Error", err, err)
	}
	return be
}

// jsonEqual reports whether a and b hold the same JSON value, ignoring
// formatting and the order of object keys.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()

	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// checkValidMessage checks a translated reply against the Message schema of
// the Messages API's OpenAPI document.
func checkValidMessage(t *testing.T, body []byte) {
	t.Helper()

	if err := openapi.Load(t).Message(body); err != nil {
		t.Errorf("translated reply is not a valid Message: %v\n%s", err, body)
	}
}
