package listcache

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"
)

// BenchmarkMemory fills a cache of DefaultSize with batches in id order, as
// creates add them, and reports the heap it takes per cached batch, against
// the 152 bytes of one entry.
func BenchmarkMemory(b *testing.B) {
	var perBatch float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)

		c := New(DefaultSize)
		for n := range DefaultSize {
			c.Put(newBatch("wrkspc_a", n))
		}

		runtime.GC()
		runtime.ReadMemStats(&after)
		perBatch = float64(after.HeapAlloc-before.HeapAlloc) / float64(c.Len())
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perBatch, "heap_B/batch")
	b.ReportMetric(float64(unsafe.Sizeof(entry{})), "entry_B")
}

// BenchmarkPutManyWorkspaces adds batches to a full cache whose batches are
// spread over many workspaces of one batch each, so every Put drops a chunk.
func BenchmarkPutManyWorkspaces(b *testing.B) {
	for _, workspaces := range []int{1_000, 60_000} {
		b.Run(fmt.Sprint(workspaces), func(b *testing.B) {
			c := New(4 * workspaces)
			for n := range workspaces {
				c.Put(newBatch(fmt.Sprintf("wrkspc_%d", n), n))
			}

			n := workspaces
			for b.Loop() {
				c.Put(newBatch(fmt.Sprintf("wrkspc_new_%d", n), n))
				n++
			}
		})
	}
}
