// Command cpuhog keeps CPUs busy, for running the test suite on a loaded
// machine (make test-stress): -procs threads spin until SIGINT or SIGTERM,
// or until -for has passed, so a hog whose stopper died stops anyway.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	procs := flag.Int("procs", runtime.NumCPU(), "busy threads")
	limit := flag.Duration("for", time.Hour, "stop after this long even if not signalled")
	flag.Parse()
	if *procs < 1 {
		fmt.Fprintln(os.Stderr, "cpuhog: -procs must be at least 1")
		os.Exit(2)
	}
	// One more P than spinners, so that the signal and timer wake-ups are
	// served at once.
	runtime.GOMAXPROCS(*procs + 1)
	var stop atomic.Bool
	for range *procs {
		go func() {
			x := uint64(1)
			for !stop.Load() {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "cpuhog: %s: stopping\n", s)
	case <-time.After(*limit):
		fmt.Fprintf(os.Stderr, "cpuhog: %s passed: stopping\n", *limit)
	}
	stop.Store(true)
}
