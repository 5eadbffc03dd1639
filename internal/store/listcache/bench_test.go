package listcache

import (
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
