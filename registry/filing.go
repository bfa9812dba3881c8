package registry

// FilingNumber is a parsed ICP filing number or licence. TEMPORARY
// placeholder: being replaced by the full parser.
type FilingNumber struct {
	Raw string
}

// ParseFilingNumber parses and validates a filing number. TEMPORARY placeholder.
func ParseFilingNumber(s string) (FilingNumber, error) { return FilingNumber{Raw: s}, nil }
