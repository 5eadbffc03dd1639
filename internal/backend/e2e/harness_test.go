package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/anthropic"
	"github.com/batchd/batchd/internal/backend/openai"
	"github.com/batchd/batchd/internal/backend/router"
	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

var discard = slog.New(slog.DiscardHandler)

// factories builds the HTTP backends from their config entries the way
// batchd serve does (internal/cli/backends.go). The router adds the policy.
var factories = map[string]router.Factory{
	router.TypeAnthropic: func(b router.BackendConfig) (backend.Backend, error) {
		return anthropic.New(anthropic.Config{
			BaseURL: b.BaseURL, APIKey: b.APIKey, Version: b.AnthropicVersion,
		})
	},
	router.TypeOpenAI: func(b router.BackendConfig) (backend.Backend, error) {
		return openai.New(openai.Config{BaseURL: b.BaseURL, APIKey: b.APIKey, ModelMap: b.ModelMap})
	},
}

// testModel is the model of every generated request.
const testModel = "claude-e2e"

// endTimeout bounds how long a test waits for a batch to end.
const endTimeout = 60 * time.Second

// chain is batchd's execution path over a fresh SQLite store.
type chain struct {
	store  *sqlite.Store
	router *router.Router
	engine *engine.Engine
}

// newChain builds the router from the YAML config, an engine configured by
// cfg (PollInterval defaults to 10ms) and a store in a temporary directory.
// lookupEnv resolves api_key_env entries and may be nil.
func newChain(tb testing.TB, config string, cfg engine.Config,
	lookupEnv func(string) (string, bool)) *chain {
	tb.Helper()

	routes, err := router.Parse([]byte(config))
	if err != nil {
		tb.Fatalf("parse backend config: %v\n%s", err, config)
	}
	if lookupEnv != nil {
		if err := routes.ResolveAPIKeys(lookupEnv); err != nil {
			tb.Fatalf("resolve API keys: %v", err)
		}
	}
	rt, err := router.New(routes, factories, clock.System{}, nil, discard)
	if err != nil {
		tb.Fatalf("create router: %v", err)
	}

	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "batchd.db"),
		sqlite.Options{})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { st.Close() })

	cfg.PollInterval = cmp.Or(cfg.PollInterval, 10*time.Millisecond)
	eng := engine.New(cfg, st, rt, clock.System{}, discard)
	return &chain{store: st, router: rt, engine: eng}
}

// anthropicConfig returns [backendConfig] for an anthropic backend.
func anthropicConfig(baseURL, policy string) string {
	return backendConfig("anthropic", baseURL, policy)
}

// backendConfig returns a config with one backend of type typ at baseURL,
// named upstream, that serves every model. policy holds the backend's further
// keys, one per line, each a scalar or a flow mapping such as
// "retry: {max_attempts: 3}".
func backendConfig(typ, baseURL, policy string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "backends:\n  - name: upstream\n    type: %s\n    base_url: %s\n", typ, baseURL)
	for line := range strings.Lines(policy) {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString("    " + line + "\n")
		}
	}
	b.WriteString("routes:\n  - model: \"*\"\n    backend: upstream\n")
	return b.String()
}

// customIDs returns n custom_ids, req-0000 to req-(n-1).
func customIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("req-%04d", i)
	}
	return ids
}

// textParams returns Messages params whose only user message is text, so that
// a fake upstream can tell from the body which request it received.
func textParams(text string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"model":%q,"max_tokens":16,`+
		`"messages":[{"role":"user","content":%q}]}`, testModel, text))
}

// textRequests returns one request per custom_id, each with textParams(id).
func textRequests(ids []string) []batch.NewRequest {
	reqs := make([]batch.NewRequest, len(ids))
	for i, id := range ids {
		reqs[i] = batch.NewRequest{CustomID: id, Params: textParams(id)}
	}
	return reqs
}

// createBatch stores an in_progress batch of reqs through the store, as the
// API does after validating a create request.
func createBatch(tb testing.TB, st store.Store, reqs []batch.NewRequest,
	betas []string) batch.Batch {
	tb.Helper()

	b, err := st.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: func(yield func(batch.NewRequest, error) bool) {
			for _, r := range reqs {
				if !yield(r, nil) {
					return
				}
			}
		},
		NewBatch: func(int64) batch.Batch {
			now := time.Now()
			return batch.Batch{ID: batch.NewBatchID(now), WorkspaceID: "wrkspc_e2e",
				Status: batch.StatusInProgress, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
				Betas: betas}
		},
	})
	if err != nil {
		tb.Fatalf("create batch: %v", err)
	}
	return b
}

// runUntilEnded runs the engine until the batch ends, and returns the ended
// batch and the time from starting the engine to seeing the batch ended.
func (c *chain) runUntilEnded(tb testing.TB, batchID string, timeout time.Duration) (
	batch.Batch, time.Duration) {
	tb.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		_ = c.engine.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case <-poll.C:
		case <-deadline.C:
			tb.Fatalf("batch %s did not end within %v", batchID, timeout)
		}

		b, err := c.store.BatchGet(ctx, store.BatchGetParams{ID: batchID})
		if err != nil {
			tb.Fatalf("get batch: %v", err)
		}
		if b.Status == batch.StatusEnded {
			return b, time.Since(start)
		}
	}
}

// resultLine is one line of a batch's results.
type resultLine struct {
	outcome batch.Outcome
	body    []byte
}

// results reads every result line of an ended batch, by custom_id.
func (c *chain) results(tb testing.TB, batchID string) map[string][]resultLine {
	tb.Helper()

	byID := map[string][]resultLine{}
	err := c.store.ResultList(context.Background(), store.ResultListParams{BatchID: batchID},
		func(customID string, outcome batch.Outcome, body []byte) error {
			byID[customID] = append(byID[customID], resultLine{outcome, slices.Clone(body)})
			return nil
		})
	if err != nil {
		tb.Fatalf("list results: %v", err)
	}
	return byID
}

// checkOneResultEach checks that each of ids has exactly one result, that no
// other custom_id has one, and that the ended batch's counts agree with the
// results. It returns the single result of each id.
func checkOneResultEach(t *testing.T, ended batch.Batch, byID map[string][]resultLine,
	ids []string) map[string]resultLine {
	t.Helper()

	single := make(map[string]resultLine, len(ids))
	outcomes := map[batch.Outcome]int64{}
	for _, id := range ids {
		lines := byID[id]
		if len(lines) != 1 {
			t.Errorf("%s has %d results, want 1", id, len(lines))
			continue
		}
		single[id] = lines[0]
		outcomes[lines[0].outcome]++
	}
	for id := range byID {
		if !slices.Contains(ids, id) {
			t.Errorf("results contain unknown custom_id %q", id)
		}
	}

	got := ended.Final
	if got.Total() != int64(len(ids)) {
		t.Errorf("batch counts total %d, want %d", got.Total(), len(ids))
	}
	if got.Processing != 0 {
		t.Errorf("ended batch has %d processing, want 0", got.Processing)
	}
	if got.Succeeded != outcomes[batch.OutcomeSucceeded] {
		t.Errorf("batch counts %d succeeded, results %d", got.Succeeded,
			outcomes[batch.OutcomeSucceeded])
	}
	if got.Errored != outcomes[batch.OutcomeErrored] {
		t.Errorf("batch counts %d errored, results %d", got.Errored,
			outcomes[batch.OutcomeErrored])
	}
	return single
}

// checkPolicyIdle checks that the backend's policy holds no slot and has no
// waiter once the batch has ended, so that no slot leaked.
func checkPolicyIdle(t *testing.T, rt *router.Router) {
	t.Helper()

	for _, s := range rt.Stats() {
		if s.InFlight != 0 || s.Waiting != 0 {
			t.Errorf("backend %s: %d in flight and %d waiting after the batch ended, want 0 and 0",
				s.Name, s.InFlight, s.Waiting)
		}
	}
}

// policyStats returns the stats of the backend named upstream.
func policyStats(tb testing.TB, rt *router.Router) router.BackendStats {
	tb.Helper()

	for _, s := range rt.Stats() {
		if s.Name == "upstream" {
			return s
		}
	}
	tb.Fatal("no backend named upstream")
	return router.BackendStats{}
}

// call is one request that a fake upstream received.
type call struct {
	customID string
	// attempt is 1 for the first call with this custom_id, 2 for the next.
	attempt int
	// arrived is when the body had been read, before the reply.
	arrived time.Time
	answer
}

// answer is the response that a fake upstream sent for a call.
type answer struct {
	// status is the HTTP status sent, or 0 when no reply was sent.
	status int
	// message reports whether the reply was a valid Message.
	message bool
	// abandoned reports whether the client closed the call while the
	// server held it without a reply.
	abandoned bool
}

// responder replies to one call.
type responder func(w http.ResponseWriter, r *http.Request, c call) answer

// fakeUpstream is a loopback Messages API server that logs every call and
// replies with a responder. It identifies each request by the text of its
// first user message, which textParams sets to the custom_id.
type fakeUpstream struct {
	tb      testing.TB
	server  *httptest.Server
	respond responder

	mu          sync.Mutex
	calls       []call
	attempts    map[string]int
	inFlight    int
	maxInFlight int
}

func newFakeUpstream(tb testing.TB, respond responder) *fakeUpstream {
	tb.Helper()

	u := &fakeUpstream{tb: tb, respond: respond, attempts: map[string]int{}}
	u.server = httptest.NewServer(http.HandlerFunc(u.serve))
	tb.Cleanup(u.server.Close)
	return u
}

// reset clears the record of calls received so far, so that a benchmark can
// measure a baseline on the server before the calls it checks.
func (u *fakeUpstream) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls = nil
	clear(u.attempts)
	u.maxInFlight = u.inFlight
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// The client gave up while sending the body, so no reply is needed.
		return
	}
	id, err := firstUserText(body)
	if err != nil {
		u.tb.Errorf("fake upstream: %v in %s", err, body)
		http.Error(w, "unreadable request", http.StatusBadRequest)
		return
	}

	u.mu.Lock()
	u.attempts[id]++
	c := call{customID: id, attempt: u.attempts[id], arrived: time.Now()}
	index := len(u.calls)
	u.calls = append(u.calls, c)
	u.inFlight++
	u.maxInFlight = max(u.maxInFlight, u.inFlight)
	u.mu.Unlock()

	a := u.respond(w, r, c)

	u.mu.Lock()
	u.calls[index].answer = a
	u.inFlight--
	u.mu.Unlock()
}

// byID returns the calls received for each custom_id, in arrival order.
func (u *fakeUpstream) byID() map[string][]call {
	u.mu.Lock()
	defer u.mu.Unlock()

	byID := map[string][]call{}
	for _, c := range u.calls {
		byID[c.customID] = append(byID[c.customID], c)
	}
	return byID
}

// count returns how many calls got status, with 0 for calls without a reply.
func (u *fakeUpstream) count(status int) int {
	u.mu.Lock()
	defer u.mu.Unlock()

	n := 0
	for _, c := range u.calls {
		if c.status == status {
			n++
		}
	}
	return n
}

func (u *fakeUpstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

// firstUserText returns the text of the first message of Messages params,
// whose content must be a string.
func firstUserText(params []byte) (string, error) {
	var p struct {
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return "", fmt.Errorf("decode params: %w", err)
	}
	if len(p.Messages) == 0 {
		return "", fmt.Errorf("params have no messages")
	}
	var text string
	if err := json.Unmarshal(p.Messages[0].Content, &text); err != nil {
		return "", fmt.Errorf("first message content is not a string: %w", err)
	}
	return text, nil
}

// messageID is the id of the Message that the fake upstream returns for the
// given call, so that a result shows which call produced it.
func messageID(customID string, attempt int) string {
	return fmt.Sprintf("msg_%s_%d", customID, attempt)
}

// writeMessage replies 200 with a Message for call c, plus extra headers.
func writeMessage(w http.ResponseWriter, c call, header http.Header) answer {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":%q,"type":"message","role":"assistant","model":%q,`+
		`"content":[{"type":"text","text":%q}],"stop_reason":"end_turn","stop_sequence":null,`+
		`"usage":{"input_tokens":3,"output_tokens":1}}`, messageID(c.customID, c.attempt),
		testModel, c.customID)
	return answer{status: http.StatusOK, message: true}
}

// writeError replies with a Messages API error envelope.
func writeError(w http.ResponseWriter, status int, errType, message string,
	header http.Header) answer {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q},"request_id":"req_fake"}`,
		errType, message)
	return answer{status: status}
}

// resetConnection closes the call's connection without a reply. SO_LINGER 0
// makes Close send a TCP RST instead of a FIN.
func resetConnection(tb testing.TB, w http.ResponseWriter) answer {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		tb.Errorf("fake upstream: hijack: %v", err)
		return answer{}
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		if err := tcp.SetLinger(0); err != nil {
			tb.Errorf("fake upstream: set linger: %v", err)
		}
	}
	conn.Close()
	return answer{}
}

// maxHang bounds how long a hanging responder waits for the client to give up.
const maxHang = 10 * time.Second

// hang blocks until the client abandons the call or maxHang passes, and
// sends no reply.
func hang(r *http.Request) answer {
	t := time.NewTimer(maxHang)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return answer{abandoned: true}
	case <-t.C:
		return answer{}
	}
}

// resultMessage decodes the fields of a succeeded result that tests check.
type resultMessage struct {
	ID      string `json:"id"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
}

// resultError decodes the error envelope of an errored result.
type resultError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeJSON[T any](t *testing.T, body []byte) T {
	t.Helper()

	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

// windowLimit admits at most limit calls in each fixed window of the given
// length, the first window starting at the first call, the way a server
// with a requests-per-window rate limit does.
type windowLimit struct {
	limit  int
	window time.Duration

	mu    sync.Mutex
	start time.Time
	index int64
	used  int
}

// windowTake is the outcome of [windowLimit.take] for one call.
type windowTake struct {
	ok        bool
	remaining int
	reset     time.Time
	index     int64
}

// take counts a call that arrives at now. It reports whether the call fits
// the window, how many calls the window has left after it, when the window
// ends and the window's index, 0 for the first.
func (l *windowLimit) take(now time.Time) windowTake {
	l.mu.Lock()
	defer l.mu.Unlock()

	if l.start.IsZero() {
		l.start = now
	}
	if index := int64(now.Sub(l.start) / l.window); index != l.index {
		l.index = index
		l.used = 0
	}
	reset := l.start.Add(time.Duration(l.index+1) * l.window)

	if l.used >= l.limit {
		return windowTake{remaining: 0, reset: reset, index: l.index}
	}
	l.used++
	return windowTake{ok: true, remaining: l.limit - l.used, reset: reset, index: l.index}
}

// requestLimitHeaders returns the anthropic-ratelimit-requests-* headers.
// The reset time has nanoseconds, so that windows shorter than a second work;
// the Anthropic API sends whole seconds.
func requestLimitHeaders(limit int, take windowTake) http.Header {
	h := http.Header{}
	h.Set("Anthropic-Ratelimit-Requests-Limit", strconv.Itoa(limit))
	h.Set("Anthropic-Ratelimit-Requests-Remaining", strconv.Itoa(take.remaining))
	h.Set("Anthropic-Ratelimit-Requests-Reset", take.reset.UTC().Format(time.RFC3339Nano))
	return h
}

// retryAfterUntil returns a retry-after value, in seconds with millisecond
// precision, for the wait from now until reset, rounded up.
func retryAfterUntil(now, reset time.Time) string {
	wait := max(reset.Sub(now), 0)
	ms := (wait + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}
