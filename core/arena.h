// The arena: one mapping that holds everything the cache shares.
//
//   [ArenaHeader][InodeEntry x inodes][PinJournal x journals]
//   ...[FrameDesc x frames][Bucket x buckets]...[frames: page_size bytes each]
//
// The second line is what settle_backing may move to 2 MiB pages: it starts
// on a 2 MiB boundary when the arena is made for that, and the frames on a
// page-size (or 2 MiB) boundary.
//
// Position independent: the header stores offsets, never pointers, so the
// same bytes are valid at any address (forked children, or a named segment
// mapped by unrelated processes). Only process-shared primitives live here
// (atomics, non-private futexes, pid-owned spin locks). Frames are aligned to
// the page size (at least 4 KiB), so they are O_DIRECT targets as they are.
//
// Ownership: the Arena object owns the mapping and unmaps it on destruction.
// The mapping is MAP_SHARED: a forked child shares it with its parent.
// Backing: reserved hugetlb pages (asked for) or anonymous shared memory;
// the descriptors, buckets and frames may later move to a file on a private
// huge=always tmpfs (settle_backing).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/frame.h"

namespace upcache {

struct InodeEntry;
struct PinJournal;

struct Bucket {
  std::atomic<uint64_t> lock;  // SpinLock word (holder's owner word, core/owner.h)
  std::atomic<uint32_t> head;  // first frame + 1, 0: empty
};

struct ArenaHeader {
  static constexpr uint64_t kMagic = 0x4548434143505521ull;  // "!UPCACHE"
  static constexpr uint32_t kVersion = 9;  // 6: frame_backing; 7: movable part last; 8: descriptors_promoted; 9: InodeEntry::confirmed_ns
  // Counters of live writable shared mappings, by hash of (dev, ino): see
  // Cache::mapped_writable. A collision only makes another inode pass through.
  static constexpr uint32_t kMapSlots = 1024;
  uint64_t magic;
  uint32_t version;
  uint32_t page_shift;
  uint64_t page_size;
  uint64_t frame_count;
  uint64_t bucket_count;  // power of two
  uint64_t inode_count;   // power of two
  uint64_t frames_offset;   // FrameDesc array
  uint64_t buckets_offset;  // Bucket array
  uint64_t inodes_offset;   // InodeEntry array
  uint64_t journals_offset; // PinJournal array (PinJournals::kJournals)
  uint64_t data_offset;     // frame memory, page aligned
  uint64_t total_bytes;
  alignas(64) std::atomic<uint64_t> clock_hand;
  alignas(64) std::atomic<uint64_t> next_file_id;
  alignas(64) std::atomic<uint64_t> inode_lock;
  alignas(64) std::atomic<uint32_t> writable_maps[kMapSlots];
  // Where the frames lie, decided once for every process that shares the
  // arena (Arena::settle_backing): kBacking*.
  alignas(64) std::atomic<uint32_t> frame_backing;
  // Arena::promote_descriptors: 0 not yet, 1 collapsing, 2 the descriptors are on
  // 2 MiB pages, 3 the kernel refused.
  std::atomic<uint32_t> descriptors_promoted;
};

constexpr uint32_t kBackingUnsettled = 0, kBackingMoving = 1, kBackingOrdinary = 2, kBackingHuge = 3;

struct ArenaLayout {
  uint64_t frames_offset, buckets_offset, inodes_offset, journals_offset, data_offset, total_bytes;
  uint64_t bucket_count, inode_count;
  // Computes the layout for `frame_count` frames of `page_size` bytes;
  // `huge_aligned`: descriptors, buckets and frames on 2 MiB boundaries.
  static ArenaLayout compute(uint64_t page_size, uint64_t frame_count, bool huge_aligned = false);
};

class Arena {
 public:
  // Maps and initialises a new arena. Returns false and sets *error on failure.
  // `huge`: first try the administrator's reserved 2 MiB huge pages
  // (hugetlb, /proc/sys/vm/nr_hugepages), reserved whole at map time so that
  // no fault can fail later; when too few are free, ordinary shared memory.
  // `transparent_huge` (frames of at least kTransparentHugeMinBytes in all):
  // descriptors and frames start 2 MiB aligned, ready for settle_backing.
  bool create(uint64_t page_size, uint64_t frame_count, std::string* error, bool huge = false,
              bool transparent_huge = false);
  // Below this a cache gains too little from 2 MiB pages to pay for the
  // helper that makes them (core/huge_shmem.h).
  static constexpr uint64_t kTransparentHugeMinBytes = 16ull << 20;

  // Settles, once for every process sharing the arena, where descriptors,
  // buckets and frames lie: with `want_huge`, and if this process alone maps
  // the arena and it was created for it, their memory is replaced in place
  // (same addresses) by a file on a private huge=always tmpfs
  // (core/huge_shmem.h); otherwise they stay where they are for good. The
  // header, inodes and pin journals stay. Done lazily, because making the
  // file costs a fraction of a millisecond that a process which never fills
  // a frame should not pay.
  // Precondition: everything that moves is still as created (zero): no
  // frame claimed, no page hashed, no bucket lock held, in any thread, and
  // no other thread settles at the same time (Cache keeps it). Lock-free
  // lookups may run meanwhile: they find nothing before and after. "Alone"
  // is checked with /proc/self/pagemap, so that a child forked without the
  // fork handlers (a raw clone) pins the memory where both processes see it.
  // Returns true when it lies on the tmpfs file.
  bool settle_backing(bool want_huge);
  // After settle_backing moved the memory, the frame descriptors are left
  // on 4 KiB pages (MADV_NOHUGEPAGE): the clock hand takes them in order, so
  // a process's first misses fault a 4 KiB page of them now and then instead
  // of clearing 2 MiB at once (about 0.25 ms per process; the buckets, read
  // at random, are better on 2 MiB pages from the start). Once the cache
  // holds enough frames for the descriptors' page walks to matter, this
  // collapses them into 2 MiB pages in place (MADV_COLLAPSE:
  // the kernel locks, copies and replaces the pages as khugepaged does, so
  // lock-free readers and atomic writers in any process stay correct). Once
  // per arena; a kernel that cannot (before 6.1) leaves them as they are.
  // Returns true if the descriptors now lie on 2 MiB pages.
  bool promote_descriptors();
  bool transparent_huge_possible() const { return thp_possible_ && !transparent_huge_; }
  ~Arena();

  ArenaHeader& header() const { return *reinterpret_cast<ArenaHeader*>(base_); }
  FrameDesc& frame(uint64_t i) const { return frames_[i]; }
  uint64_t frame_count() const { return frame_count_; }
  Bucket* buckets() const { return buckets_; }
  InodeEntry* inodes() const { return inodes_; }
  PinJournal* pin_journals() const { return journals_; }
  char* frame_data(uint64_t i) const { return data_ + (i << page_shift_); }
  uint64_t page_size() const { return uint64_t{1} << page_shift_; }
  unsigned page_shift() const { return page_shift_; }
  uint64_t mapped_bytes() const { return mapped_bytes_; }
  // The arena lies on hugetlb pages (create's `huge` was granted).
  bool huge() const { return huge_; }
  // Descriptors, buckets and frames lie on a huge=always tmpfs
  // (settle_backing moved them; the kernel may still give some of them
  // 4 KiB pages).
  bool transparent_huge() const { return transparent_huge_; }

 private:
  char* base_ = nullptr;         // the header
  char* mapped_base_ = nullptr;  // what mmap returned
  uint64_t mapped_bytes_ = 0;
  FrameDesc* frames_ = nullptr;
  Bucket* buckets_ = nullptr;
  InodeEntry* inodes_ = nullptr;
  PinJournal* journals_ = nullptr;
  char* data_ = nullptr;
  uint64_t frame_count_ = 0;
  unsigned page_shift_ = 0;
  bool move_to_huge_pages();

  bool huge_ = false;
  bool thp_possible_ = false;      // created for settle_backing to move the memory
  bool transparent_huge_ = false;  // moved
};

}  // namespace upcache
