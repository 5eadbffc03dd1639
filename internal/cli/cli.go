// Package cli implements the batchd command line: "batchd serve" runs the
// server, and the client commands (list, get, create, cancel, delete,
// results) call a batchd server, or any Message Batches API, through the
// official Anthropic Go SDK.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is a command's view of the process: its standard streams and the
// environment, passed in so that tests can drive commands without a process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// commands lists every subcommand by name.
var commands = map[string]command{}

func register(name, summary string, run func(context.Context, *env, []string) error) {
	commands[name] = command{summary: summary, run: run}
}

// errUsage marks a usage error that the command has already explained.
var errUsage = errors.New("see the usage above")

// Run runs the command named by args[0] and returns the exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runWithEnv(ctx, args, &env{stdin: stdin, stdout: stdout, stderr: stderr,
		getenv: osGetenv})
}

func runWithEnv(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(e.stdout)
		return 0
	}

	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "batchd: unknown command %q; run \"batchd help\" for the list\n",
			args[0])
		return 2
	}

	err := cmd.run(ctx, e, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp), err == errUsage:
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "batchd %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(e.stderr, "batchd %s: %v\n", args[0], err)
		return 1
	}
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "batchd: a self-hosted Message Batches API server and client.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: batchd COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Client commands read ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY, as the SDKs do.")
	fmt.Fprintln(w, "Run \"batchd COMMAND -h\" for a command's flags.")
}

// newFlagSet returns a flag set that reports errors to e.stderr and does not
// exit the process.
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: batchd %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}
