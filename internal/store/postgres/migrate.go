package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate applies every embedded migration that the schema lacks, each in its
// own transaction, in the order of the number that starts its file name. It
// holds a session-level advisory lock on one connection meanwhile, so nodes
// that start together apply each migration once, one after the other.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext(coalesce(current_schema(), '')))`,
		lockMigrate); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	migrateErr := applyMigrations(ctx, conn.Conn())

	// The lock goes with the session if the unlock fails, so the connection
	// must not return to the pool holding it.
	_, err = conn.Exec(context.WithoutCancel(ctx),
		`SELECT pg_advisory_unlock($1, hashtext(coalesce(current_schema(), '')))`, lockMigrate)
	if err != nil {
		conn.Conn().Close(context.WithoutCancel(ctx))
		return errors.Join(migrateErr, fmt.Errorf("release migration lock: %w", err))
	}
	return migrateErr
}

func applyMigrations(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}

	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)

	for _, name := range names {
		if err := applyMigration(ctx, conn, name); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, conn *pgx.Conn, name string) error {
	base := strings.TrimPrefix(name, "migrations/")
	number, _, _ := strings.Cut(base, "_")
	version, err := strconv.Atoi(number)
	if err != nil {
		return fmt.Errorf("migration %s: file name must start with a number", base)
	}

	text, err := migrationFiles.ReadFile(name)
	if err != nil {
		return err
	}

	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var applied bool
		err := tx.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`,
			version).Scan(&applied)
		if err != nil || applied {
			return err
		}

		// Exec without arguments uses the simple protocol, which runs a
		// file of several statements.
		if _, err := tx.Exec(ctx, string(text)); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
		return err
	})
}
