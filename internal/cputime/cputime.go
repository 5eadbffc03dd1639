// Package cputime reads the CPU time of the current process. Benchmarks
// report it per operation beside wall time, because on a shared machine the
// wall time moves with other jobs far more than the CPU a piece of work
// takes.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the user and system CPU time that the process has used so
// far, or 0 if the system does not report it.
func Process() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}
