// Package interop checks that a peer written in another language from
// docs/PROTOCOL.md alone can talk to a real p2pnode: peer.mjs, a js-libp2p
// peer that shares no code with this module beyond the .proto files, sends
// a message and a request to "p2pnode run" and answers the node's request
// and message (interop_test.go).
//
// The test needs Node.js 20 or later and the JavaScript dependencies pinned
// in package-lock.json; make test installs them (npm ci --prefix
// test/interop). Without node on PATH, or without node_modules, it is
// skipped with a message saying so.
package interop
