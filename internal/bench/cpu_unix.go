//go:build unix

package bench

import (
	"fmt"
	"syscall"
	"time"
)

// ProcessCPU is the CPU time (user + system) this process has used so far,
// on all its threads: the work of both ends of a loopback workload, the
// runtime's garbage collection included.
func ProcessCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
