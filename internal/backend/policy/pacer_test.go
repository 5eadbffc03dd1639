package policy

import (
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
)

var pacerStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func reportOf(remaining int64, reset time.Time) backend.Limits {
	lim := backend.NoLimits
	lim.RequestsRemaining = remaining
	lim.RequestsReset = reset
	return lim
}

// admitN admits n sends at now, failing the test if one is held, and returns
// their numbers.
func admitN(t *testing.T, p *pacer, now time.Time, n int) []int64 {
	t.Helper()
	seqs := make([]int64, n)
	for i := range n {
		wait, seq, _ := p.admit(now)
		if wait != 0 {
			t.Fatalf("send %d of %d held for %s, want it admitted", i+1, n, wait)
		}
		seqs[i] = seq
	}
	return seqs
}

// wantHeld fails the test unless the next send at now is held for want.
func wantHeld(t *testing.T, p *pacer, now time.Time, want time.Duration) {
	t.Helper()
	if wait, _, _ := p.admit(now); wait != want {
		t.Errorf("send held for %s, want %s", wait, want)
	}
}

func TestPacerCountsSendsAfterReport(t *testing.T) {
	now, reset := pacerStart, pacerStart.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	seqs := admitN(t, p, now, 2)
	if seqs[0] != 1 || seqs[1] != 2 {
		t.Fatalf("send numbers = %v, want [1 2]", seqs)
	}

	// The report of send 1 leaves 2 requests, and send 2 may not be in it.
	p.finish(now, reportOf(2, reset), seqs[0])
	admitN(t, p, now, 1)
	wantHeld(t, p, now, time.Minute)
}

// TestPacerOrdersReportsByCount reads the responses of four sends in the
// reverse of the order in which the server counted them. The lowest count
// is the server's latest, and once every response is in, the pacer's count
// of what is left is exact.
func TestPacerOrdersReportsByCount(t *testing.T) {
	now, reset := pacerStart, pacerStart.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	seqs := admitN(t, p, now, 4)
	// The server counted sends 4, 3, 2, 1 in that order, leaving 9, 8, 7, 6.
	p.finish(now, reportOf(6, reset), seqs[0])
	p.finish(now, reportOf(9, reset), seqs[3])
	p.finish(now, reportOf(8, reset), seqs[2])
	p.finish(now, reportOf(7, reset), seqs[1])

	admitN(t, p, now, 6)
	wantHeld(t, p, now, time.Minute)
}

// TestPacerCountsPendingSends reads a report while an earlier send still
// waits for its response: that send may reach the server later and counts.
func TestPacerCountsPendingSends(t *testing.T) {
	now, reset := pacerStart, pacerStart.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	seqs := admitN(t, p, now, 2)
	p.finish(now, reportOf(3, reset), seqs[1])
	admitN(t, p, now, 2)
	wantHeld(t, p, now, time.Minute)

	// Send 1 was counted after send 2: its report is the latest and every
	// send still pending may be missing from it.
	p.finish(now, reportOf(2, reset), seqs[0])
	wantHeld(t, p, now, time.Minute)
}

func TestPacerNewWindow(t *testing.T) {
	now, reset := pacerStart, pacerStart.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	seqs := admitN(t, p, now, 3)
	p.finish(now, reportOf(0, reset), seqs[0])
	wantHeld(t, p, now, time.Minute)

	// A report of a later window replaces the one in use. Sends still
	// pending count against it until their responses show that an earlier
	// window counted them.
	p.finish(now, reportOf(2, reset.Add(time.Minute)), seqs[1])
	admitN(t, p, now, 1)
	wantHeld(t, p, now, 2*time.Minute)

	p.finish(now, reportOf(0, reset), seqs[2])
	admitN(t, p, now, 1)
	wantHeld(t, p, now, 2*time.Minute)
}

func TestPacerForgetsReportAtReset(t *testing.T) {
	now, reset := pacerStart, pacerStart.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	seqs := admitN(t, p, now, 1)
	p.finish(now, reportOf(0, reset), seqs[0])
	wantHeld(t, p, now, time.Minute)

	admitN(t, p, reset, 5)
	if len(p.uncounted) != 0 {
		t.Errorf("uncounted sends = %v with no report in use, want none", p.uncounted)
	}
}

func TestPacerSendWithoutReportStaysUncounted(t *testing.T) {
	now, reset := pacerStart, pacerStart.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	seqs := admitN(t, p, now, 2)
	p.finish(now, reportOf(2, reset), seqs[0])
	// Send 2 failed without a report: the server may have counted it.
	p.finish(now, backend.NoLimits, seqs[1])
	admitN(t, p, now, 1)
	wantHeld(t, p, now, time.Minute)

	if len(p.pending) != 1 {
		t.Errorf("pending sends = %v, want only the last one", p.pending)
	}
}

func TestPacerCapsResetAtMaxHold(t *testing.T) {
	now := pacerStart
	p := newPacer(Config{MaxRetryAfter: 10 * time.Second})

	seqs := admitN(t, p, now, 1)
	p.finish(now, reportOf(0, now.Add(time.Hour)), seqs[0])
	wantHeld(t, p, now, 10*time.Second)
}

func TestPacerWakesHeldSendWhenRoomAppears(t *testing.T) {
	now, reset := pacerStart, pacerStart.Add(time.Minute)
	p := newPacer(Config{MaxRetryAfter: time.Hour})

	seqs := admitN(t, p, now, 2)
	p.finish(now, reportOf(2, reset), seqs[0])
	seqs = append(seqs, admitN(t, p, now, 1)...)
	wait, _, room := p.admit(now)
	if wait != time.Minute || room == nil {
		t.Fatalf("admit = %s, room %v; want a minute's hold that can end early", wait, room)
	}

	// Send 2 was counted before send 1's report: one more send fits.
	p.finish(now, reportOf(5, reset), seqs[1])
	select {
	case <-room:
	default:
		t.Fatal("room not signalled after a response freed a send")
	}
	seqs = append(seqs, admitN(t, p, now, 1)...)

	// Once every response is in, the next hold lasts until the reset.
	p.finish(now, reportOf(1, reset), seqs[2])
	p.finish(now, reportOf(0, reset), seqs[3])
	if wait, _, room := p.admit(now); wait != time.Minute || room != nil {
		t.Errorf("admit = %s, room %v; want a minute's hold with no early end", wait, room)
	}
}
