// Package test holds the project's cross-package tests: integration tests
// that run several nodes together, and the hostile-peer suite that attacks a
// node from raw go-libp2p hosts and raw TCP while an honest peer keeps
// exchanging messages with it.
//
// The package has no code of its own besides this file; everything is in
// _test.go files, run with
//
//	go test -race ./test/
//
// and the benchmark of an honest peer's message rate with and without an
// attack running with
//
//	go test -run '^$' -bench HonestUnderAttack ./test/
//
// Every socket is opened on 127.0.0.0/8 with port 0. The attacker always
// comes from 127.0.0.2 so that banning its IP never touches the honest peer
// on 127.0.0.1; see docs/security.md for what each case defends against.
package test
