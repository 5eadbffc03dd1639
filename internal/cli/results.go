package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

func init() {
	register("results", "download the results of an ended batch as JSONL", runResults)
}

func runResults(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	var out string
	fs := newFlagSet(e, "results", "[flags] BATCH_ID")
	cf.register(fs)
	fs.StringVar(&out, "o", "", "write the results to `FILE` instead of stdout; FILE appears "+
		"only once the download is complete, with mode 0600")
	id, err := oneID(e, fs, args)
	if err != nil {
		return err
	}

	client, err := cf.newClient(e)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()

	// A complete download has one line per request of the batch.
	b, err := client.Messages.Batches.Get(ctx, id, anthropic.MessageBatchGetParams{})
	if err != nil {
		return describe(err)
	}
	want := totalRequests(b)

	if out == "" || out == "-" {
		_, err := downloadResults(ctx, &client, id, e.stdout, want)
		return err
	}
	n, err := downloadResultsToFile(ctx, &client, id, out, want)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote %d results of %s to %s\n", n, id, out)
	return nil
}

// downloadResultsToFile writes the results to a temporary file next to path
// and renames it to path once all want lines have arrived, so that a failed
// download never leaves a partial file at path.
func downloadResultsToFile(ctx context.Context, client *anthropic.Client, id, path string,
	want int64) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return 0, fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(tmp)
		}
	}()

	n, err := downloadResults(ctx, client, id, f, want)
	if err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return n, fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	keep = true
	return n, nil
}

// downloadResults copies the JSONL results of batch id to w and returns the
// number of lines. It reads the raw response instead of the SDK's JSONL
// decoder, because that decoder stops without an error at the first line
// over 64 KiB. It fails unless every line is JSON, the last line ends with a
// newline, and there are want lines.
func downloadResults(ctx context.Context, client *anthropic.Client, id string, w io.Writer,
	want int64) (int64, error) {
	var resp *http.Response
	err := client.Get(ctx, batchPath(id, "results"), nil, &resp,
		option.WithHeader("Accept", "application/x-jsonl"))
	if err != nil {
		return 0, describe(err)
	}
	defer resp.Body.Close()

	lw := &lineWriter{w: w}
	if _, err := io.Copy(lw, resp.Body); err != nil {
		return lw.lines, fmt.Errorf("download stopped after %d complete result lines: %w",
			lw.lines, err)
	}
	if err := lw.check(want); err != nil {
		return lw.lines, err
	}
	return lw.lines, nil
}

// lineWriter passes bytes through to w and checks the JSONL framing on the
// way: it counts lines and checks that each one is a JSON value. It keeps
// only the current line in memory, whatever its length.
type lineWriter struct {
	w       io.Writer
	lines   int64
	partial []byte // the current line so far
	badLine int64  // the first line that is not JSON, or 0
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	n, err := lw.w.Write(p)
	if err != nil {
		return n, err
	}

	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			lw.partial = append(lw.partial, rest...)
			break
		}
		line := rest[:i]
		if len(lw.partial) > 0 {
			lw.partial = append(lw.partial, line...)
			line = lw.partial
		}
		lw.lines++
		if lw.badLine == 0 && !json.Valid(line) {
			lw.badLine = lw.lines
		}
		lw.partial = lw.partial[:0]
		rest = rest[i+1:]
	}
	return n, nil
}

// check reports what is wrong with the lines written, if anything.
func (lw *lineWriter) check(want int64) error {
	var errs []error
	if len(lw.partial) > 0 {
		errs = append(errs, fmt.Errorf("the results end in the middle of line %d, "+
			"without a newline", lw.lines+1))
	}
	if lw.badLine > 0 {
		errs = append(errs, fmt.Errorf("result line %d is not valid JSON", lw.badLine))
	}
	if lw.lines != want {
		errs = append(errs, fmt.Errorf("got %d result lines, want %d, one per request "+
			"of the batch", lw.lines, want))
	}
	if len(errs) > 0 {
		return fmt.Errorf("incomplete results: %w", errors.Join(errs...))
	}
	return nil
}
