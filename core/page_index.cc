#include "core/page_index.h"

#include <xxhash.h>

namespace upcache {

namespace {
// Longer than any honest chain at load factor 0.5; only a chain rewritten
// under a lock-free walker gets here, and then a miss is the safe answer.
constexpr int kMaxWalk = 64;
}  // namespace

uint64_t PageIndex::hash(uint64_t file_id, uint64_t page) {
  const uint64_t key[2] = {file_id, page};
  return XXH3_64bits(key, sizeof key);
}

int64_t PageIndex::find(uint64_t file_id, uint64_t page) const {
  return walk(bucket(file_id, page).head.load(std::memory_order_acquire), file_id, page);
}

int64_t PageIndex::walk(uint32_t link, uint64_t file_id, uint64_t page) const {
  for (int steps = 0; link != 0 && steps < kMaxWalk; ++steps) {
    FrameDesc& f = arena_.frame(link - 1);
    if (f.page.load(std::memory_order_relaxed) == page &&
        f.file_id.load(std::memory_order_relaxed) == file_id)
      return link - 1;
    link = f.next.load(std::memory_order_acquire);
  }
  return kNone;
}

int64_t PageIndex::find_prefetching(uint64_t file_id, uint64_t page, uint64_t offset) const {
  Bucket& b = bucket(file_id, page);
  uint32_t link = b.head.load(std::memory_order_acquire);
  if (link == 0) return kNone;
  // A prefetch never faults, and the whole arena stays mapped: a stale
  // frame number costs a wasted fetch, nothing else.
  // One line: prefetching the whole 4 KiB of a random read was slower (the
  // line-fill buffers filled ahead of the descriptor's load).
  __builtin_prefetch(arena_.frame_data(link - 1) + offset);
  return walk(link, file_id, page);
}

int64_t PageIndex::find_exact(uint64_t file_id, uint64_t page) const {
  Bucket& b = bucket(file_id, page);
  SpinGuard guard(b.lock);
  return find_locked(b, file_id, page);
}

int64_t PageIndex::find_locked(Bucket& b, uint64_t file_id, uint64_t page) const {
  for (uint32_t link = b.head.load(std::memory_order_relaxed); link != 0;) {
    FrameDesc& f = arena_.frame(link - 1);
    if (f.page.load(std::memory_order_relaxed) == page &&
        f.file_id.load(std::memory_order_relaxed) == file_id &&
        (f.state.load(std::memory_order_relaxed) & frame_state::kHashed))
      return link - 1;
    link = f.next.load(std::memory_order_relaxed);
  }
  return kNone;
}

void PageIndex::remove(uint64_t file_id, uint64_t page, uint32_t frame) {
  Bucket& b = bucket(file_id, page);
  SpinGuard guard(b.lock);
  std::atomic<uint32_t>* link = &b.head;
  for (uint32_t cur = link->load(std::memory_order_relaxed); cur != 0;
       cur = link->load(std::memory_order_relaxed)) {
    if (cur - 1 == frame) {
      // One store unlinks: a walker standing on `frame` still follows its
      // next pointer, which stays valid until the frame is reused.
      link->store(arena_.frame(frame).next.load(std::memory_order_relaxed),
                  std::memory_order_release);
      return;
    }
    link = &arena_.frame(cur - 1).next;
  }
}

}  // namespace upcache
