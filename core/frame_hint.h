// Frame hints: which frame held a page this thread read recently.
//
// A per-thread direct-mapped table, (file id, page) -> frame. It spares
// Cache::read_hit the index lookup (a hash and a likely cache miss in the
// bucket array) on the reads that follow one another inside a page: a 64-byte
// sequential reader asks for the same page hundreds of times in a row.
//
// A hint is only a guess. read_hit checks the frame's state word and key
// (frame.h) before it trusts a byte and again after copying, so a stale hint
// (the frame evicted and given to another page, dropped by a write, or a hint
// left by another Cache on this thread, or torn by a signal handler that
// read in between) costs one failed check and an index lookup, never a wrong
// byte. Entries carry no pointer and are never dereferenced unchecked: the
// frame number is bounds-checked by the caller.
//
// Per thread rather than per open file description, so that threads reading
// one description write nothing shared on their hits.
//
// Thread safety: thread-local. Async-signal-safe (initial-exec TLS, plain
// stores).
#pragma once

#include <cstdint>

namespace upcache {

struct FrameHint {
  uint64_t file_id = 0;  // 0: empty (file ids start at 1)
  uint64_t page = 0;
  uint64_t frame = 0;
};

constexpr unsigned kFrameHints = 16;

// The one entry (file_id, page) may occupy in this thread's table.
inline FrameHint& frame_hint(uint64_t file_id, uint64_t page) {
  static thread_local FrameHint table[kFrameHints] __attribute__((tls_model("initial-exec")));
  return table[(file_id * 0x9E3779B97F4A7C15ull + page) & (kFrameHints - 1)];
}

}  // namespace upcache
