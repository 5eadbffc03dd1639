package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// Environment variables the client commands read, with the meaning the
// official SDKs give them.
const (
	baseURLEnv       = "ANTHROPIC_BASE_URL"
	apiKeyEnv        = "ANTHROPIC_API_KEY"
	authTokenEnv     = "ANTHROPIC_AUTH_TOKEN"
	customHeadersEnv = "ANTHROPIC_CUSTOM_HEADERS"
)

// batchesPath is the Message Batches collection, relative to the base URL.
const batchesPath = "v1/messages/batches"

// clientFlags are the connection flags every client command accepts.
type clientFlags struct {
	baseURL string
	apiKey  string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.baseURL, "base-url", "",
		"`URL` of the batchd server or Message Batches API (default $"+baseURLEnv+")")
	fs.StringVar(&f.apiKey, "api-key", "",
		"API `KEY` to send; other users of the machine can see command-line arguments, "+
			"so prefer $"+apiKeyEnv+" (default $"+apiKeyEnv+", then $"+authTokenEnv+")")
}

// newClient returns an SDK client configured only from the flags and from
// e.getenv. The SDK's own environment lookup is turned off, so that tests can
// inject every setting and so that a missing base URL is an error here rather
// than a silent fallback to the SDK's default host.
func (f *clientFlags) newClient(e *env) (anthropic.Client, error) {
	base := f.baseURL
	if base == "" {
		base = e.getenv(baseURLEnv)
	}
	if base == "" {
		return anthropic.Client{}, fmt.Errorf("no server URL: set %s to the URL that "+
			"\"batchd serve\" prints, or pass --base-url", baseURLEnv)
	}
	if err := checkBaseURL(base); err != nil {
		return anthropic.Client{}, err
	}

	opts := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(base),
	}
	switch {
	case f.apiKey != "":
		opts = append(opts, option.WithAPIKey(f.apiKey))
	case e.getenv(apiKeyEnv) != "":
		opts = append(opts, option.WithAPIKey(e.getenv(apiKeyEnv)))
	case e.getenv(authTokenEnv) != "":
		opts = append(opts, option.WithAuthToken(e.getenv(authTokenEnv)))
	default:
		return anthropic.Client{}, fmt.Errorf("no API key: set %s (or %s), or pass --api-key",
			apiKeyEnv, authTokenEnv)
	}
	opts = append(opts, customHeaders(e.getenv(customHeadersEnv))...)

	return anthropic.NewClient(opts...), nil
}

func checkBaseURL(base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid server URL %q: want http:// or https:// and a host, "+
			"such as http://127.0.0.1:8080", base)
	}
	return nil
}

// customHeaders parses ANTHROPIC_CUSTOM_HEADERS as the SDKs do: one
// "Name: value" per line; lines without a colon are ignored.
func customHeaders(value string) []option.RequestOption {
	var opts []option.RequestOption
	for _, line := range strings.Split(value, "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "" {
			continue
		}
		opts = append(opts, option.WithHeader(strings.TrimSpace(name), strings.TrimSpace(val)))
	}
	return opts
}

// apiError is an error response from the API, shown as
// "404 not_found_error: message".
type apiError struct {
	err *anthropic.Error
}

func (a *apiError) Error() string {
	status := a.err.StatusCode
	var envelope struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	raw := a.err.RawJSON()
	_ = json.Unmarshal([]byte(raw), &envelope) // a body that is not JSON is shown as it is
	errType, message := envelope.Error.Type, envelope.Error.Message

	if errType == "" && message == "" {
		body := strings.TrimSpace(raw)
		if len(body) > 200 {
			body = body[:200] + "…"
		}
		if body == "" {
			return fmt.Sprintf("%d %s", status, http.StatusText(status))
		}
		return fmt.Sprintf("%d %s: %s", status, http.StatusText(status), body)
	}
	return fmt.Sprintf("%d %s: %s", status, errType, message)
}

func (a *apiError) Unwrap() error { return a.err }

// describe turns an error response from the SDK into an [*apiError] and
// returns any other error unchanged.
func describe(err error) error {
	var sdkErr *anthropic.Error
	if errors.As(err, &sdkErr) {
		return &apiError{err: sdkErr}
	}
	return err
}

// withSignals returns a context that ends on SIGINT or SIGTERM, so that a
// command can remove its temporary files before it exits.
func withSignals(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// batchPath returns the path of one batch, or of something under it when
// parts are given.
func batchPath(id string, parts ...string) string {
	p := batchesPath + "/" + url.PathEscape(id)
	for _, part := range parts {
		p += "/" + part
	}
	return p
}

// parseFlags parses args with fs, accepting flags before and after the
// positional arguments, as in "batchd results ID -o FILE". fs.Args() then
// returns the positional arguments in order. The flag package has already
// reported a bad flag and printed the usage, so the error only sets the exit
// code.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		if err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// oneID parses a command line of flags and exactly one batch id.
func oneID(e *env, fs *flag.FlagSet, args []string) (string, error) {
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		if fs.NArg() == 0 {
			return "", fmt.Errorf("missing batch id: %w", errUsage)
		}
		return "", fmt.Errorf("unexpected argument %q: %w", fs.Arg(1), errUsage)
	}
	if fs.Arg(0) == "" {
		fmt.Fprintln(e.stderr, "the batch id is empty")
		return "", errUsage
	}
	return fs.Arg(0), nil
}

// writeRaw writes a JSON document exactly as the server sent it, then a
// newline.
func writeRaw(w io.Writer, raw string) error {
	_, err := io.WriteString(w, raw+"\n")
	return err
}

// printBatch writes the fields of b, one per line.
func printBatch(w io.Writer, b *anthropic.MessageBatch) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	c := b.RequestCounts
	fmt.Fprintf(tw, "id\t%s\n", b.ID)
	fmt.Fprintf(tw, "processing_status\t%s\n", b.ProcessingStatus)
	fmt.Fprintf(tw, "request_counts\tprocessing %d, succeeded %d, errored %d, canceled %d, "+
		"expired %d\n", c.Processing, c.Succeeded, c.Errored, c.Canceled, c.Expired)
	fmt.Fprintf(tw, "created_at\t%s\n", formatTime(b.CreatedAt))
	fmt.Fprintf(tw, "expires_at\t%s\n", formatTime(b.ExpiresAt))
	fmt.Fprintf(tw, "ended_at\t%s\n", formatTime(b.EndedAt))
	fmt.Fprintf(tw, "cancel_initiated_at\t%s\n", formatTime(b.CancelInitiatedAt))
	fmt.Fprintf(tw, "archived_at\t%s\n", formatTime(b.ArchivedAt))
	fmt.Fprintf(tw, "results_url\t%s\n", orDash(b.ResultsURL))
	return tw.Flush()
}

// formatTime renders t in RFC 3339 UTC, or "-" for a null time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// totalRequests returns the number of requests in b, which is the sum of its
// request counts at any time.
func totalRequests(b *anthropic.MessageBatch) int64 {
	c := b.RequestCounts
	return c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
}
