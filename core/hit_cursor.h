// Hit cursors: a read() inside the page its description's last read() hit.
//
// A small sequential reader asks for the same page hundreds of times in a
// row. The cursor remembers that page's frame: where its state word and its
// bytes lie, the value the state word had, and the bytes of the file it may
// serve. The state word says everything about a frame (frame.h): as long as
// it keeps the very same value (same version, flags and pins) the frame holds
// the same page with the same valid bytes, and nothing wrote them. So a read
// inside the cursor's range needs no hint, no index, no key, no size check:
// compare the word, copy, compare again (the seqlock reader of
// Cache::read_hit, with equality as the test).
//
// Any change of the word (another reader's pin, the clock clearing
// REFERENCED, a drop, an eviction), or of the file's coherence state, only
// sends the next read to read_hit,
// which refills the cursor when it serves the read. A cursor never holds a
// frame, and holds a pointer into the arena, which stays mapped at the same
// address for the life of the process and in its forked children.
//
// Ownership: one per open file description, filled by Cache::read_hit and
// read by Cache::read_cursor. Thread safety: none; the caller serializes
// every use of one cursor (the shim: the description's position lock).
// Plain data, async-signal-safe to read.
#pragma once

#include <atomic>
#include <cstdint>

namespace upcache {

struct HitCursor {
  const std::atomic<uint64_t>* state = nullptr;  // the frame's state word; null: empty
  uint64_t seen = 0;             // *state when the cursor was filled
  const char* data = nullptr;    // the frame's bytes
  uint64_t page_start = 0;       // file offset of data[0]
  uint64_t lo = 0, hi = 0;       // the file bytes [lo, hi) it serves (hi <= the size then known)
  uint64_t file_id = 0, page = 0;
  const char* next = nullptr;    // the bytes of page + 1's frame, once looked up (a guess, for prefetch only)
  int stats_slot = -1;           // the file's per-file counters (StatsSink)
  // The file's coherence state (FileRef::coherence) and its value when
  // filled (a served one). A change sends the read to read_hit: after a
  // fork the child's files wait for leases of their own, with the frames'
  // words unchanged.
  const std::atomic<uint32_t>* coherence = nullptr;
  uint32_t coherence_seen = 0;
};

}  // namespace upcache
