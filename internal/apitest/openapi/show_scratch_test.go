package openapi

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestShowScratch(t *testing.T) {
	v := Load(t)
	for _, u := range []string{"GET /v1/messages/batches/x", "POST /v1/messages/batches", "POST /v1/messages/batches?beta=true", "GET /v1/messages/batches/x?beta=true", "POST /v1/messages/batches/x/cancel", "GET /v1/messages/batches/x/results"} {
		m, p, _ := strings.Cut(u, " ")
		req := httptest.NewRequest(m, "http://127.0.0.1"+p, nil)
		start := time.Now()
		err := v.Response(req, recorded(404, "application/json", errorNotFound))
		t.Logf("%s response %v %v", u, time.Since(start), err)
		start = time.Now()
		err = v.Response(req, recorded(200, "application/json", batchEnded))
		t.Logf("%s response 200 %v %v", u, time.Since(start), err != nil)
		start = time.Now()
		err = v.Response(req, recorded(404, "application/json", errorNotFound))
		t.Logf("%s response again %v %v", u, time.Since(start), err)
	}
	req := httptest.NewRequest("POST", "http://127.0.0.1/v1/messages/batches", strings.NewReader(`{"requests":[]}`))
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	err := v.Request(req)
	t.Logf("request %v %v", time.Since(start), err != nil)
}
