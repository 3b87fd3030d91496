// Package pb holds the wire schema of the DHT node record, generated from
// record.proto.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative record.proto
