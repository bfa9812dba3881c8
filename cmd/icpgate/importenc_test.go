package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/icpgate/icpgate/internal/pgtest"
)

// gbkCSV is a registry CSV as Excel on Chinese Windows saves it: GBK.
func gbkCSV(t *testing.T) []byte {
	t.Helper()
	utf := "domain,state,filing_number,subject,subject_type,province\n" +
		"a.cn,filed,京ICP备10206937号-1,北京测试科技有限公司,enterprise,京\n"
	b, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(utf))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportEncoding: a file that is not UTF-8 is refused before any
// database is contacted, naming its first bad line and the iconv command
// that converts it; --encoding refuses a file already in UTF-8.
func TestImportEncoding(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gbk := write("gbk.csv", gbkCSV(t))
	utf := write("utf8.csv", []byte("domain,state,subject\nb.cn,cancelled,北京测试\n"))
	noDB := "postgres://icpgate@127.0.0.1:1/none"
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"gbk as utf-8", []string{gbk}, []string{gbk + ":2: not UTF-8", "iconv -f GBK -t UTF-8 " + gbk + " > " + gbk + ".utf8", "--encoding gbk"}},
		{"utf-8 as gbk", []string{"--encoding", "gbk", utf}, []string{utf + ": already UTF-8", "without --encoding"}},
		{"unknown encoding", []string{"--encoding", "big5", utf}, []string{`--encoding: want utf-8, gbk or gb18030, got "big5"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, importCmd, append([]string{"-dsn", noDB, "--dry-run"}, tt.args...)...)
			if code != exitError || out != "" {
				t.Errorf("got exit %d, stdout %q; want %d and nothing", code, out, exitError)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q: want %q", errOut, w)
				}
			}
		})
	}
}

// TestImportGBK imports a GBK file with --encoding gbk and gb18030, and a
// UTF-8 file with a byte order mark, into a real database: the subject
// arrives as the Chinese text it is.
func TestImportGBK(t *testing.T) {
	dsn := pgtest.Shared(t).NewDB(t)
	if code, _, errOut := runCmd(t, dbCmd, "migrate", "-dsn", dsn); code != exitOK {
		t.Fatalf("migrate: %s", errOut)
	}
	dir := t.TempDir()
	gbk := filepath.Join(dir, "gbk.csv")
	if err := os.WriteFile(gbk, gbkCSV(t), 0o600); err != nil {
		t.Fatal(err)
	}
	bom := filepath.Join(dir, "bom.csv")
	if err := os.WriteFile(bom, []byte("\ufeffdomain,state,subject\nb.cn,cancelled,上海测试有限公司\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	subject := func(domain string) string {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var s string
		if err := conn.QueryRow(context.Background(), "SELECT subject FROM icpgate_records WHERE domain = $1", domain).Scan(&s); err != nil {
			t.Fatalf("%s: %v", domain, err)
		}
		return s
	}
	for _, args := range [][]string{{"--encoding", "gbk", gbk}, {"--encoding", "gb18030", gbk}, {bom}} {
		if code, _, errOut := runCmd(t, importCmd, append([]string{"-dsn", dsn}, args...)...); code != exitOK {
			t.Fatalf("import %q: exit %d: %s", args, code, errOut)
		}
	}
	if got := subject("a.cn"); got != "北京测试科技有限公司" {
		t.Errorf("a.cn subject: got %q, want 北京测试科技有限公司", got)
	}
	if got := subject("b.cn"); got != "上海测试有限公司" {
		t.Errorf("b.cn subject: got %q, want 上海测试有限公司", got)
	}
}
