package allowlist

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"
)

// Sentinel errors, matched with [errors.Is]. The returned errors carry more
// detail (the offending value, the line) than the sentinels' own text.
var (
	// ErrInvalidID reports an empty or malformed peer ID.
	ErrInvalidID = errors.New("invalid peer ID")
	// ErrDuplicateID reports a peer listed twice in one list.
	ErrDuplicateID = errors.New("duplicate peer ID")
	// ErrInvalidAddr reports an IP address or prefix that does not parse or
	// is not valid.
	ErrInvalidAddr = errors.New("invalid address")
	// ErrInvalidName reports an entry name that is not valid UTF-8 or holds
	// a control or format character.
	ErrInvalidName = errors.New("invalid name")
	// ErrInvalidChannel reports a channel outside 0..[MaxChannel] that is not
	// [AnyChannel].
	ErrInvalidChannel = errors.New("invalid channel")
	// ErrDuplicateRoute reports a rule listed twice in one routing table.
	ErrDuplicateRoute = errors.New("duplicate route")
	// ErrEmptyReload reports a file listing no peers, without
	// "allow_empty: true": refused by a reload (Reload, Watch) over a
	// non-empty list, which keeps its entries, and by Check.
	ErrEmptyReload = errors.New("the file lists no peers")
	// ErrDanglingLink reports a file path that is a symbolic link to
	// nothing (see [LinkError]).
	ErrDanglingLink = errors.New("symbolic link to a file that does not exist")
)

// LinkError reports a list or routes file that is a symbolic link whose
// destination does not exist: Load and Reload cannot read it, and Save
// refuses to write a file in the link's place. It matches [ErrDanglingLink]
// and [fs.ErrNotExist].
type LinkError struct {
	// Path is the link; Dest is what it points to, as written in the link.
	Path, Dest string
}

func (e *LinkError) Error() string {
	return e.Path + " is a symbolic link to " + strconv.Quote(e.Dest) + ", which does not exist"
}

// Is matches ErrDanglingLink and fs.ErrNotExist.
func (e *LinkError) Is(target error) bool {
	return target == ErrDanglingLink || target == fs.ErrNotExist
}

// ParseError reports a problem in an allowlist or routes document and where
// it is, so an operator can fix the file without guessing.
type ParseError struct {
	// Path is the file the document was read from; empty when parsing bytes.
	Path string
	// Line is the 1-based line of the problem; 0 when the YAML parser did not
	// report one.
	Line int
	// Err is the problem itself. It matches the package's sentinel errors
	// where one applies.
	Err error
}

// Error formats the error as "allowlist: path: line N: problem", leaving out
// the parts that are unknown.
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("allowlist: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *ParseError) Unwrap() error { return e.Err }

// detailError gives a precise message (`"xyz" is not a peer ID: ...`) while
// still matching a sentinel, so callers can branch without parsing text.
type detailError struct {
	kind  error
	msg   string
	cause error
}

func (e *detailError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *detailError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func newDetail(kind error, msg string, cause error) error {
	return &detailError{kind: kind, msg: msg, cause: cause}
}
