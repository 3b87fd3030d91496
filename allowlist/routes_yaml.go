package allowlist

import (
	"errors"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// YAML keys of a routes file.
const (
	keyRoutes      = "routes"
	keyFrom        = "from"
	keyFromChannel = "from_channel"
	keyToChannel   = "to_channel"
	wildcard       = "*"
)

// ParseRoutes reads a routing table document:
//
//	routes:
//	  - from: 16Uiu2HAm...   # peer ID or "*"
//	    from_channel: 1      # number or "*"; optional, default "*"
//	    to_channel: 2        # number or "*"; optional, default "*"
//
// "from" is required, so that forgetting it cannot open a channel to every
// peer: a rule for any peer says so with "*". Errors are *[ParseError]
// values naming the line, like those of [Parse]. An empty document, or
// "routes: []", is an empty table, which permits nothing.
func ParseRoutes(data []byte) ([]Route, error) {
	root, err := decodeDocument(data)
	if err != nil || root == nil {
		return nil, err
	}
	top, err := fields(root, "routes document", keyRoutes)
	if err != nil {
		return nil, err
	}
	f, ok := top[keyRoutes]
	if !ok {
		return nil, nil
	}
	items, err := sequence(f.value, keyRoutes)
	if err != nil {
		return nil, err
	}
	rules := make([]Route, 0, len(items))
	seen := make(map[Route]int, len(items)) // rule -> line
	for _, item := range items {
		rule, err := parseRoute(item)
		if err != nil {
			return nil, err
		}
		if line, dup := seen[rule]; dup {
			return nil, nodeError(item, newDetail(ErrDuplicateRoute,
				fmt.Sprintf("route %s is already listed at line %d", rule, line), nil))
		}
		seen[rule] = item.Line
		rules = append(rules, rule)
	}
	return rules, nil
}

func parseRoute(n *yaml.Node) (Route, error) {
	fs, err := fields(n, "route", keyFrom, keyFromChannel, keyToChannel)
	if err != nil {
		return Route{}, err
	}
	from, ok := fs[keyFrom]
	if !ok {
		return Route{}, nodeError(n, errors.New(`route has no "from" (use "*" for any peer)`))
	}
	s, err := scalar(from.value, keyFrom)
	if err != nil {
		return Route{}, err
	}
	rule := Route{FromChannel: AnyChannel, ToChannel: AnyChannel}
	if s != wildcard {
		if rule.FromPeer, err = parseID(s); err != nil {
			return Route{}, nodeError(from.value, err)
		}
	}
	if f, ok := fs[keyFromChannel]; ok {
		if rule.FromChannel, err = parseChannel(f.value, keyFromChannel); err != nil {
			return Route{}, err
		}
	}
	if f, ok := fs[keyToChannel]; ok {
		if rule.ToChannel, err = parseChannel(f.value, keyToChannel); err != nil {
			return Route{}, err
		}
	}
	return rule, nil
}

// parseChannel reads a channel number or "*". Only plain decimal numbers are
// accepted: "010" or "0x10" in a security table is more likely a mistake
// than a wish for octal or hex.
func parseChannel(n *yaml.Node, name string) (Channel, error) {
	s, err := scalar(n, name)
	if err != nil {
		return 0, err
	}
	if s == wildcard {
		return AnyChannel, nil
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return 0, nodeError(n, newDetail(ErrInvalidChannel,
			fmt.Sprintf(`%s: %q is not a channel number in 0..%d or "*"`, name, s, int64(MaxChannel)), nil))
	}
	return Channel(v), nil
}

// marshalRoutes renders rules (already sorted) in the shape ParseRoutes
// reads, leaving out wildcard channels, which are the default.
func marshalRoutes(rules []Route) ([]byte, error) {
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	if len(rules) == 0 {
		list.Style = yaml.FlowStyle
	}
	for _, r := range rules {
		from := wildcard
		if r.FromPeer != "" {
			from = r.FromPeer.String()
		}
		item := mappingNode(stringNode(keyFrom), stringNode(from))
		if r.FromChannel != AnyChannel {
			item.Content = append(item.Content, stringNode(keyFromChannel), intNode(int64(r.FromChannel)))
		}
		if r.ToChannel != AnyChannel {
			item.Content = append(item.Content, stringNode(keyToChannel), intNode(int64(r.ToChannel)))
		}
		list.Content = append(list.Content, item)
	}
	return encodeDocument(mappingNode(stringNode(keyRoutes), list))
}

// LoadRoutes reads the routing table file at path. As with [Load], a missing
// or malformed file is an error naming the path and line, never an empty
// table.
func LoadRoutes(path string) (*Routes, error) {
	rules, err := readFile(path, ParseRoutes)
	if err != nil {
		return nil, err
	}
	return NewRoutes(rules...)
}

// Reload reads the file at path and replaces the table with it in one step.
// On any error the table keeps its rules.
func (r *Routes) Reload(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rules, err := readFile(path, ParseRoutes)
	if err != nil {
		return err
	}
	set, err := buildRoutes(rules)
	if err != nil {
		return fmt.Errorf("allowlist: %s: %w", path, err)
	}
	r.snap.Store(newRouteTable(set))
	return nil
}

// Save writes the table to path in the format LoadRoutes reads, sorted as
// Rules is, replacing the file atomically, keeping its mode and following a
// symbolic link, as [List.Save] does.
//
// A nil *Routes cannot be saved: written out, "no table" would become an
// empty table, which permits nothing.
func (r *Routes) Save(path string) error {
	if r == nil {
		return errors.New("allowlist: save routes: no routing table (nil *Routes)")
	}
	data, err := marshalRoutes(r.Rules())
	if err != nil {
		return fmt.Errorf("allowlist: encode routes: %w", err)
	}
	return writeFileAtomic(path, data, 0o644)
}

// Watch reloads the table from path whenever the file changes, as
// [List.Watch] does for a list. OnReload receives an empty Change.
func (r *Routes) Watch(path string, opts WatchOptions) (*Watcher, error) {
	return watchFile(path, opts, func() (Change, error) { return Change{}, r.Reload(path) })
}
