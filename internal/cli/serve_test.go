package cli

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/store/listcache"
)

func TestKeyFlagsRejectConflicts(t *testing.T) {
	var keys keyFlags
	if err := keys.Set("k1=wrkspc_a"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := keys.Set("k1=wrkspc_a"); err != nil {
		t.Errorf("repeating the same assignment: %v", err)
	}
	for _, bad := range []string{"k1=wrkspc_b", "k2", "k2=", "=wrkspc_a", "k3=a=b", "k4=wrk spc"} {
		if err := keys.Set(bad); err == nil {
			t.Errorf("Set(%q) succeeded, want an error", bad)
		}
	}
	if len(keys) != 2 {
		t.Errorf("%d keys stored, want 2", len(keys))
	}
}

func TestReachableAddrUnspecified(t *testing.T) {
	cases := map[string]string{
		"0.0.0.0:8080":   "127.0.0.1:8080",
		"[::]:9000":      "127.0.0.1:9000",
		"127.0.0.1:8080": "127.0.0.1:8080",
	}
	for in, want := range cases {
		addr, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatalf("resolve %s: %v", in, err)
		}
		if got := reachableAddr(addr); got != want {
			t.Errorf("reachableAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestParseDurationDays(t *testing.T) {
	for in, want := range map[string]time.Duration{"29d": 29 * 24 * time.Hour, "90s": 90 * time.Second} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"d", "-1h", "1.5d", "soon"} {
		if _, err := parseDuration(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseDuration(%q) error = %v, want one naming the value", bad, err)
		}
	}
}

func TestCheckPublicURL(t *testing.T) {
	for _, good := range []string{"", "http://127.0.0.1:8080", "https://batchd.example/",
		"https://gw.example/batchd", "http://[::1]:9000"} {
		if err := checkPublicURL(good); err != nil {
			t.Errorf("checkPublicURL(%q) = %v, want nil", good, err)
		}
	}
	for _, bad := range []string{"not a url", "/relative", "ftp://h.example", "h.example",
		"http://user:pw@h.example", "http://h.example/?q=1", "http://h.example/#frag",
		"http://h.example/?", "http://"} {
		if err := checkPublicURL(bad); err == nil {
			t.Errorf("checkPublicURL(%q) = nil, want an error", bad)
		}
	}
}

func TestListCacheFlag(t *testing.T) {
	parse := func(args ...string) (serveConfig, error) {
		e := &env{stdout: io.Discard, stderr: io.Discard,
			getenv: func(string) string { return "" }}
		return parseServeFlags(e, append([]string{"--data-dir", t.TempDir()}, args...))
	}

	cfg, err := parse()
	if err != nil {
		t.Fatalf("no flags: %v", err)
	}
	if cfg.listCache != listcache.DefaultSize {
		t.Errorf("default --list-cache = %d, want %d", cfg.listCache, listcache.DefaultSize)
	}
	if cfg, err := parse("--list-cache", "0"); err != nil || cfg.listCache != 0 {
		t.Errorf("--list-cache 0: %d, %v; want 0, nil", cfg.listCache, err)
	}
	if _, err := parse("--list-cache", "-1"); err == nil {
		t.Error("--list-cache -1 was accepted")
	}
	_, err = parse("--list-cache", "10", "--database-url", "postgres://127.0.0.1/batchd")
	if err == nil {
		t.Error("--list-cache with --database-url was accepted")
	}
	if _, err := parse("--database-url", "postgres://127.0.0.1/batchd"); err != nil {
		t.Errorf("--database-url without --list-cache: %v", err)
	}
}
