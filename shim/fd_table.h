// The descriptor table: descriptor number -> open file description.
//
// A fixed two-level array of atomic words indexed by descriptor: a top level
// sized once for the largest descriptor the process can ever have
// (max of RLIMIT_NOFILE's hard limit and /proc/sys/fs/nr_open), and chunks of
// 1024 slots mapped (mmap) on first use and never unmapped. A lookup is two
// acquire loads and no lock; nothing here calls the host's malloc.
//
// A slot holds one of:
//   kNone         the shim knows nothing of this descriptor (never opened
//                 through a wrapper: pipes, sockets, descriptors inherited at
//                 start-up or opened before the constructor) until its first
//                 call adopts it (shim/adopt.h);
//   kPassthrough  opened through a wrapper but not cached (attach said no):
//                 pass through, counted in kPassthroughCalls;
//   kUnseen       adopted (shim/adopt.h) but nothing to do: not a regular
//                 file, or one open only for writing; passes through as
//                 kNone does, without being adopted again;
//   Description*  cached; the slot owns one reference.
//
// Reclamation: descriptions are type-stable (never unmapped, see
// description.h). acquire() loads the slot, takes a reference only if the
// count is not zero, and re-checks that the slot still holds the same
// pointer; so a close racing a read never frees memory under the reader.
//
// Mutations follow the kernel's order so a descriptor number reused by another
// thread is never confused with the old one: close clears the slot before the
// real close (the kernel cannot hand the number out again before that), and
// open/dup install after the real call returned the number.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "shim/description.h"

namespace upcache::shim {

class FdTable {
 public:
  static constexpr uintptr_t kNone = 0;
  static constexpr uintptr_t kPassthrough = 1;
  static constexpr uintptr_t kUnseen = 2;
  static constexpr int kChunkBits = 10;
  static constexpr int kChunkSlots = 1 << kChunkBits;

  static bool is_description(uintptr_t v) { return v > kUnseen; }
  static Description* as_description(uintptr_t v) { return reinterpret_cast<Description*>(v); }

  // Sizes and maps the top level. Idempotent, thread-safe, async-signal-safe.
  bool init();

  // Number of descriptors the table can hold (0 before init).
  int capacity() const;

  // The slot's value, without a reference (kNone when out of range).
  uintptr_t peek(int fd) const {
    const Top* top = top_.load(std::memory_order_acquire);
    if (top == nullptr || fd < 0 || static_cast<size_t>(fd) >= top->capacity) return kNone;
    const Chunk* c = top->chunks[fd >> kChunkBits].load(std::memory_order_acquire);
    if (c == nullptr) return kNone;
    return c->slots[fd & (kChunkSlots - 1)].load(std::memory_order_acquire);
  }

  // The description of `fd` with one reference taken, or null; `seen` gets
  // the slot value (kNone / kPassthrough / description).
  Description* acquire(int fd, uintptr_t* seen) const;

  // Puts `value` in the slot (the table takes over the reference a
  // description value carries) and releases what the slot held.
  // Out of range or out of memory: the reference is dropped, nothing stored.
  void set(int fd, uintptr_t value);

  // Puts `value` in the slot only if it is kNone (the table takes over the
  // reference a description value carries). False: the slot held something
  // (or no memory); `value` is untouched then.
  bool set_if_none(int fd, uintptr_t value);
  // Empties the slot if it still holds `value`; true if it did (the caller
  // gets the slot's reference).
  bool clear_if(int fd, uintptr_t value);

  // Empties the slot and hands its old value (and reference) to the caller.
  uintptr_t take(int fd);

  // Empties every slot in [first, last] and calls f(old value) for each that
  // held something. Visits only chunks that exist.
  template <typename F>
  void take_range(unsigned first, unsigned last, F&& f) {
    const Top* top = top_.load(std::memory_order_acquire);
    if (top == nullptr) return;
    for (size_t i = first >> kChunkBits; i < top->chunk_count && i <= (last >> kChunkBits); ++i) {
      Chunk* c = top->chunks[i].load(std::memory_order_acquire);
      if (c == nullptr) continue;
      for (int j = 0; j < kChunkSlots; ++j) {
        uint64_t fd = i * kChunkSlots + j;
        if (fd < first || fd > last) continue;
        uintptr_t old = c->slots[j].exchange(kNone, std::memory_order_acq_rel);
        if (old != kNone) f(old);
      }
    }
  }

  // Calls f(fd, description) for every cached descriptor. No reference is
  // taken: the caller must make sure descriptors are not closed meanwhile
  // (fork prepare, single-threaded child) or tolerate it (try_ref).
  template <typename F>
  void for_each(F&& f) const {
    const Top* top = top_.load(std::memory_order_acquire);
    if (top == nullptr) return;
    for (size_t i = 0; i < top->chunk_count; ++i) {
      const Chunk* c = top->chunks[i].load(std::memory_order_acquire);
      if (c == nullptr) continue;
      for (int j = 0; j < kChunkSlots; ++j) {
        uintptr_t v = c->slots[j].load(std::memory_order_acquire);
        if (is_description(v)) f(static_cast<int>(i * kChunkSlots + j), as_description(v));
      }
    }
  }

 private:
  struct Chunk {
    std::atomic<uintptr_t> slots[kChunkSlots];
  };
  struct Top {
    size_t capacity;
    size_t chunk_count;
    std::atomic<Chunk*> chunks[1];  // chunk_count entries
  };
  Chunk* chunk_for(int fd);

  std::atomic<Top*> top_{nullptr};
};

extern FdTable g_fds;

}  // namespace upcache::shim
