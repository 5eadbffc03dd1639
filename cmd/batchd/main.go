// Command batchd is a self-hosted server for Anthropic's Message Batches API,
// and a client for it. Run "batchd help" for the commands.
package main

import (
	"context"
	"os"

	"github.com/batchd/batchd/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
