package store

import "fmt"

// Err is nil while the store works, and wraps ErrFailed once it has met an
// error it cannot go past: every commit fails from then on, until the
// store is closed and opened again. A process that cannot restart its
// store should stop (a restart recovers what is on disk) rather than
// carry on with a store that takes nothing.
func (s *Store) Err() error {
	if fe := s.failed.Load(); fe != nil {
		return fmt.Errorf("%w: %s: %w", ErrFailed, s.path, fe)
	}
	return nil
}

// Failed is closed when the store fails (Err turns non-nil), for a
// process to stop or report it at once rather than at its next commit.
func (s *Store) Failed() <-chan struct{} { return s.failedCh }
