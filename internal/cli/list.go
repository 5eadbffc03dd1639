package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/pagination"
)

func init() {
	register("list", "list batches, newest first", runList)
}

type listFlags struct {
	client   clientFlags
	limit    int64
	afterID  string
	beforeID string
	all      bool
	json     bool
}

func runList(ctx context.Context, e *env, args []string) error {
	var f listFlags
	fs := newFlagSet(e, "list", "[flags]")
	f.client.register(fs)
	fs.Int64Var(&f.limit, "limit", 0, "batches per page, 1 to 1000 (default: the server's, 20)")
	fs.StringVar(&f.afterID, "after-id", "", "list the batches older than batch `ID`")
	fs.StringVar(&f.beforeID, "before-id", "", "list the batches newer than batch `ID`")
	fs.BoolVar(&f.all, "all", false, "fetch every page, not just one; with --before-id "+
		"the pages go towards newer batches")
	fs.BoolVar(&f.json, "json", false, "print the page object as received, or with --all "+
		"a JSON array of the batches")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}

	client, err := f.client.newClient(e)
	if err != nil {
		return err
	}
	params := listParams(fs, f)
	if f.all {
		return listAll(ctx, e, &client, params, f.json)
	}
	return listPage(ctx, e, &client, params, f.json)
}

// listParams returns the query of the first request. A flag that was not
// given is left out, so the server applies its own default.
func listParams(fs *flag.FlagSet, f listFlags) anthropic.MessageBatchListParams {
	var params anthropic.MessageBatchListParams
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "limit":
			params.Limit = anthropic.Int(f.limit)
		case "after-id":
			params.AfterID = anthropic.String(f.afterID)
		case "before-id":
			params.BeforeID = anthropic.String(f.beforeID)
		}
	})
	return params
}

func listPage(ctx context.Context, e *env, client *anthropic.Client,
	params anthropic.MessageBatchListParams, asJSON bool) error {
	page, err := client.Messages.Batches.List(ctx, params)
	if err != nil {
		return describe(err)
	}
	if asJSON {
		return writeRaw(e.stdout, page.RawJSON())
	}

	table := newBatchTable(e.stdout)
	for i := range page.Data {
		table.add(&page.Data[i])
	}
	if err := table.flush(); err != nil {
		return err
	}

	// Tell a person where the next page starts; scripts read has_more from --json.
	if page.HasMore {
		if params.BeforeID.Valid() {
			fmt.Fprintf(e.stderr, "newer batches exist: run with --before-id %s, or --all\n",
				page.FirstID)
		} else {
			fmt.Fprintf(e.stderr, "more batches exist: run with --after-id %s, or --all\n",
				page.LastID)
		}
	}
	return nil
}

// listAll follows every page with the SDK's auto-pager. JSON is written as
// the pages arrive; the table waits for the last page to align its columns.
func listAll(ctx context.Context, e *env, client *anthropic.Client,
	params anthropic.MessageBatchListParams, asJSON bool) error {
	pager := client.Messages.Batches.ListAutoPaging(ctx, params)

	if asJSON {
		return writeJSONArray(e.stdout, pager)
	}

	table := newBatchTable(e.stdout)
	for pager.Next() {
		b := pager.Current()
		table.add(&b)
	}
	if err := pager.Err(); err != nil {
		return describe(err)
	}
	return table.flush()
}

// writeJSONArray writes the batches of pager, each as received, as one
// JSON array with one element per line. If fetching fails part-way, the
// array is left unclosed so the output cannot pass for a complete list.
func writeJSONArray(w io.Writer, pager *pagination.PageAutoPager[anthropic.MessageBatch]) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	sep := "\n"
	for pager.Next() {
		if _, err := io.WriteString(w, sep+pager.Current().RawJSON()); err != nil {
			return err
		}
		sep = ",\n"
	}
	if err := pager.Err(); err != nil {
		return describe(err)
	}

	end := "\n]\n"
	if sep == "\n" {
		end = "]\n" // no elements
	}
	_, err := io.WriteString(w, end)
	return err
}

// batchTable prints batches as aligned columns.
type batchTable struct {
	tw *tabwriter.Writer
	n  int
}

func newBatchTable(w io.Writer) *batchTable {
	return &batchTable{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func (t *batchTable) add(b *anthropic.MessageBatch) {
	if t.n == 0 {
		fmt.Fprintln(t.tw, "ID\tSTATUS\tPROCESSING\tSUCCEEDED\tERRORED\tCANCELED\tEXPIRED\tCREATED_AT")
	}
	t.n++
	c := b.RequestCounts
	fmt.Fprintf(t.tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", b.ID, b.ProcessingStatus,
		c.Processing, c.Succeeded, c.Errored, c.Canceled, c.Expired, formatTime(b.CreatedAt))
}

// flush writes the table, or a note when it has no rows.
func (t *batchTable) flush() error {
	if t.n == 0 {
		fmt.Fprintln(t.tw, "no batches")
	}
	return t.tw.Flush()
}
