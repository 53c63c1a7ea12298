// The page index: (file id, page index) -> frame, hashed with XXH3.
//
// Buckets chain frames through FrameDesc::next. Lookups take no lock: they
// walk the chain and return a candidate that the caller must pin and then
// re-check (frame.h). A walk that races with a removal can miss an entry
// (never return a wrong one, since the key is re-checked after pinning);
// callers that act on a miss repeat the lookup under the bucket lock
// (insert_or_get). Walks are bounded, so a chain rewritten under a walker
// cannot trap it.
//
// Inserts and removals take the bucket's spin lock (never a global lock).
#pragma once

#include <cstdint>

#include "core/arena.h"

namespace upcache {

class PageIndex {
 public:
  static constexpr int64_t kNone = -1;

  explicit PageIndex(Arena& arena) : arena_(arena), mask_(arena.header().bucket_count - 1) {}

  // A candidate frame for (file_id, page), or kNone. Lock free.
  int64_t find(uint64_t file_id, uint64_t page) const;

  // As find(), and as soon as the bucket names its first frame, prefetches
  // the line of that frame's data at `offset`.
  // Bucket, descriptor and data are three cache misses in a row on a random
  // hit; the first frame of a chain is nearly always the one wanted, so its
  // data now arrives while the descriptor is being checked.
  int64_t find_prefetching(uint64_t file_id, uint64_t page, uint64_t offset) const;

  // The frame of (file_id, page) if it is in the index, under the bucket
  // lock: never a false miss (for coherence; not the hit path).
  int64_t find_exact(uint64_t file_id, uint64_t page) const;

  // Under the bucket lock: if (file_id, page) is present returns its frame;
  // otherwise links `frame` (whose key the caller has set, LOCKED by the
  // caller) and returns it. The caller tells which happened by comparing.
  // `publish` is called under the lock just before linking, to set the
  // frame's state so that it is visible only in its final form.
  template <typename Publish>
  int64_t insert_or_get(uint64_t file_id, uint64_t page, uint32_t frame, Publish&& publish);

  // Unlinks `frame` from the chain of (file_id, page) if it is there.
  void remove(uint64_t file_id, uint64_t page, uint32_t frame);

  static uint64_t hash(uint64_t file_id, uint64_t page);

  // Starts bringing in the bucket of (file_id, page): a read spanning pages
  // asks for the next one's while it copies the current one.
  void prefetch(uint64_t file_id, uint64_t page) const { __builtin_prefetch(&bucket(file_id, page)); }

  // The second step after prefetch(): starts bringing in the descriptor of
  // the first frame the bucket names, and that frame's data at `offset`.
  // Reads the bucket head only (no walk), so it costs nothing more than the
  // bucket's line, which prefetch() should have brought in.
  void prefetch_first(uint64_t file_id, uint64_t page, uint64_t offset) const {
    uint32_t link = bucket(file_id, page).head.load(std::memory_order_relaxed);
    if (link == 0) return;
    __builtin_prefetch(&arena_.frame(link - 1));
    __builtin_prefetch(arena_.frame_data(link - 1) + offset);
  }

 private:
  Bucket& bucket(uint64_t file_id, uint64_t page) const {
    return arena_.buckets()[hash(file_id, page) & mask_];
  }
  int64_t find_locked(Bucket& b, uint64_t file_id, uint64_t page) const;
  // The lock-free walk of a chain from `link` (find, find_prefetching).
  int64_t walk(uint32_t link, uint64_t file_id, uint64_t page) const;

  Arena& arena_;
  uint64_t mask_;
};

}  // namespace upcache

#include "core/spinlock.h"

namespace upcache {

template <typename Publish>
int64_t PageIndex::insert_or_get(uint64_t file_id, uint64_t page, uint32_t frame,
                                 Publish&& publish) {
  Bucket& b = bucket(file_id, page);
  SpinGuard guard(b.lock);
  int64_t found = find_locked(b, file_id, page);
  if (found != kNone) return found;
  FrameDesc& f = arena_.frame(frame);
  f.next.store(b.head.load(std::memory_order_relaxed), std::memory_order_relaxed);
  publish();
  b.head.store(frame + 1, std::memory_order_release);
  return frame;
}

}  // namespace upcache
