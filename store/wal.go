package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Checking the write-ahead log before pebble replays it.
//
// Pebble replays the last WAL leniently: it stops at the first chunk that
// does not check out and drops the rest, as the torn tail of a crash. Its
// WAL format (FormatWALSyncChunks and up) has every chunk carry the offset
// the log was synced to when the chunk was written, and pebble fails the
// replay (ErrCorruption) when a chunk past the damage proves the damaged one
// was synced, so acknowledged. But it only looks for such a chunk from the
// next 32 KiB block on: damage inside the last block, followed by later
// synced records in that same block, would silently lose them. checkWAL
// closes that gap by reading the last log as pebble's record reader does and,
// past the first chunk that does not check out, looking at every offset of
// the rest of the file for a chunk of this log that proves the damage was
// synced.
//
// A crash can only tear bytes past the last synced offset, and chunks only
// ever claim offsets that had been synced when they were written, so a torn
// tail is never taken for damage.

// The log format, from pebble's record package (record.go: "part of the wire
// format and should not be changed").
const (
	walBlockSize      = 32 << 10
	walLegacyHeader   = 7  // checksum (4), length (2), encoding (1)
	walRecycledHeader = 11 // + log number (4)
	walSyncHeader     = 19 // + synced offset (8)
	walSyncFirstEnc   = 9  // walSync{Full,First,Middle,Last}ChunkEncoding: 9-12
	walSyncLastEnc    = 12
	walRecycledEnc    = 5 // recyclable{Full,First,Middle,Last}ChunkEncoding: 5-8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walChecksum is pebble's chunk checksum: CRC-32C, rotated, plus a delta.
func walChecksum(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// checkWAL checks the newest write-ahead log in the pebble directory path.
func checkWAL(path string) error {
	ents, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var newest string
	var num uint64
	for _, e := range ents {
		name := e.Name()
		stem, ok := strings.CutSuffix(name, ".log")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		n, err := strconv.ParseUint(stem, 10, 32)
		if err != nil {
			continue
		}
		if newest == "" || n > num {
			newest, num = name, n
		}
	}
	if newest == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(path, newest))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if off, synced, bad := walDamage(data, uint32(num)); bad {
		return corruptError(path, fmt.Sprintf("write-ahead log %s is damaged at offset %d, before records synced up to offset %d", newest, off, synced), nil)
	}
	return nil
}

// walDamage reads the chunks of log logNum in data up to the first one that
// does not check out, and reports whether a valid chunk of the log after it
// claims a synced offset past it.
func walDamage(data []byte, logNum uint32) (off int, synced uint64, damaged bool) {
	off = walFirstInvalid(data, logNum)
	if off >= len(data) {
		return off, 0, false
	}
	for p := off + 1; p+walSyncHeader <= len(data); p++ {
		enc := data[p+6]
		if enc < walSyncFirstEnc || enc > walSyncLastEnc || binary.LittleEndian.Uint32(data[p+7:]) != logNum {
			continue
		}
		blockEnd := (p/walBlockSize + 1) * walBlockSize
		end := p + walSyncHeader + int(binary.LittleEndian.Uint16(data[p+4:]))
		if end > blockEnd || end > len(data) {
			continue
		}
		if binary.LittleEndian.Uint32(data[p:]) != walChecksum(data[p+6:end]) {
			continue
		}
		if s := binary.LittleEndian.Uint64(data[p+11:]); s > uint64(off) {
			return off, s, true
		}
	}
	return off, 0, false
}

// walFirstInvalid returns the offset of the first chunk of data that is not
// a valid chunk of log logNum (the log's end: zeroes, a chunk of an earlier
// use of a recycled file, the EOF trailer, or damage), or len(data).
func walFirstInvalid(data []byte, logNum uint32) int {
	off := 0
	for off < len(data) {
		blockEnd := min((off/walBlockSize+1)*walBlockSize, len(data))
		if off+walLegacyHeader > blockEnd {
			off = blockEnd // too little room left in the block for a chunk
			continue
		}
		enc := data[off+6]
		var header int
		switch {
		case enc >= walSyncFirstEnc && enc <= walSyncLastEnc:
			header = walSyncHeader
		case enc >= walRecycledEnc && enc < walSyncFirstEnc:
			header = walRecycledHeader
		case enc == 0 && binary.LittleEndian.Uint32(data[off:]) == 0 && binary.LittleEndian.Uint16(data[off+4:]) == 0 &&
			off+walSyncHeader > blockEnd && allZero(data[off:blockEnd]):
			off = blockEnd // a zeroed block tail, too short for a chunk
			continue
		default:
			return off
		}
		if off+header > blockEnd || binary.LittleEndian.Uint32(data[off+7:]) != logNum {
			return off
		}
		end := off + header + int(binary.LittleEndian.Uint16(data[off+4:]))
		if end > blockEnd || binary.LittleEndian.Uint32(data[off:]) != walChecksum(data[off+6:end]) {
			return off
		}
		off = end
	}
	return off
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
