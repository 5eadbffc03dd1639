package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/router"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
	"github.com/batchd/batchd/internal/metrics"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/listcache"
	"github.com/batchd/batchd/internal/store/postgres"
	"github.com/batchd/batchd/internal/store/sqlite"
)

func init() {
	register("serve", "run the batchd server", runServe)
}

// Serve defaults.
const (
	addrDefault             = "127.0.0.1:8080"
	defaultWorkspace        = "wrkspc_default"
	apiKeyFile              = "api-key"
	httpShutdownGrace       = 10 * time.Second
	readHeaderTimeout       = 30 * time.Second
	apiKeysEnv              = "BATCHD_API_KEYS"
	databaseURLEnv          = "BATCHD_DATABASE_URL"
	dataDirEnv              = "BATCHD_DATA_DIR"
	generatedKeyPrefix      = "sk-batchd-"
	generatedKeyRandomBytes = 32
)

// serveConfig is everything "batchd serve" reads from flags and environment.
type serveConfig struct {
	addr        string
	configFile  string
	databaseURL string
	dataDir     string
	publicURL   string
	apiKeys     keyFlags
	logLevel    slog.Level
	logJSON     bool
	listCache   int

	expiry    time.Duration
	retention time.Duration
	engine    engine.Config
	testModel testmodel.Config
}

// keyFlags collects repeated --api-key KEY=WORKSPACE_ID values.
type keyFlags []keyAssignment

type keyAssignment struct {
	key, workspaceID string
}

func (k *keyFlags) String() string { return fmt.Sprintf("%d keys", len(*k)) }

func (k *keyFlags) Set(value string) error {
	key, workspace, ok := strings.Cut(value, "=")
	key, workspace = strings.TrimSpace(key), strings.TrimSpace(workspace)
	if !ok || key == "" || workspace == "" {
		return fmt.Errorf("want KEY=WORKSPACE_ID with neither part empty, got %q", redact(value))
	}
	if strings.ContainsAny(workspace, " \t=,") {
		return fmt.Errorf("workspace id %q must not contain spaces, '=' or ','", workspace)
	}
	for _, earlier := range *k {
		if earlier.key == key && earlier.workspaceID != workspace {
			return fmt.Errorf("key %q is given for two workspaces, %s and %s",
				redact(key), earlier.workspaceID, workspace)
		}
	}
	*k = append(*k, keyAssignment{key: key, workspaceID: workspace})
	return nil
}

// redact hides all but the start of a value that may contain a key.
func redact(value string) string {
	if len(value) <= 6 {
		return "…"
	}
	return value[:6] + "…"
}

func parseServeFlags(e *env, args []string) (serveConfig, error) {
	cfg := serveConfig{expiry: api.ExpiryDefault, retention: engine.RetentionDefault}
	cfg.engine.Lease = engine.LeaseDefault
	cfg.engine.ShutdownGrace = engine.ShutdownGraceDefault
	fs := newFlagSet(e, "serve", "[flags]")

	fs.StringVar(&cfg.addr, "addr", addrDefault,
		"`HOST:PORT` to listen on; the default accepts only local connections")
	fs.StringVar(&cfg.dataDir, "data-dir", defaultDataDir(e),
		"`DIR` for the database and the generated API key (env "+dataDirEnv+")")
	fs.StringVar(&cfg.configFile, "config", "",
		"backend config `FILE` (YAML) that routes models to backends; without it every "+
			"model goes to the built-in test model")
	fs.StringVar(&cfg.databaseURL, "database-url", e.getenv(databaseURLEnv),
		"PostgreSQL `URL` (postgres://...) shared by several batchd nodes; without it "+
			"batchd uses SQLite in --data-dir (env "+databaseURLEnv+")")
	fs.StringVar(&cfg.engine.Owner, "node-id", "",
		"`NAME` of this node in request leases; must differ between nodes sharing a "+
			"database (default: random)")
	fs.StringVar(&cfg.publicURL, "public-url", "",
		"base `URL` clients reach this server at, used in results_url "+
			"(default: the scheme and host of each request)")
	fs.Var(&cfg.apiKeys, "api-key",
		"`KEY=WORKSPACE_ID`: accept KEY for that workspace; repeatable (env "+apiKeysEnv+
			", comma-separated)")
	fs.IntVar(&cfg.listCache, "list-cache", listcache.DefaultSize,
		"maximum number of batches the SQLite store keeps in memory to serve list and get "+
			"calls without a query; 0 turns the copy off")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "log `LEVEL`: debug, info, warn, error")
	fs.BoolVar(&cfg.logJSON, "log-json", false, "write logs as JSON lines instead of text")

	fs.Var(durationFlag{&cfg.expiry}, "expiry",
		"`DURATION` from a batch's creation to its expiry, such as 24h or 1d")
	fs.Var(durationFlag{&cfg.retention}, "retention",
		"`DURATION` from a batch's creation until its results are removed, such as 29d")
	fs.IntVar(&cfg.engine.Concurrency, "concurrency", engine.ConcurrencyDefault,
		"maximum number of model calls in flight")
	fs.Var(durationFlag{&cfg.engine.Lease}, "lease",
		"`DURATION` a node holds a claimed request before another node may take it")
	fs.Var(durationFlag{&cfg.engine.ShutdownGrace}, "shutdown-grace",
		"`DURATION` model calls in flight may go on after SIGTERM")

	fs.Var(durationFlag{&cfg.testModel.Latency}, "test-model-latency",
		"`DURATION` the test model takes per request")
	fs.Float64Var(&cfg.testModel.OverloadedRate, "test-model-overloaded-rate", 0,
		"share of test model calls, 0 to 1, that fail with overloaded_error")
	fs.Float64Var(&cfg.testModel.RateLimitRate, "test-model-rate-limit-rate", 0,
		"share of test model calls, 0 to 1, that fail with rate_limit_error")
	fs.Float64Var(&cfg.testModel.APIErrorRate, "test-model-api-error-rate", 0,
		"share of test model calls, 0 to 1, that fail with api_error")
	fs.Uint64Var(&cfg.testModel.Seed, "test-model-seed", 0,
		"seed that decides which test model calls fail")

	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return cfg, fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if err := cfg.addEnvKeys(e); err != nil {
		return cfg, err
	}
	if err := cfg.testModel.Validate(); err != nil {
		return cfg, fmt.Errorf("test model flags: %w", err)
	}
	if cfg.retention <= cfg.expiry {
		return cfg, fmt.Errorf("--retention (%s) must be longer than --expiry (%s)",
			cfg.retention, cfg.expiry)
	}
	if err := checkPublicURL(cfg.publicURL); err != nil {
		return cfg, err
	}
	if err := checkListCache(fs, cfg); err != nil {
		return cfg, err
	}
	cfg.engine.Retention = cfg.retention
	return cfg, nil
}

// checkPublicURL accepts an empty --public-url or an absolute http or https
// URL with a host and at most a path. The server appends
// /v1/messages/batches/ID/results to it: a query or fragment would end up in
// the middle of every results_url, and credentials in every batch.
func checkPublicURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("--public-url %q: %w", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("--public-url %q: must start with http:// or https://", raw)
	case u.Host == "":
		return fmt.Errorf("--public-url %q: has no host", raw)
	case u.User != nil:
		return fmt.Errorf("--public-url %q: must not hold credentials", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("--public-url %q: must not have a query or fragment", raw)
	}
	return nil
}

func (cfg *serveConfig) addEnvKeys(e *env) error {
	value := e.getenv(apiKeysEnv)
	if value == "" {
		return nil
	}
	for _, item := range strings.Split(value, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		if err := cfg.apiKeys.Set(item); err != nil {
			return fmt.Errorf("%s: %w", apiKeysEnv, err)
		}
	}
	return nil
}

func defaultDataDir(e *env) string {
	if dir := e.getenv(dataDirEnv); dir != "" {
		return dir
	}
	if dir := e.getenv("XDG_DATA_HOME"); dir != "" {
		return filepath.Join(dir, "batchd")
	}
	if home := e.getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "share", "batchd")
	}
	return "batchd-data"
}

func runServe(ctx context.Context, e *env, args []string) error {
	cfg, err := parseServeFlags(e, args)
	if err != nil {
		return err
	}
	logger := newLogger(e, cfg)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	st, closeStore, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()

	model, err := newBackend(cfg, clock.System{}, logger)
	if err != nil {
		return err
	}

	generatedKey, err := provisionKeys(ctx, st, cfg)
	if err != nil {
		return err
	}

	listener, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	printConnection(e, cfg, listener.Addr(), generatedKey)

	return serve(ctx, cfg, st, model, listener, logger)
}

// openStore opens PostgreSQL when a database URL is set, and otherwise the
// SQLite file in the data directory, locked against a second process.
func openStore(ctx context.Context, cfg serveConfig) (store.Store, func(), error) {
	if cfg.databaseURL != "" {
		if !strings.HasPrefix(cfg.databaseURL, "postgres://") &&
			!strings.HasPrefix(cfg.databaseURL, "postgresql://") {
			return nil, nil, fmt.Errorf("--database-url must start with postgres:// or " +
				"postgresql://")
		}
		st, err := postgres.Open(ctx, cfg.databaseURL)
		if err != nil {
			return nil, nil, err
		}
		return st, func() { st.Close() }, nil
	}

	unlock, err := lockDataDir(cfg.dataDir)
	if err != nil {
		return nil, nil, err
	}
	opts := sqlite.Options{ListCacheSize: cfg.listCache}
	if cfg.listCache == 0 {
		opts.ListCacheSize = -1
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.dataDir, "batchd.db"), opts)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return st, func() { st.Close(); unlock() }, nil
}

// serve runs the engine and the HTTP server until ctx is done, then stops
// both: the listener first, then the engine with its grace period.
func serve(ctx context.Context, cfg serveConfig, st store.Store, model backend.Backend,
	listener net.Listener, logger *slog.Logger) error {
	clk := clock.System{}
	cfg.engine.Metrics = metrics.New()
	if r, ok := model.(*router.Router); ok {
		if err := cfg.engine.Metrics.Register(newBackendCollector(r)); err != nil {
			return err
		}
	}
	eng := engine.New(cfg.engine, st, model, clk, logger)
	server := api.New(api.Config{PublicURL: cfg.publicURL, Expiry: cfg.expiry,
		Metrics: cfg.engine.Metrics}, st, clk, eng, logger)

	httpServer := &http.Server{
		Handler:           server.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	engineDone := make(chan error, 1)
	go func() { engineDone <- eng.Run(ctx) }()

	serveDone := make(chan error, 1)
	go func() { serveDone <- httpServer.Serve(listener) }()
	logger.InfoContext(ctx, "batchd listening", "addr", listener.Addr().String(),
		"data_dir", cfg.dataDir)

	select {
	case <-ctx.Done():
	case err := <-serveDone:
		return fmt.Errorf("http server: %w", err)
	}

	logger.InfoContext(ctx, "batchd stopping")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownGrace)
	defer cancel()
	httpErr := httpServer.Shutdown(shutdownCtx)
	engineErr := <-engineDone
	if errors.Is(httpErr, context.DeadlineExceeded) {
		httpErr = nil // slow downloads were cut off; their clients may retry
	}
	return errors.Join(httpErr, engineErr)
}

func newLogger(e *env, cfg serveConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logJSON {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}

// lockDataDir takes an exclusive lock on the data directory, because the
// SQLite store assumes that it is the only process using its file.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "batchd.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another batchd process "+
			"(lock %s): %w", dir, path, err)
	}
	return func() { f.Close() }, nil
}

// provisionKeys stores the configured API keys. With none configured and none
// stored, it creates one for the default workspace and keeps it in the data
// directory. It returns the generated key, if one is in use, for printing.
func provisionKeys(ctx context.Context, st store.Store, cfg serveConfig) (string, error) {
	now := time.Now()
	for _, k := range cfg.apiKeys {
		err := st.KeyPut(ctx, store.KeyPutParams{
			Hash: api.HashKey(k.key), WorkspaceID: k.workspaceID, CreatedAt: now,
		})
		if err != nil {
			return "", err
		}
	}
	if len(cfg.apiKeys) > 0 {
		return "", nil
	}

	path := filepath.Join(cfg.dataDir, apiKeyFile)
	if saved, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(saved)), nil
	}

	count, err := st.KeyCount(ctx)
	if err != nil || count > 0 {
		return "", err
	}
	return generateKey(ctx, st, path, now)
}

func generateKey(ctx context.Context, st store.Store, path string, now time.Time) (string, error) {
	random := make([]byte, generatedKeyRandomBytes)
	_, _ = rand.Read(random)
	key := generatedKeyPrefix + base64.RawURLEncoding.EncodeToString(random)

	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save generated API key: %w", err)
	}
	err := st.KeyPut(ctx, store.KeyPutParams{
		Hash: api.HashKey(key), WorkspaceID: defaultWorkspace, CreatedAt: now,
	})
	if err != nil {
		return "", err
	}
	return key, nil
}

// printConnection prints the two environment lines an SDK user needs.
func printConnection(e *env, cfg serveConfig, addr net.Addr, generatedKey string) {
	base := cfg.publicURL
	if base == "" {
		base = "http://" + reachableAddr(addr)
	}
	fmt.Fprintf(e.stdout, "ANTHROPIC_BASE_URL=%s\n", base)
	if generatedKey != "" {
		fmt.Fprintf(e.stdout, "ANTHROPIC_API_KEY=%s\n", generatedKey)
	} else {
		fmt.Fprintln(e.stdout, "# ANTHROPIC_API_KEY: one of the keys given with --api-key or "+
			apiKeysEnv)
	}
}

// reachableAddr returns addr as a client on this machine can dial it: an
// unspecified listen address such as 0.0.0.0 or [::] becomes 127.0.0.1.
func reachableAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

// checkListCache rejects a negative --list-cache, and --list-cache with
// PostgreSQL, whose nodes cannot keep a copy in memory because other nodes
// change the same rows.
func checkListCache(fs *flag.FlagSet, cfg serveConfig) error {
	if cfg.listCache < 0 {
		return fmt.Errorf("--list-cache must be 0 or more, got %d", cfg.listCache)
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "list-cache" })
	if set && cfg.databaseURL != "" {
		return errors.New("--list-cache applies to the SQLite store only; " +
			"remove it or --database-url")
	}
	return nil
}

// durationFlag is a time.Duration flag that also accepts whole days, such
// as 29d, because retention windows are usually stated in days.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "" // the flag package then prints no default
	}
	return f.d.String()
}

func (f durationFlag) Set(value string) error {
	d, err := parseDuration(value)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

func parseDuration(value string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(value, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err == nil && fmt.Sprint(n) == days && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use a Go duration such as 90s or 24h, "+
			"or whole days such as 29d", value)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", value)
	}
	return d, nil
}

var osGetenv = os.Getenv
