package main

import "testing"

// TestPlural: counts in what p2pnode prints read as English ("1 address",
// "after 1 attempt"), nouns ending in s included.
func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n    int
		noun string
		want string
	}{
		{1, "peer", "1 peer"},
		{0, "peer", "0 peers"},
		{3, "attempt", "3 attempts"},
		{1, "address", "1 address"},
		{2, "address", "2 addresses"},
		{2, "listen address", "2 listen addresses"},
	} {
		if got := plural(c.n, c.noun); got != c.want {
			t.Errorf("plural(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
}
