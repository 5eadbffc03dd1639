package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/store"
)

// Versions are the anthropic-version values the API accepts.
var Versions = []string{"2023-01-01", "2023-06-01", "2026-10-21"}

// caller is the authenticated client of one API call.
type caller struct {
	workspaceID string
}

// HashKey returns the form in which an API key is stored: the hex SHA-256 of
// the key. Keys are long random strings, so a fast hash is enough to keep a
// copy of the database from revealing them.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// authenticate checks the API key, anthropic-version and
// anthropic-workspace-id headers, in that order.
func (s *Server) authenticate(r *http.Request) (caller, error) {
	key := r.Header.Get("x-api-key")
	if key == "" {
		if token, ok := strings.CutPrefix(r.Header.Get("authorization"), "Bearer "); ok {
			key = strings.TrimSpace(token)
		}
	}
	if key == "" {
		return caller{}, newError(batch.ErrAuthentication,
			"x-api-key header is required (or Authorization: Bearer <key>).")
	}

	workspace, err := s.workspaceOf(r, key)
	if err != nil {
		return caller{}, err
	}
	if err := checkVersion(r.Header.Values("anthropic-version")); err != nil {
		return caller{}, err
	}

	if asked := r.Header.Get("anthropic-workspace-id"); asked != "" && asked != workspace {
		return caller{}, newError(batch.ErrPermission,
			"anthropic-workspace-id %q does not match the workspace of this API key.", asked)
	}
	return caller{workspaceID: workspace}, nil
}

func (s *Server) workspaceOf(r *http.Request, key string) (string, error) {
	hash := HashKey(key)
	if workspace, ok := s.keys.get(hash); ok {
		return workspace, nil
	}

	stored, err := s.store.KeyGet(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return "", newError(batch.ErrAuthentication, "invalid x-api-key")
	}
	if err != nil {
		return "", err
	}
	s.keys.put(hash, stored.WorkspaceID)
	return stored.WorkspaceID, nil
}

func checkVersion(values []string) error {
	if len(values) == 0 || values[0] == "" {
		return invalidf("anthropic-version: header is required")
	}
	value := strings.Join(values, ", ")
	for _, v := range Versions {
		if value == v {
			return nil
		}
	}
	return invalidf("anthropic-version: %q is not a valid version. Valid versions: %s.",
		value, strings.Join(Versions, ", "))
}

// keyCache remembers verified key hashes for a while, so that most calls do
// not read the store to authenticate.
type keyCache struct {
	ttl   time.Duration
	clock clock.Clock

	mu      sync.Mutex
	entries map[string]keyCacheEntry
}

type keyCacheEntry struct {
	workspaceID string
	expires     time.Time
}

// keyCacheMax bounds the cache; it is cleared when full.
const keyCacheMax = 10_000

func newKeyCache(ttl time.Duration, clk clock.Clock) *keyCache {
	return &keyCache{ttl: ttl, clock: clk, entries: map[string]keyCacheEntry{}}
}

func (c *keyCache) get(hash string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || !c.clock.Now().Before(e.expires) {
		return "", false
	}
	return e.workspaceID, true
}

func (c *keyCache) put(hash, workspaceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= keyCacheMax {
		clear(c.entries)
	}
	c.entries[hash] = keyCacheEntry{workspaceID: workspaceID, expires: c.clock.Now().Add(c.ttl)}
}
