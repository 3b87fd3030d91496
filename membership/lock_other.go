//go:build !unix

package membership

// lockFile is a no-op where flock is not available: SaveNewer then relies
// on its callers not to save concurrently.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
