package bench

import "time"

// Interleave measures two workloads against each other fairly on a busy
// machine: it runs them in alternating chunks until each has done n
// operations, so that load changing during the run weighs on both alike. It
// returns the total time of each.
func Interleave(n, chunk int, ours, base func(k int) (time.Duration, error)) (oursTotal, baseTotal time.Duration, err error) {
	for done := 0; done < n; {
		k := min(chunk, n-done)
		d, err := base(k)
		if err != nil {
			return 0, 0, err
		}
		baseTotal += d
		if d, err = ours(k); err != nil {
			return 0, 0, err
		}
		oursTotal += d
		done += k
	}
	return oursTotal, baseTotal, nil
}
