package durability

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestKillDuringResultsDownload(t *testing.T) {
	skipShort(t)
	t.Run("SQLite", func(t *testing.T) {
		dataDir := t.TempDir()
		testKillDuringDownload(t, func(name string) nodeConfig {
			return nodeConfig{name: name, dataDir: dataDir}
		})
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		schema := newSchema(t)
		testKillDuringDownload(t, func(name string) nodeConfig {
			return nodeConfig{name: name, databaseURL: schema.url}
		})
	})
}

// testKillDuringDownload kills a node while a client reads a results file
// of about 16 MB, several times what the kernel buffers on a loopback
// connection, then restarts it and downloads the file again.
func testKillDuringDownload(t *testing.T, config func(name string) nodeConfig) {
	const (
		requests    = 20_000
		partialSize = 256 << 10
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := startNode(t, config("first"))
	created, err := createBatch(ctx, first.baseURL, bytes.NewReader(createBody("d", requests)))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := waitEnded(ctx, first.baseURL, created.ID); err != nil {
		t.Fatal(err)
	}

	resp, err := apiRequest(ctx, http.MethodGet,
		first.baseURL+"/v1/messages/batches/"+created.ID+"/results", nil)
	if err != nil {
		t.Fatalf("start results download: %v", err)
	}
	defer resp.Body.Close()
	partial := make([]byte, partialSize)
	if _, err := io.ReadFull(resp.Body, partial); err != nil {
		t.Fatalf("read the first %d bytes of the results: %v", partialSize, err)
	}

	first.kill()
	rest, err := io.ReadAll(resp.Body)
	partial = append(partial, rest...)
	if err == nil {
		t.Fatalf("the download ended without an error after the server was killed, "+
			"at %d bytes; a cut-off file must not look complete", len(partial))
	}
	t.Logf("download cut off after %d bytes: %v", len(partial), err)

	second := startNode(t, config("second"))
	full, err := downloadResults(ctx, second.baseURL, created.ID)
	if err != nil {
		t.Fatalf("download results after restart: %v", err)
	}
	if len(partial) >= len(full) {
		t.Errorf("the cut-off download has %d bytes, the whole file %d; want fewer",
			len(partial), len(full))
	}
	if !bytes.HasPrefix(full, partial) {
		t.Errorf("the %d bytes read before the kill are not the start of the whole file",
			len(partial))
	}
	checkResults(t, full, "d", requests)
}
