//go:build !unix

package bench

import (
	"errors"
	"time"
)

// ProcessCPU is the CPU time this process has used so far; only unix
// systems report it here.
func ProcessCPU() (time.Duration, error) {
	return 0, errors.New("process CPU time is only measured on unix systems")
}
