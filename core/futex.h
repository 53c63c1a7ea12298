// Process-shared futex wait/wake on a 32-bit word inside the arena.
// Non-private futexes, because the arena may be shared with forked children.
// Async-signal-safe.
#pragma once

#include <linux/futex.h>
#include <time.h>

#include <atomic>
#include <cstdint>

#include "core/sys.h"

namespace upcache {

// Sleeps while *word == expected, at most timeout_ns. Returns 0, -EAGAIN
// (value differed), -ETIMEDOUT or -EINTR.
inline int futex_wait(const void* word, uint32_t expected, uint64_t timeout_ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000ull);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000ull);
  return static_cast<int>(sys::raw(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAIT, expected,
                                   reinterpret_cast<long>(&ts)));
}

inline void futex_wake_all(const void* word) {
  sys::raw(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAKE, 0x7fffffff);
}

// The low 32 bits of a 64-bit atomic (x86-64 and other little-endian
// targets keep them at the word's own address).
inline const void* low_word(const std::atomic<uint64_t>* w) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "futex on the low half needs little endian");
  return static_cast<const void*>(w);
}

}  // namespace upcache
