package cli

import (
	"context"
	"fmt"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

func init() {
	register("get", "show one batch", runGet)
	register("cancel", "cancel a batch that has not ended", runCancel)
	register("delete", "delete a batch that has ended, with its results", runDelete)
}

// batchCall is one SDK call on a single batch.
type batchCall func(ctx context.Context, client anthropic.Client, id string) (*anthropic.MessageBatch, error)

// runOnBatch returns a command that parses flags and one batch id, makes
// call, and prints the batch it returns.
func runOnBatch(name string, call batchCall) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		var cf clientFlags
		var asJSON bool
		fs := newFlagSet(e, name, "[flags] BATCH_ID")
		cf.register(fs)
		fs.BoolVar(&asJSON, "json", false, "print the batch object as received")
		id, err := oneID(e, fs, args)
		if err != nil {
			return err
		}

		client, err := cf.newClient(e)
		if err != nil {
			return err
		}
		b, err := call(ctx, client, id)
		if err != nil {
			return describe(err)
		}
		return showBatch(e, b, asJSON)
	}
}

var runGet = runOnBatch("get",
	func(ctx context.Context, client anthropic.Client, id string) (*anthropic.MessageBatch, error) {
		return client.Messages.Batches.Get(ctx, id, anthropic.MessageBatchGetParams{})
	})

var runCancel = runOnBatch("cancel",
	func(ctx context.Context, client anthropic.Client, id string) (*anthropic.MessageBatch, error) {
		return client.Messages.Batches.Cancel(ctx, id, anthropic.MessageBatchCancelParams{})
	})

func runDelete(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	var asJSON bool
	fs := newFlagSet(e, "delete", "[flags] BATCH_ID")
	cf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the deletion object as received")
	id, err := oneID(e, fs, args)
	if err != nil {
		return err
	}

	client, err := cf.newClient(e)
	if err != nil {
		return err
	}
	deleted, err := client.Messages.Batches.Delete(ctx, id, anthropic.MessageBatchDeleteParams{})
	if err != nil {
		return describe(err)
	}
	if asJSON {
		return writeRaw(e.stdout, deleted.RawJSON())
	}
	_, err = fmt.Fprintf(e.stdout, "deleted %s\n", deleted.ID)
	return err
}

// showBatch prints b as received with asJSON, or as a list of fields.
func showBatch(e *env, b *anthropic.MessageBatch, asJSON bool) error {
	if asJSON {
		return writeRaw(e.stdout, b.RawJSON())
	}
	return printBatch(e.stdout, b)
}
