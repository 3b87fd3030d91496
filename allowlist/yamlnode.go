package allowlist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The helpers below walk a yaml.Node tree by hand instead of unmarshaling
// into structs: every node carries its line, so each problem can be reported
// where it is, and unknown or repeated keys can be refused instead of being
// silently dropped.

// decodeDocument parses data as at most one YAML document and returns its
// root node, or nil when the document is empty or null.
func decodeDocument(data []byte) (root *yaml.Node, err error) {
	// The YAML parser is third-party code fed with an operator's file during
	// a live reload; a bug in it must become a reported error, not take the
	// node down.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, &ParseError{Err: fmt.Errorf("YAML parser failed: %v", r)}
		}
	}()
	if err := checkText(data); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err, data)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(err, data)
	default:
		return nil, &ParseError{Line: extra.Line, Err: errors.New("only one YAML document is allowed")}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root = doc.Content[0]
	if isNull(root) {
		return nil, nil
	}
	return root, nil
}

// checkText rejects bytes the YAML reader refuses, but with the line: the
// reader's own errors for them carry no position.
func checkText(data []byte) error {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return &ParseError{Line: line, Err: errors.New("invalid UTF-8 (the file must be UTF-8 text)")}
		case r == '\n':
			line++
		case r == '\t' || r == '\r' || r == 0x85:
		case r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0xfffe || r == 0xffff:
			return &ParseError{Line: line, Err: fmt.Errorf("control character %U is not allowed", r)}
		}
		i += size
	}
	return nil
}

// yamlError turns a yaml.v3 error, whose text reads "yaml: line N: msg",
// into a ParseError with the line as a field.
func yamlError(err error, data []byte) *ParseError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				if text == "did not find expected alphabetic or numeric character" {
					// What the parser says about a bare "*", which YAML
					// reads as the start of an alias.
					text += ` (to write the wildcard, quote it: "*")`
				}
				return &ParseError{Line: line, Err: errors.New(text)}
			}
		}
	}
	// The parser reports no line for an alias without an anchor; point at
	// the first use of the alias.
	if rest, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		if anchor, ok := strings.CutSuffix(rest, "' referenced"); ok {
			if i := bytes.Index(data, []byte("*"+anchor)); i >= 0 {
				return &ParseError{Line: 1 + bytes.Count(data[:i], []byte("\n")), Err: errors.New(msg)}
			}
		}
	}
	// Otherwise the parser leaves the line out only when the problem is on
	// the first line: its positions count from zero and zero means "unset".
	return &ParseError{Line: 1, Err: errors.New(msg)}
}

// nodeError reports a problem at n.
func nodeError(n *yaml.Node, err error) *ParseError {
	return &ParseError{Line: n.Line, Err: err}
}

func nodeErrorf(n *yaml.Node, format string, args ...any) *ParseError {
	return nodeError(n, fmt.Errorf(format, args...))
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names a node's shape for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	default:
		return "an unexpected node"
	}
}

// field is one key of a mapping, with its key node kept for its line.
type field struct {
	key, value *yaml.Node
}

// fields returns the keys of the mapping n, refusing anything but a mapping
// whose keys are all in allowed and appear once. what names the mapping in
// errors ("peer entry").
func fields(n *yaml.Node, what string, allowed ...string) (map[string]field, error) {
	if n.Kind != yaml.MappingNode {
		return nil, nodeErrorf(n, "%s must be a mapping, got %s", what, describe(n))
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, nodeErrorf(k, "%s has a key that is %s, not a name", what, describe(k))
		}
		if !slices.Contains(allowed, k.Value) {
			return nil, nodeErrorf(k, "unknown key %q in %s (want %s)", k.Value, what, strings.Join(allowed, ", "))
		}
		if prev, dup := out[k.Value]; dup {
			return nil, nodeErrorf(k, "key %q repeated in %s (first at line %d)", k.Value, what, prev.key.Line)
		}
		if v.Kind == yaml.AliasNode {
			return nil, nodeErrorf(v, "%s: YAML aliases are not supported", k.Value)
		}
		out[k.Value] = field{key: k, value: v}
	}
	return out, nil
}

// scalar returns the text of a scalar value; name is its key, for errors.
func scalar(n *yaml.Node, name string) (string, error) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return "", nodeErrorf(n, "%s must be a value, got %s", name, describe(n))
	}
	return n.Value, nil
}

// sequence returns the items of a list, treating null as empty; name is its
// key, for errors.
func sequence(n *yaml.Node, name string) ([]*yaml.Node, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, nodeErrorf(n, "%s must be a list, got %s", name, describe(n))
	}
	for _, item := range n.Content {
		if item.Kind == yaml.AliasNode {
			return nil, nodeErrorf(item, "%s: YAML aliases are not supported", name)
		}
	}
	return n.Content, nil
}

// encodeDocument renders root as a YAML document with two-space indents,
// the shape operators write by hand.
func encodeDocument(root *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mappingNode(pairs ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: pairs}
}

func stringNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func intNode(v int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v, 10)}
}
