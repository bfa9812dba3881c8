package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"

	"github.com/icpgate/icpgate/registry"
)

// A registry file exported by Excel on Chinese Windows ("CSV (逗号分隔)") is
// GBK, not UTF-8: its Chinese subjects would reach the database as
// garbage. import checks the encoding before anything else and says how to
// convert the file, or decodes it with --encoding gbk or gb18030.

// importEncodings are the values of import --encoding.
var importEncodings = map[string]encoding.Encoding{
	"utf-8":   nil,
	"gbk":     simplifiedchinese.GBK,
	"gb18030": simplifiedchinese.GB18030,
}

// utf8BOMBytes is the byte order mark spreadsheets write before UTF-8.
var utf8BOMBytes = []byte("\xef\xbb\xbf")

// loadImportFile loads the registry file at path in encoding enc (a key
// of importEncodings). A UTF-8 file that is not valid UTF-8 is refused
// with its first bad line and the command that converts it. A file named
// GBK or GB18030 that is valid UTF-8 with non-ASCII text is refused too:
// decoding it again would garble it.
func loadImportFile(path, enc string) (*registry.Snapshot, registry.Warnings, error) {
	e, ok := importEncodings[enc]
	if !ok {
		return nil, registry.Warnings{}, fmt.Errorf("--encoding: want utf-8, gbk or gb18030, got %q", enc)
	}
	line, utf, err := firstNonUTF8Line(path)
	if err != nil {
		return nil, registry.Warnings{}, err
	}
	if e == nil {
		if line > 0 {
			return nil, registry.Warnings{}, fmt.Errorf("%s:%d: not UTF-8 (GBK, as Excel on Chinese Windows saves CSV?): convert it with\n"+
				"  iconv -f GBK -t UTF-8 %s > %s.utf8\n"+
				"or import it as it is with --encoding gbk (or gb18030)", path, line, path, path)
		}
		return registry.LoadSnapshotWarnings(path)
	}
	if line == 0 && utf {
		return nil, registry.Warnings{}, fmt.Errorf("%s: already UTF-8 (it has UTF-8 text and no byte that is not): decoding it as %s would garble it; import it without --encoding", path, enc)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, registry.Warnings{}, fmt.Errorf("opening registry file: %w", err)
	}
	defer f.Close()
	// Decoding keeps lines as they are, so errors name the file's lines.
	snap, err := registry.ReadSnapshot(transform.NewReader(f, e.NewDecoder()), path)
	return snap, registry.Warnings{}, err
}

// firstNonUTF8Line returns the number of the first line of the file at
// path that is not valid UTF-8 (0 when every line is), and whether the
// file has any non-ASCII UTF-8 text. A UTF-8 byte order mark at the start
// is not text.
func firstNonUTF8Line(path string) (line int, nonASCII bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, fmt.Errorf("opening registry file: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		b, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: checked whole (the registry
			// refuses it anyway, with a better message).
			var more []byte
			more, err = br.ReadSlice('\n')
			b = append(bytes.Clone(b), more...)
		}
		if n == 1 {
			b = bytes.TrimPrefix(b, utf8BOMBytes)
		}
		if !utf8.Valid(b) {
			return n, nonASCII, nil
		}
		nonASCII = nonASCII || hasNonASCII(b)
		if err == io.EOF {
			return 0, nonASCII, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("reading registry file: %w", err)
		}
	}
}

func hasNonASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}
