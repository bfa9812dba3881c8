package admin_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// spoofingRunes are characters that can make text display other than it
// is stored (bidi controls, invisible format characters), break a line or
// a table where one is printed (controls, line and paragraph separators),
// or drive a terminal (C0 and C1 controls).
var spoofingRunes = []struct {
	name string
	r    rune
}{
	{"NUL", 0x00}, {"BEL", 0x07}, {"tab", '\t'}, {"line feed", '\n'}, {"carriage return", '\r'},
	{"escape", 0x1b}, {"DEL", 0x7f}, {"NEL", 0x85}, {"CSI", 0x9b},
	{"arabic letter mark", 0x061c}, {"soft hyphen", 0x00ad}, {"zero width space", 0x200b},
	{"LRM", 0x200e}, {"RLM", 0x200f},
	{"LRE", 0x202a}, {"RLE", 0x202b}, {"PDF", 0x202c}, {"LRO", 0x202d}, {"RLO", 0x202e},
	{"LRI", 0x2066}, {"RLI", 0x2067}, {"FSI", 0x2068}, {"PDI", 0x2069},
	{"line separator", 0x2028}, {"paragraph separator", 0x2029},
	{"word joiner", 0x2060}, {"byte order mark", 0xfeff}, {"interlinear anchor", 0xfff9}, {"tag A", 0xe0041},
}

// TestTextFieldsRefuseSpoofing: every free-text field of the API, on
// every path that writes it (create, update, bulk), refuses each such
// character with a 400 naming the field, and the override is not stored
// or changed.
func TestTextFieldsRefuseSpoofing(t *testing.T) {
	e := newEnv(t, nil)
	o, _ := e.mustCreate(e.secret["support"], allowBody("unfiled.cn"))
	path := "/v1/overrides/" + o["id"].(string)
	for _, field := range []string{"reason", "ticket"} {
		for _, c := range spoofingRunes {
			// In the middle: the ends are trimmed of white space.
			text, _ := json.Marshal("SR-1 " + string(c.r) + "示例")
			t.Run(field+"/"+c.name, func(t *testing.T) {
				body := overrideWith(t, field, string(text))
				e.clock.Add(time.Minute) // a fresh mutation token each time
				m := wantError(t, e.create(e.secret["support"], body), 400, "invalid", field)
				if msg := m["message"].(string); !strings.Contains(msg, fmt.Sprintf("U+%04X", c.r)) {
					t.Errorf("message %q does not name U+%04X", msg, c.r)
				}
				e.clock.Add(time.Minute)
				wantError(t, e.do(req{method: "PATCH", path: path, token: e.secret["support"],
					body: fmt.Sprintf(`{%q:%s}`, field, text), header: map[string]string{"If-Match": `"1"`}}), 400, "invalid", field)
				e.clock.Add(time.Minute)
				r := e.do(req{method: "POST", path: "/v1/overrides/bulk", token: e.secret["admin"], body: `{"overrides":[` + body + `]}`})
				var out struct {
					Results []struct {
						Error struct{ Field string } `json:"error"`
					} `json:"results"`
				}
				json.Unmarshal([]byte(r.body), &out)
				if want := "overrides[0]." + field; r.status != 200 || len(out.Results) != 1 || out.Results[0].Error.Field != want {
					t.Errorf("bulk: got %d %s, want an item error for %s", r.status, r.body, want)
				}
			})
		}
	}
	r := e.do(req{method: "GET", path: "/v1/overrides", token: e.secret["viewer"]})
	var l struct {
		Overrides []struct {
			Host    string `json:"host"`
			Version int    `json:"version"`
		} `json:"overrides"`
	}
	if err := json.Unmarshal([]byte(r.body), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Overrides) != 1 || l.Overrides[0].Version != 1 {
		t.Errorf("after the refusals: got %+v, want only unfiled.cn at version 1", l.Overrides)
	}
}

// overrideWith is a valid allow create body whose field (reason or
// ticket) is the JSON string text.
func overrideWith(t *testing.T, field, text string) string {
	t.Helper()
	m := map[string]json.RawMessage{
		"host": json.RawMessage(`"other.cn"`), "action": json.RawMessage(`"allow"`),
		"reason": json.RawMessage(`"接入备案办理中"`), "ticket": json.RawMessage(`"SR-1"`),
	}
	m[field] = json.RawMessage(text)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTextFieldsRefuseInvalidUTF8: encoding/json would quietly store
// U+FFFD for bytes that are not UTF-8; the API says what is wrong instead.
func TestTextFieldsRefuseInvalidUTF8(t *testing.T) {
	e := newEnv(t, nil)
	for _, field := range []string{"reason", "ticket"} {
		e.clock.Add(time.Minute)
		wantError(t, e.create(e.secret["support"], overrideWith(t, field, "\"SR-\xff1\"")), 400, "invalid", field)
	}
}

// TestTextFieldsKeepText: Chinese, emoji (a ZWJ sequence and a flag
// among them) and ordinary punctuation, ASCII and full width, are stored
// as sent.
func TestTextFieldsKeepText(t *testing.T) {
	e := newEnv(t, nil)
	for i, text := range []string{
		"接入备案审核中，预计 3 个工作日（见工单）。",
		"客户来电：「网站打不开」—— 已核实 ICP 备案号 京ICP备12345678号-1",
		"👍 ok 👨‍💻 🇨🇳 ❤️",
		`ticket #42: "quoted" & <angle> 'single' 100% ~!@$^*()_+={}[]|\:;,.?/`,
		"عربى and עברית as plain letters",
	} {
		for _, field := range []string{"reason", "ticket"} {
			if field == "ticket" && len([]rune(text)) > 100 {
				continue
			}
			raw, _ := json.Marshal(text)
			e.clock.Add(time.Minute)
			body := strings.Replace(overrideWith(t, field, string(raw)), "other.cn", fmt.Sprintf("keep%d%s.cn", i, field), 1)
			o, _ := e.mustCreate(e.secret["support"], body)
			if o[field] != text {
				t.Errorf("%s: stored %q, want %q", field, o[field], text)
			}
		}
	}
}
