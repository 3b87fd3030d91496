// Package pb holds the wire schema of the DHT node records, generated from
// record.proto (format 1, plain) and sealed_record.proto (format 2, sealed
// to the members).
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative record.proto sealed_record.proto
