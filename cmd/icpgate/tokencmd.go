package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/admin/adminstore"
)

// cmdToken manages access tokens: "token create|ls|revoke". Unlike the
// other admin commands it writes the token store named by the config
// directly (the token file, or the filing database), so the first admin
// token can be made before anyone can sign in. A running gateway sees a
// new or revoked token at once.
func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Usage: icpgate token create --role viewer|support|admin --name NAME | ls | revoke NAME|ID  [-config FILE]")
		return exitError
	}
	sub, rest := args[0], args[1:]
	return adminCmd("token "+sub, stderr, func() (int, error) {
		switch sub {
		case "create":
			return tokenCreate(ctx, rest, stdout, stderr)
		case "ls", "list":
			return tokenList(ctx, rest, stdout, stderr)
		case "revoke":
			return tokenRevoke(ctx, rest, stdout, stderr)
		}
		return exitError, fmt.Errorf("unknown subcommand %q: want create, ls or revoke", sub)
	})
}

// tokenStore is the token store of a config, with what closes it and, in
// PostgreSQL mode, the audit log the change is recorded in.
type tokenStore struct {
	admin.TokenStore
	audit admin.Backend // nil in file mode (the gateway holds the bbolt file)
	close func()
}

// openTokenStore opens the token store cfg names: the filing database
// with registry.postgres.dsn, else admin.tokens_file.
func openTokenStore(ctx context.Context, path string) (*tokenStore, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if dsn := cfg.Registry.Postgres.DSN; dsn != "" {
		pg, err := adminstore.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, err
		}
		if err := pg.Check(ctx); err != nil {
			pg.Close()
			return nil, fmt.Errorf("filing database: %w (run icpgate db migrate if the schema is old)", err)
		}
		return &tokenStore{TokenStore: pg, audit: pg, close: pg.Close}, nil
	}
	if cfg.Admin.TokensFile == "" {
		name := path
		if cfg.Embedded() {
			name = "the embedded config"
		}
		return nil, fmt.Errorf("admin.tokens_file is not set in %s: pass -config FILE with admin.tokens_file (file mode) or registry.postgres.dsn", name)
	}
	tf, err := adminstore.OpenTokenFile(cfg.Admin.TokensFile)
	if err != nil {
		return nil, err
	}
	return &tokenStore{TokenStore: tf, close: func() { matchDirOwner(cfg.Admin.TokensFile) }}, nil
}

// record appends an audit entry for a token change, in PostgreSQL mode.
// The person is the operating-system user running the command.
func (s *tokenStore) record(ctx context.Context, action, target, detail string) error {
	if s.audit == nil {
		return nil
	}
	who := "cli"
	if u, err := user.Current(); err == nil {
		who = "cli:" + u.Username
	}
	host, _ := os.Hostname()
	return s.audit.AppendAudit(ctx, admin.AuditEntry{Who: who, Remote: host, Action: action, Target: target,
		Outcome: "ok", Detail: detail})
}

// tokenJSON is a token as `token ls --json` and `token create --json`
// print it; Token is set only by create.
type tokenJSON struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	Revoked bool      `json:"revoked"`
	Token   string    `json:"token,omitempty"`
}

func tokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := withUsage(flag.NewFlagSet("token create", flag.ContinueOnError), stderr, "token create --role viewer|support|admin --name NAME [-config FILE] [--json]")
	path := fs.String("config", "", "config file naming the token store (admin.tokens_file or registry.postgres.dsn)")
	roleFlag := fs.String("role", "", "viewer, support or admin (required)")
	name := fs.String("name", "", "the person the token is for, e.g. li.wei (required; 1-64 of A-Z a-z 0-9 . _ @ -)")
	asJSON := fs.Bool("json", false, "print the token as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return exitError, err
	}
	if len(pos) != 0 {
		return exitError, usageError(fs, stderr, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if *name == "" {
		return exitError, usageError(fs, stderr, "--name: required")
	}
	role, err := admin.ParseRole(*roleFlag)
	if err != nil {
		return exitError, fmt.Errorf("--role: %w, got %q", err, *roleFlag)
	}
	st, err := openTokenStore(ctx, *path)
	if err != nil {
		return exitError, err
	}
	defer st.close()
	secret, t, err := admin.NewToken(*name, role, time.Now())
	if err != nil {
		return exitError, err
	}
	if err := st.Create(ctx, t); err != nil {
		if errors.Is(err, adminstore.ErrNameTaken) {
			return exitError, fmt.Errorf("--name: %q already has a live token: revoke it first (icpgate token revoke %s) or pick another name", *name, *name)
		}
		return exitError, err
	}
	if err := st.record(ctx, "token.create", t.Name, fmt.Sprintf("id %s, role %s", t.ID, role)); err != nil {
		fmt.Fprintf(stderr, "icpgate token create: token created, but not audited: %v\n", err)
	}
	fmt.Fprintf(stderr, "Created a %s token for %s (id %s). This is the only time its secret is shown:\n"+
		"store it now (a password manager); it cannot be recovered, only revoked and replaced.\n"+
		"Use it with: export %s=<token>, or sign in to the console with it.\n", role, t.Name, t.ID, tokenEnv)
	if *asJSON {
		return exitOK, printJSON(stdout, tokenJSON{ID: t.ID, Name: t.Name, Role: role.String(), Created: t.Created, Token: secret})
	}
	fmt.Fprintln(stdout, secret)
	return exitOK, nil
}

func tokenList(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := withUsage(flag.NewFlagSet("token ls", flag.ContinueOnError), stderr, "token ls [-config FILE] [--json]")
	path := fs.String("config", "", "config file naming the token store")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return exitError, err
	}
	if len(pos) != 0 {
		return exitError, usageError(fs, stderr, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	st, err := openTokenStore(ctx, *path)
	if err != nil {
		return exitError, err
	}
	defer st.close()
	ts, err := st.List(ctx)
	if err != nil {
		return exitError, err
	}
	if *asJSON {
		out := make([]tokenJSON, 0, len(ts))
		for _, t := range ts {
			out = append(out, tokenJSON{ID: t.ID, Name: t.Name, Role: t.Role.String(), Created: t.Created, Revoked: t.Revoked})
		}
		return exitOK, printJSON(stdout, out)
	}
	if len(ts) == 0 {
		fmt.Fprintln(stdout, "no tokens (create one with icpgate token create --role admin --name NAME)")
		return exitOK, nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tSTATUS")
	for _, t := range ts {
		status := "live"
		if t.Revoked {
			status = "revoked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, cell(t.Name), t.Role, fmtTime(&t.Created), status)
	}
	return exitOK, tw.Flush()
}

func tokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := withUsage(flag.NewFlagSet("token revoke", flag.ContinueOnError), stderr, "token revoke NAME|ID [-config FILE]")
	path := fs.String("config", "", "config file naming the token store")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return exitError, err
	}
	if len(pos) != 1 {
		return exitError, usageError(fs, stderr, "want exactly one token name or ID (see icpgate token ls)")
	}
	st, err := openTokenStore(ctx, *path)
	if err != nil {
		return exitError, err
	}
	defer st.close()
	if err := st.Revoke(ctx, pos[0]); err != nil {
		if errors.Is(err, admin.ErrNotFound) {
			return exitError, fmt.Errorf("no live token named %q or with that ID (see icpgate token ls)", pos[0])
		}
		return exitError, err
	}
	if err := st.record(ctx, "token.revoke", pos[0], ""); err != nil {
		fmt.Fprintf(stderr, "icpgate token revoke: token revoked, but not audited: %v\n", err)
	}
	fmt.Fprintf(stdout, "revoked %s: it authenticates nothing from now on\n", pos[0])
	return exitOK, nil
}
