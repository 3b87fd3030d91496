package allowlist

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.yaml.in/yaml/v3"
)

// YAML keys of an allowlist file.
const (
	keyPeers      = "peers"
	keyAllowEmpty = "allow_empty"
	keyID         = "id"
	keyName       = "name"
	keyAddrs      = "addrs"
	keyRelay      = "relay"
)

// Parse reads an allowlist document:
//
//	peers:
//	  - id: 16Uiu2HAm...
//	    name: operator-2
//	    addrs: [127.0.0.2, 10.1.0.0/16]
//	    relay: true   # optional: admit it over a circuit relay despite addrs
//
// It returns the entries in file order. Every problem is reported as a
// *[ParseError] naming its line; invalid IDs and addresses and repeated peers
// also match [ErrInvalidID], [ErrInvalidAddr] and [ErrDuplicateID]. An empty
// document, or "peers: []", is an empty list.
func Parse(data []byte) ([]Entry, error) {
	return parseEntries(data)
}

func parseEntries(data []byte) ([]Entry, error) {
	d, err := parseDocument(data)
	return d.entries, err
}

// document is a parsed allowlist file.
type document struct {
	entries []Entry
	// allowEmpty ("allow_empty: true") says an empty list is meant: a
	// reload may then empty a list that was not (see List.Reload).
	allowEmpty bool
}

func parseDocument(data []byte) (document, error) {
	var d document
	root, err := decodeDocument(data)
	if err != nil || root == nil {
		return d, err
	}
	top, err := fields(root, "allowlist document", keyPeers, keyAllowEmpty)
	if err != nil {
		return d, err
	}
	if f, ok := top[keyAllowEmpty]; ok && !isNull(f.value) {
		s, err := scalar(f.value, keyAllowEmpty)
		if err != nil {
			return d, err
		}
		switch s {
		case "true":
			d.allowEmpty = true
		case "false":
		default:
			return d, nodeErrorf(f.value, "%s must be true or false, not %q", keyAllowEmpty, s)
		}
	}
	f, ok := top[keyPeers]
	if !ok {
		return d, nil
	}
	d.entries, err = parsePeers(f.value)
	return d, err
}

// parsePeers reads the peers list.
func parsePeers(list *yaml.Node) ([]Entry, error) {
	items, err := sequence(list, keyPeers)
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, 0, len(items))
	seen := make(map[peer.ID]int, len(items)) // ID -> line
	for _, item := range items {
		e, idNode, err := parseEntry(item)
		if err != nil {
			return nil, err
		}
		if line, dup := seen[e.ID]; dup {
			return nil, nodeError(idNode, newDetail(ErrDuplicateID,
				fmt.Sprintf("peer %s is already listed at line %d", e.ID, line), nil))
		}
		seen[e.ID] = idNode.Line
		entries = append(entries, e)
	}
	return entries, nil
}

// parseEntry reads one item of the peers list and returns it with the node
// of its ID, where a duplicate is reported.
func parseEntry(n *yaml.Node) (Entry, *yaml.Node, error) {
	fs, err := fields(n, "peer entry", keyID, keyName, keyAddrs, keyRelay)
	if err != nil {
		return Entry{}, nil, err
	}
	idField, ok := fs[keyID]
	if !ok {
		return Entry{}, nil, nodeError(n, errors.New("peer entry has no id"))
	}
	s, err := scalar(idField.value, keyID)
	if err != nil {
		return Entry{}, nil, err
	}
	id, err := parseID(s)
	if err != nil {
		return Entry{}, nil, nodeError(idField.value, err)
	}
	e := Entry{ID: id}
	if f, ok := fs[keyName]; ok && !isNull(f.value) {
		if e.Name, err = scalar(f.value, keyName); err != nil {
			return Entry{}, nil, err
		}
		if err := checkName(id, e.Name); err != nil {
			return Entry{}, nil, nodeError(f.value, err)
		}
	}
	if f, ok := fs[keyAddrs]; ok {
		items, err := sequence(f.value, keyAddrs)
		if err != nil {
			return Entry{}, nil, err
		}
		for _, item := range items {
			s, err := scalar(item, "address")
			if err != nil {
				return Entry{}, nil, err
			}
			p, err := parsePrefix(s)
			if err != nil {
				return Entry{}, nil, nodeError(item, err)
			}
			e.Addrs = append(e.Addrs, p)
		}
	}
	if f, ok := fs[keyRelay]; ok && !isNull(f.value) {
		s, err := scalar(f.value, keyRelay)
		if err != nil {
			return Entry{}, nil, err
		}
		switch s {
		case "true":
			e.Relay = true
		case "false":
		default:
			return Entry{}, nil, nodeErrorf(f.value, "%s must be true or false, not %q", keyRelay, s)
		}
	}
	// normalize also drops repeated prefixes, so two spellings of one
	// binding compare equal across reloads.
	e, err = e.normalize()
	if err != nil {
		return Entry{}, nil, nodeError(n, err)
	}
	return e, idField.value, nil
}

// marshalEntries renders entries (already sorted) in the shape Parse reads.
func marshalEntries(entries []Entry) ([]byte, error) {
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	if len(entries) == 0 {
		list.Style = yaml.FlowStyle // "peers: []" says empty on purpose
	}
	for _, e := range entries {
		item := mappingNode(stringNode(keyID), stringNode(e.ID.String()))
		if e.Name != "" {
			item.Content = append(item.Content, stringNode(keyName), stringNode(e.Name))
		}
		if len(e.Addrs) > 0 {
			item.Content = append(item.Content, stringNode(keyAddrs), prefixList(e.Addrs))
		}
		if e.Relay {
			item.Content = append(item.Content, stringNode(keyRelay), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		list.Content = append(list.Content, item)
	}
	root := mappingNode(stringNode(keyPeers), list)
	if len(entries) == 0 {
		// Written by a program that emptied the list on purpose (the last
		// "p2pnode allowlist remove"): a watching node must take it.
		root.Content = append(root.Content, stringNode(keyAllowEmpty), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	return encodeDocument(root)
}

func prefixList(addrs []netip.Prefix) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, p := range addrs {
		n.Content = append(n.Content, stringNode(formatPrefix(p)))
	}
	return n
}
