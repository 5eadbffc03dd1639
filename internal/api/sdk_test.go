package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

func TestSDKCreatePollResults(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	client := h.client(keyA)
	ctx := context.Background()

	const n = 40
	requests := make([]anthropic.MessageBatchNewParamsRequest, n)
	for i := range requests {
		requests[i] = anthropic.MessageBatchNewParamsRequest{
			CustomID: fmt.Sprintf("req-%d", i),
			Params: anthropic.MessageBatchNewParamsRequestParams{
				Model:     "claude-sonnet-4-5",
				MaxTokens: 128,
				Messages: []anthropic.MessageParam{
					anthropic.NewUserMessage(anthropic.NewTextBlock(fmt.Sprintf("Question %d", i))),
				},
			},
		}
	}
	// One request with invalid params: accepted now, errored later.
	requests[n-1].Params.MaxTokens = 0

	created, err := client.Messages.Batches.New(ctx, anthropic.MessageBatchNewParams{Requests: requests})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.ProcessingStatus != anthropic.MessageBatchProcessingStatusInProgress {
		t.Errorf("status after create = %s, want in_progress", created.ProcessingStatus)
	}
	if created.RequestCounts.Processing != n {
		t.Errorf("processing after create = %d, want %d", created.RequestCounts.Processing, n)
	}
	if !strings.HasPrefix(created.ID, "msgbatch_") {
		t.Errorf("id %q lacks the msgbatch_ prefix", created.ID)
	}
	if got := created.ExpiresAt.Sub(created.CreatedAt); got != 24*time.Hour {
		t.Errorf("expires_at - created_at = %s, want 24h", got)
	}

	ended := pollEnded(t, client, created.ID)
	counts := ended.RequestCounts
	if counts.Succeeded != n-1 || counts.Errored != 1 {
		t.Errorf("counts = %+v, want %d succeeded and 1 errored", counts, n-1)
	}
	if counts.Processing+counts.Succeeded+counts.Errored+counts.Canceled+counts.Expired != n {
		t.Errorf("counts %+v do not add up to %d", counts, n)
	}
	if ended.ResultsURL == "" || ended.EndedAt.IsZero() {
		t.Errorf("ended batch lacks results_url or ended_at: %+v", ended)
	}

	checkSDKResults(t, h, client, created.ID, n)
	checkResultsURL(t, h, ended.ResultsURL, n)
}

func pollEnded(t *testing.T, client anthropic.Client, id string) *anthropic.MessageBatch {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := client.Messages.Batches.Get(context.Background(), id, anthropic.MessageBatchGetParams{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if b.ProcessingStatus == anthropic.MessageBatchProcessingStatusEnded {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s did not end: %+v", id, b.RequestCounts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkSDKResults(t *testing.T, h *harness, client anthropic.Client, id string, n int) {
	t.Helper()
	stream := client.Messages.Batches.ResultsStreaming(context.Background(), id,
		anthropic.MessageBatchResultsParams{})
	seen := map[string]bool{}
	for stream.Next() {
		line := stream.Current()
		if seen[line.CustomID] {
			t.Errorf("custom_id %s appears twice", line.CustomID)
		}
		seen[line.CustomID] = true
		if err := h.spec.ResultLine([]byte(line.RawJSON())); err != nil {
			t.Errorf("result line does not match the schema: %v\n%s", err, line.RawJSON())
		}

		switch line.Result.Type {
		case "succeeded":
			msg := line.Result.Message
			if msg.Role != "assistant" || len(msg.Content) == 0 || msg.Usage.OutputTokens == 0 {
				t.Errorf("%s: message incomplete: %s", line.CustomID, line.RawJSON())
			}
		case "errored":
			if line.CustomID != fmt.Sprintf("req-%d", n-1) {
				t.Errorf("%s errored: %s", line.CustomID, line.RawJSON())
			}
			if got := line.Result.Error.Error.Type; got != "invalid_request_error" {
				t.Errorf("error type = %q, want invalid_request_error", got)
			}
		default:
			t.Errorf("%s: result type %q", line.CustomID, line.Result.Type)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("results stream: %v", err)
	}
	if len(seen) != n {
		t.Errorf("results have %d custom_ids, want %d", len(seen), n)
	}
}

// checkResultsURL downloads results_url as the TypeScript and Python SDKs
// do, with the key as a bearer token.
func checkResultsURL(t *testing.T, h *harness, url string, n int) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatalf("results_url %q: %v", url, err)
	}
	req.Header.Set("authorization", "Bearer "+keyA)
	req.Header.Set("anthropic-version", "2026-10-21")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET results_url: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	if resp.StatusCode != http.StatusOK {
		t.Fatalf("results_url status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("content-type"); ct != "application/x-jsonl" {
		t.Errorf("content-type = %q, want application/x-jsonl", ct)
	}
	text := string(body)
	if !strings.HasSuffix(text, "\n") || strings.Contains(text, "\n\n") || strings.Contains(text, "\r") {
		t.Errorf("results are not LF-terminated lines without blanks")
	}
	if lines := strings.Count(text, "\n"); lines != n {
		t.Errorf("results_url has %d lines, want %d", lines, n)
	}
}

func TestSDKCancelDeleteAcrossWorkspaces(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{model: slowModel()})
	ctx := context.Background()
	a, b := h.client(keyA), h.client(keyB)

	created := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(3), nil))

	// Another workspace gets 404 for every operation.
	_, err := b.Messages.Batches.Get(ctx, created.ID, anthropic.MessageBatchGetParams{})
	checkSDKStatus(t, err, http.StatusNotFound, "get from workspace b")
	_, err = b.Messages.Batches.Cancel(ctx, created.ID, anthropic.MessageBatchCancelParams{})
	checkSDKStatus(t, err, http.StatusNotFound, "cancel from workspace b")
	_, err = b.Messages.Batches.Delete(ctx, created.ID, anthropic.MessageBatchDeleteParams{})
	checkSDKStatus(t, err, http.StatusNotFound, "delete from workspace b")

	// Delete before the end is refused with a 400.
	_, err = a.Messages.Batches.Delete(ctx, created.ID, anthropic.MessageBatchDeleteParams{})
	checkSDKStatus(t, err, http.StatusBadRequest, "delete while running")

	canceled, err := a.Messages.Batches.Cancel(ctx, created.ID, anthropic.MessageBatchCancelParams{})
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if canceled.ProcessingStatus != anthropic.MessageBatchProcessingStatusCanceling &&
		canceled.ProcessingStatus != anthropic.MessageBatchProcessingStatusEnded {
		t.Errorf("status after cancel = %s", canceled.ProcessingStatus)
	}
	pollEnded(t, a, created.ID)

	deleted, err := a.Messages.Batches.Delete(ctx, created.ID, anthropic.MessageBatchDeleteParams{})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if deleted.ID != created.ID || deleted.Type != "message_batch_deleted" {
		t.Errorf("delete answer = %+v", deleted)
	}
	_, err = a.Messages.Batches.Get(ctx, created.ID, anthropic.MessageBatchGetParams{})
	checkSDKStatus(t, err, http.StatusNotFound, "get after delete")
}

func checkSDKStatus(t *testing.T, err error, status int, what string) {
	t.Helper()
	var apiErr *anthropic.Error
	if err == nil {
		t.Errorf("%s: no error, want HTTP %d", what, status)
		return
	}
	if !errors.As(err, &apiErr) {
		t.Errorf("%s: error %v is not an *anthropic.Error", what, err)
		return
	}
	if apiErr.StatusCode != status {
		t.Errorf("%s: status %d, want %d", what, apiErr.StatusCode, status)
	}
}
