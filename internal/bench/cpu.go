package bench

import "time"

// CPUCost turns a timed workload into one that reports the process CPU time
// its k operations used instead of the wall-clock time, so that Interleave
// sums CPU: on a machine whose cores other jobs share, CPU per operation
// moves less than wall-clock time does, and it counts the work of every
// goroutine, not only the one waiting for the answer.
func CPUCost(run func(k int) (time.Duration, error)) func(k int) (time.Duration, error) {
	return func(k int) (time.Duration, error) {
		before, err := ProcessCPU()
		if err != nil {
			return 0, err
		}
		if _, err := run(k); err != nil {
			return 0, err
		}
		after, err := ProcessCPU()
		if err != nil {
			return 0, err
		}
		return after - before, nil
	}
}
