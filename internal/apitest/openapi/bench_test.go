package openapi

import (
	"net/http/httptest"
	"testing"
)

// BenchmarkLoad measures what the first Load of a process costs: reading,
// decompressing and parsing the document and building its model.
func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := loadSpec(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadAndFirstResponse adds the first Response call to a fresh
// load, which renders the document's schemas for the HTTP validator.
func BenchmarkLoadAndFirstResponse(b *testing.B) {
	for b.Loop() {
		s, err := loadSpec()
		if err != nil {
			b.Fatal(err)
		}
		v := &Validator{spec: s}
		req := httptest.NewRequest("GET", batchURL, nil)
		if err := v.Response(req, recorded(200, "application/json", batchEnded)); err != nil {
			b.Fatal(err)
		}
	}
}

// The steady-state benchmarks below validate once before the loop, so that
// compiling the schema on first use is not measured.

func BenchmarkBatch(b *testing.B) {
	v := Load(b)
	body := []byte(batchEnded)
	_ = v.Batch(body)

	for b.Loop() {
		if err := v.Batch(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchInvalid(b *testing.B) {
	v := Load(b)
	body := []byte(`{"id":"msgbatch_1","type":"message_batch","processing_status":"done"}`)
	_ = v.Batch(body)

	for b.Loop() {
		if err := v.Batch(body); err == nil {
			b.Fatal("got no error for an invalid batch")
		}
	}
}

func BenchmarkResultLineSucceeded(b *testing.B) {
	v := Load(b)
	line := compact(b, lineSucceeded)
	_ = v.ResultLine(line)

	for b.Loop() {
		if err := v.ResultLine(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResponse(b *testing.B) {
	v := Load(b)
	_ = v.Response(httptest.NewRequest("GET", batchURL, nil),
		recorded(200, "application/json", batchEnded))

	for b.Loop() {
		req := httptest.NewRequest("GET", batchURL, nil)
		if err := v.Response(req, recorded(200, "application/json", batchEnded)); err != nil {
			b.Fatal(err)
		}
	}
}
