package api

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// List limits.
const (
	listLimitDefault = 20
	listLimitMax     = 1000
)

// resultsBufferSize is the write buffer of a results stream: large enough to
// send big chunks, small enough that memory per download stays flat.
const resultsBufferSize = 64 << 10

// notFound is the error for an id that does not exist, belongs to another
// workspace or was deleted: the same message in all three cases, so that ids
// of other workspaces cannot be probed.
func notFound(id string) error {
	return newError(batch.ErrNotFound, "No message batch with id %q was found.", id)
}

// fromStore translates a store error about batch id into a client error.
// wrongState is the message for store.ErrWrongState.
func fromStore(err error, id, wrongState string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(id)
	case errors.Is(err, store.ErrWrongState):
		return invalidf("%s", wrongState)
	}
	return err
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, c caller) error {
	id := r.PathValue("id")
	b, err := s.store.BatchGet(r.Context(), store.BatchGetParams{WorkspaceID: c.workspaceID, ID: id})
	if err != nil {
		return fromStore(err, id, "")
	}
	writeBatch(w, b, s.baseURL(r))
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, c caller) error {
	query := r.URL.Query()
	limit := listLimitDefault
	if raw := query.Get("limit"); raw != "" || query.Has("limit") {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > listLimitMax {
			return invalidf("limit: must be an integer from 1 to %d, got %q.", listLimitMax, raw)
		}
		limit = n
	}

	page, err := s.store.BatchList(r.Context(), store.BatchListParams{
		WorkspaceID: c.workspaceID,
		AfterID:     query.Get("after_id"),
		BeforeID:    query.Get("before_id"),
		Limit:       limit,
	})
	if err != nil {
		return err
	}

	base := s.baseURL(r)
	writeRendered(w, func(dst []byte) []byte {
		return appendPage(dst, page.Batches, page.HasMore, base)
	})
	return nil
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, c caller) error {
	id := r.PathValue("id")
	b, err := s.store.BatchCancel(r.Context(), store.BatchCancelParams{
		WorkspaceID: c.workspaceID, ID: id, Now: s.clock.Now(),
	})
	if err != nil {
		return fromStore(err, id, fmt.Sprintf(
			"Message batch %s has already ended and can no longer be canceled.", id))
	}

	s.logger.InfoContext(r.Context(), "batch canceling", "batch_id", id)
	if s.notifier != nil {
		s.notifier.Notify()
	}
	writeBatch(w, b, s.baseURL(r))
	return nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, c caller) error {
	id := r.PathValue("id")
	err := s.store.BatchDelete(r.Context(), store.BatchDeleteParams{
		WorkspaceID: c.workspaceID, ID: id,
	})
	if err != nil {
		return fromStore(err, id, fmt.Sprintf("Message batch %s has not ended yet. Cancel it "+
			"and wait until its processing_status is ended before deleting it.", id))
	}

	s.logger.InfoContext(r.Context(), "batch deleted", "batch_id", id)
	writeJSON(w, http.StatusOK, deletedJSON{ID: id, Type: "message_batch_deleted"})
	return nil
}

type deletedJSON struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// results streams the results file as JSON Lines, one line per request in
// submission order, each ending in "\n". Lines are copied from the store as
// they are read, so memory stays flat whatever the file's size.
func (s *Server) results(w http.ResponseWriter, r *http.Request, c caller) error {
	id := r.PathValue("id")
	var (
		out     *bufio.Writer
		line    []byte
		started bool
	)

	err := s.store.ResultList(r.Context(),
		store.ResultListParams{WorkspaceID: c.workspaceID, BatchID: id},
		func(customID string, outcome batch.Outcome, body []byte) error {
			if !started {
				started = true
				h := w.Header()
				h.Set("content-type", "application/x-jsonl")
				h.Set("content-disposition", "attachment; filename*=utf-8''"+id+"_results.jsonl")
				w.WriteHeader(http.StatusOK)
				out = bufio.NewWriterSize(w, resultsBufferSize)
			}
			line = batch.AppendResultLine(line[:0], customID, outcome, body)
			line = append(line, '\n')
			_, err := out.Write(line)
			return err
		})

	if !started {
		if errors.Is(err, store.ErrArchived) {
			return newError(batch.ErrNotFound, "The results of message batch %s are no "+
				"longer available: results are removed when their retention period ends. "+
				"The batch itself stays readable.", id)
		}
		if err != nil {
			return fromStore(err, id, fmt.Sprintf(
				"Message batch %s has not ended yet; its results are available once its "+
					"processing_status is ended.", id))
		}
		return errors.New("results: an ended batch has no requests")
	}
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		// The status line is sent, so the only honest signal left is to cut
		// the connection: the client sees an incomplete body, not a short file.
		s.logger.WarnContext(r.Context(), "results stream failed", "batch_id", id, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}
