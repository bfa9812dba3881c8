package compliance

import (
	"slices"
	"testing"

	"github.com/icpgate/icpgate/registry"
)

var findTests = []struct {
	name, text string
	want       []string
}{
	{"website number", "©2024 示例 京ICP备09051301号-1", []string{"京ICP备09051301号-1"}},
	{"subject number", "京ICP备09051301号", []string{"京ICP备09051301号"}},
	{"no 号", "京ICP备09051301-1", []string{"京ICP备09051301号-1"}},
	{"no 号 no site", "京ICP备09051301 版权所有", []string{"京ICP备09051301号"}},
	{"spaces", "京 ICP 备 09051301 号 - 1", []string{"京ICP备09051301号-1"}},
	{"nbsp", "京ICP备\u00a009051301号\u00a0-1", []string{"京ICP备09051301号-1"}},
	{"full width", "京ＩＣＰ备０９０５１３０１号－１", []string{"京ICP备09051301号-1"}},
	{"ideographic space", "京ICP备\u300009051301号", []string{"京ICP备09051301号"}},
	{"em dash", "京ICP备09051301号—2", []string{"京ICP备09051301号-2"}},
	{"lower case icp", "京icp备09051301号-1", []string{"京ICP备09051301号-1"}},
	{"ten digits", "蜀ICP备2026007879号-3", []string{"蜀ICP备2026007879号-3"}},
	{"licence", "京ICP证090513号", []string{"京ICP证090513号"}},
	{"licence no 号", "京ICP证090513", []string{"京ICP证090513号"}},
	{"vat licence", "增值电信业务经营许可证：京B2-20040180", []string{"京B2-20040180"}},
	{"vat licence two categories", "皖B1.B2-20090034", []string{"皖B1.B2-20090034"}},
	{"several", "京ICP证090513号 京ICP备09051301号-1 京B2-20040180",
		[]string{"京ICP证090513号", "京ICP备09051301号-1", "京B2-20040180"}},
	{"site not run into the next digits", "京ICP备09051301号-1 2024", []string{"京ICP备09051301号-1"}},
	{"bad site falls back to the subject", "京ICP备09051301号-0", []string{"京ICP备09051301号"}},
	{"label before the number", "网站ICP备案号：京ICP备09051301号-1", []string{"京ICP备09051301号-1"}},
	{"public security filing is not one", "京公网安备 11010802020088号", nil},
	{"unknown province", "萌ICP备20240001号", nil},
	{"wrong digit count", "京ICP备123号", nil},
	{"nothing", "欢迎光临", nil},
}

func TestFindFilingNumbers(t *testing.T) {
	for _, tt := range findTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FindFilingNumbers(tt.text); !slices.Equal(got, tt.want) {
				t.Errorf("FindFilingNumbers(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func FuzzFindFilingNumbers(f *testing.F) {
	for _, tt := range findTests {
		f.Add(tt.text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, n := range FindFilingNumbers(text) {
			if _, err := registry.ParseFilingNumber(n); err != nil {
				t.Errorf("FindFilingNumbers(%q) found %q, which does not parse: %v", text, n, err)
			}
		}
	})
}
