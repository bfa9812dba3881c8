package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/icpgate/icpgate/registry/pgschema"
)

// errNoDSN is returned when neither -dsn, ICPGATE_DSN nor the config's
// registry.postgres.dsn names a filing database.
var errNoDSN = errors.New("no filing database: set registry.postgres.dsn in the config, ICPGATE_DSN, or -dsn")

// dbFlags are the flags every database subcommand takes.
type dbFlags struct {
	config *string
	dsn    *string
}

func addDBFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		config: fs.String("config", "", "config file whose registry.postgres.dsn names the filing database"),
		dsn:    fs.String("dsn", "", "libpq URL of the filing database (overrides the config and ICPGATE_DSN)"),
	}
}

// resolveDSN picks the database: -dsn, then ICPGATE_DSN, then the config
// file's registry.postgres.dsn. The database commands read only that key,
// so a config whose listeners are for another machine still works here.
func (f dbFlags) resolveDSN() (string, error) {
	if *f.dsn != "" {
		return *f.dsn, nil
	}
	if v := os.Getenv("ICPGATE_DSN"); v != "" {
		return v, nil
	}
	if *f.config == "" {
		return "", errNoDSN
	}
	data, err := os.ReadFile(*f.config)
	if err != nil {
		return "", fmt.Errorf("%w: reading %s: %w", ErrConfig, *f.config, err)
	}
	var c struct {
		Registry struct {
			File     string `yaml:"file"`
			Postgres struct {
				DSN string `yaml:"dsn"`
			} `yaml:"postgres"`
		} `yaml:"registry"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrConfig, *f.config, err)
	}
	if err := registrySource(c.Registry.File, c.Registry.Postgres.DSN); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrConfig, *f.config, err)
	}
	if c.Registry.Postgres.DSN == "" {
		return "", errNoDSN
	}
	return c.Registry.Postgres.DSN, nil
}

func (f dbFlags) connect(ctx context.Context) (*pgx.Conn, error) {
	dsn, err := f.resolveDSN()
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("registry.postgres.dsn: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the filing database: %w", err)
	}
	return conn, nil
}

// operator names who runs a command, for the audit table.
func operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// cmdDB runs `icpgate db migrate|status|confirm-deletes`.
func cmdDB(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dbUsage)
		return exitError
	}
	verb, rest := args[0], args[1:]
	fs := flag.NewFlagSet("db "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	df := addDBFlags(fs)
	if err := fs.Parse(rest); err != nil {
		return exitError
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "icpgate db %s: unexpected argument %q\n", verb, fs.Arg(0))
		return exitError
	}
	switch verb {
	case "migrate", "status", "confirm-deletes":
	default:
		fmt.Fprintf(stderr, "icpgate db: unknown command %q\n\n%s", verb, dbUsage)
		return exitError
	}
	conn, err := df.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "icpgate db %s: %v\n", verb, err)
		return exitError
	}
	defer conn.Close(context.WithoutCancel(ctx))
	switch verb {
	case "migrate":
		err = dbMigrate(ctx, conn, stdout)
	case "status":
		err = dbStatus(ctx, conn, stdout)
	case "confirm-deletes":
		err = dbConfirmDeletes(ctx, conn, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "icpgate db %s: %v\n", verb, err)
		return exitError
	}
	return exitOK
}

const dbUsage = `Usage: icpgate db COMMAND [-config FILE | -dsn URL]

Commands:
  migrate           create or upgrade icpgate's schema in the filing database (idempotent)
  status            print the schema version, record count and change sequence head
  confirm-deletes   let the gateways apply a sync that removes more than their
                    max_delete_fraction of the records (up to the current change)
`

func dbMigrate(ctx context.Context, conn *pgx.Conn, stdout io.Writer) error {
	applied, err := pgschema.Migrate(ctx, conn)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "schema is current (version %d)\n", pgschema.Latest())
		return nil
	}
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied migration %d\n", v)
	}
	fmt.Fprintf(stdout, "schema is at version %d\n", pgschema.Latest())
	return nil
}

func dbStatus(ctx context.Context, conn *pgx.Conn, stdout io.Writer) error {
	if err := pgschema.Check(ctx, conn); err != nil {
		return err
	}
	var records, head, confirmed int64
	var id string
	err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM icpgate_records), s.last,
		(SELECT coalesce(max(up_to_seq), 0) FROM icpgate_delete_confirmations), m.database_id::text
		FROM icpgate_change_seq s, icpgate_meta m`).Scan(&records, &head, &confirmed, &id)
	if err != nil {
		return fmt.Errorf("reading status: %w", err)
	}
	fmt.Fprintf(stdout, "schema version:     %d\ndatabase id:        %s\nrecords:            %d\nchange head:        %d\ndeletes confirmed:  up to %d\n",
		pgschema.Latest(), id, records, head, confirmed)
	return nil
}

// dbConfirmDeletes records an operator's confirmation up to the current
// change head, audits it and wakes the gateways.
func dbConfirmDeletes(ctx context.Context, conn *pgx.Conn, stdout io.Writer) error {
	if err := pgschema.Check(ctx, conn); err != nil {
		return err
	}
	var head int64
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		who := operator()
		if err := tx.QueryRow(ctx, `INSERT INTO icpgate_delete_confirmations (up_to_seq, who)
			SELECT last, $1 FROM icpgate_change_seq RETURNING up_to_seq`, who).Scan(&head); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO icpgate_audit (who, action, target, detail)
			VALUES ($1, 'confirm_deletes', '', jsonb_build_object('up_to_seq', $2::bigint))`, who, head); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_notify('icpgate_changes', $1)", fmt.Sprint(head))
		return err
	})
	if err != nil {
		return fmt.Errorf("confirming: %w", err)
	}
	fmt.Fprintf(stdout, "deletions up to change %d confirmed; the gateways apply them now\n", head)
	return nil
}
