package testutil

import "fmt"

// Event is one parsed line of p2pnode's --json output, as the end-to-end
// tests (cmd/p2pnode, test/interop) read it.
type Event map[string]any

// Str returns a field in its printed form ("" when absent).
func (e Event) Str(k string) string {
	v, ok := e[k]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// Match builds a predicate: the event is called name and its fields have
// the given values (compared in their printed form), given as key, value.
func Match(name string, kv ...any) func(Event) bool {
	return func(e Event) bool {
		if e.Str("event") != name {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if e.Str(kv[i].(string)) != fmt.Sprint(kv[i+1]) {
				return false
			}
		}
		return true
	}
}
