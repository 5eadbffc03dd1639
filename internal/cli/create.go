package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

func init() {
	register("create", "create a batch from a JSONL file or a JSON request body", runCreate)
}

// pollIntervalDefault is how often "create --wait" polls the batch to see
// whether it has ended.
const pollIntervalDefault = 5 * time.Second

type createFlags struct {
	client         clientFlags
	json           bool
	wait           bool
	pollInterval   time.Duration
	idempotencyKey string
}

const createUsage = `[flags] FILE|-

FILE holds the requests of the batch in one of two forms:
  JSONL      one {"custom_id": ..., "params": {...}} object per line
  JSON body  one object {"requests": [...]}, as the API takes it
Use - to read standard input. The requests are sent as they are in FILE,
unknown fields included; the server validates the params of each request.`

func runCreate(ctx context.Context, e *env, args []string) error {
	f := createFlags{pollInterval: pollIntervalDefault}
	fs := newFlagSet(e, "create", createUsage)
	f.client.register(fs)
	fs.BoolVar(&f.json, "json", false, "print the batch object as received")
	fs.BoolVar(&f.wait, "wait", false, "wait until the batch has ended, then print it")
	fs.Var(durationFlag{&f.pollInterval}, "poll-interval",
		"`DURATION` between status checks with --wait")
	fs.StringVar(&f.idempotencyKey, "idempotency-key", "",
		"send `KEY` as the Idempotency-Key header: batchd returns the batch created "+
			"earlier with the same KEY instead of creating another, so a failed run can be "+
			"repeated safely (other servers may ignore the header)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		if fs.NArg() == 0 {
			return fmt.Errorf("missing FILE: %w", errUsage)
		}
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(1), errUsage)
	}
	if f.pollInterval <= 0 {
		fmt.Fprintln(e.stderr, "--poll-interval must be longer than 0s")
		return errUsage
	}

	client, err := f.client.newClient(e)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()

	b, err := createBatch(ctx, e, &client, fs.Arg(0), f.idempotencyKey)
	if err != nil {
		return err
	}

	if f.wait {
		fmt.Fprintf(e.stderr, "waiting for %s to end\n", b.ID)
		b, err = waitEnded(ctx, &client, b.ID, f.pollInterval)
		if err != nil {
			return err
		}
		return showBatch(e, b, f.json)
	}
	if f.json {
		return writeRaw(e.stdout, b.RawJSON())
	}
	_, err = fmt.Fprintln(e.stdout, b.ID)
	return err
}

// createBatch checks the input named by arg, then streams it to the server
// as the body of one create call.
func createBatch(ctx context.Context, e *env, client *anthropic.Client,
	arg, idempotencyKey string) (*anthropic.MessageBatch, error) {
	src, name, closeSource, err := openSource(e, arg)
	if err != nil {
		return nil, err
	}
	defer closeSource()

	in, err := scanInput(src, name)
	if err != nil {
		return nil, err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind %s: %w", name, err)
	}

	// The body is a plain reader, which the SDK cannot rewind, so it sends
	// the create once and never retries it. A retry after a lost response
	// could create the batch twice.
	opts := []option.RequestOption{option.WithRequestBody("application/json", in.body(src))}
	if idempotencyKey != "" {
		opts = append(opts, option.WithHeader("Idempotency-Key", idempotencyKey))
	}
	var b *anthropic.MessageBatch
	err = client.Post(ctx, batchesPath, nil, &b, opts...)
	if err != nil {
		return nil, in.explain(describe(err))
	}
	fmt.Fprintf(e.stderr, "created %s with %d requests\n", b.ID, in.count)
	return b, nil
}

// openSource opens FILE, or copies standard input to a temporary file for
// "-", because the input is read twice: once to check it and once to send
// it. It returns the file, its name for messages and a function that closes
// it and removes any temporary file.
func openSource(e *env, arg string) (*os.File, string, func(), error) {
	if arg != "-" {
		f, err := os.Open(arg)
		if err != nil {
			return nil, "", nil, err
		}
		return f, arg, func() { f.Close() }, nil
	}

	f, err := os.CreateTemp("", "batchd-create-*.json")
	if err != nil {
		return nil, "", nil, fmt.Errorf("create temporary file for standard input: %w", err)
	}
	cleanup := func() {
		f.Close()
		os.Remove(f.Name())
	}
	if _, err := io.Copy(f, e.stdin); err != nil {
		cleanup()
		return nil, "", nil, fmt.Errorf("read standard input: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, "", nil, fmt.Errorf("rewind the copy of standard input: %w", err)
	}
	return f, "standard input", cleanup, nil
}

// requestIndexPattern matches the start of a server message about one
// request, such as "requests.12.custom_id: ...".
var requestIndexPattern = regexp.MustCompile(`\brequests\.(\d+)\b`)

// explain adds the line number to a server error about one request of a
// JSONL input, because the server counts requests, not lines.
func (in *input) explain(err error) error {
	var ae *apiError
	if !in.jsonl || !errors.As(err, &ae) {
		return err
	}
	m := requestIndexPattern.FindStringSubmatch(ae.Error())
	if m == nil {
		return err
	}
	index, convErr := strconv.Atoi(m[1])
	if convErr != nil || index >= len(in.lineOf) {
		return err
	}
	return fmt.Errorf("%w (requests.%d is line %d of %s)", err, index, in.lineOf[index], in.name)
}

// waitEnded polls batch id until it has ended or ctx ends.
func waitEnded(ctx context.Context, client *anthropic.Client, id string,
	interval time.Duration) (*anthropic.MessageBatch, error) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting, but batch %s keeps running: %w", id,
				context.Cause(ctx))
		case <-timer.C:
		}

		b, err := client.Messages.Batches.Get(ctx, id, anthropic.MessageBatchGetParams{})
		if err != nil && ctx.Err() == nil {
			return nil, describe(err)
		}
		if err != nil {
			continue // the select above reports why ctx ended
		}
		if b.ProcessingStatus == anthropic.MessageBatchProcessingStatusEnded {
			return b, nil
		}
		timer.Reset(interval)
	}
}
