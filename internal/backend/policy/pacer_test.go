package policy

import (
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
)

func reportOf(remaining int64, reset time.Time) backend.Limits {
	lim := backend.NoLimits
	lim.RequestsRemaining = remaining
	lim.RequestsReset = reset
	return lim
}

func TestPacerCountsSendsAfterReport(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reset := now.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	_, first := p.admit(now)
	_, second := p.admit(now)
	if first != 1 || second != 2 {
		t.Fatalf("send numbers = %d, %d; want 1, 2", first, second)
	}

	// The report of send 1 leaves 2 requests, and send 2 may not be in it.
	p.observe(now, reportOf(2, reset), first)
	if wait, _ := p.admit(now); wait != 0 {
		t.Fatalf("third send held for %s, want it admitted", wait)
	}
	if wait, _ := p.admit(now); wait != time.Minute {
		t.Errorf("fourth send held for %s, want the minute until reset", wait)
	}
}

func TestPacerIgnoresOlderReport(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reset := now.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	_, first := p.admit(now)
	_, second := p.admit(now)
	p.observe(now, reportOf(0, reset), second)
	// The response to send 1 arrives late with a higher count.
	p.observe(now, reportOf(50, reset), first)

	if wait, _ := p.admit(now); wait != time.Minute {
		t.Errorf("send held for %s after a late, older report; want the minute until reset", wait)
	}

	// A report of a new window replaces the old one whatever its send.
	p.observe(now, reportOf(50, reset.Add(time.Minute)), first)
	if wait, _ := p.admit(now); wait != 0 {
		t.Errorf("send held for %s in a new window, want it admitted", wait)
	}
}
