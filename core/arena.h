// The arena: one mapping that holds everything the cache shares.
//
//   [ArenaHeader][FrameDesc x frames][Bucket x buckets][InodeEntry x inodes]
//   ...padding to the page size...[frames: page_size bytes each]
//
// Position independent: the header stores offsets, never pointers, so the
// same bytes are valid at any address (forked children, or a named segment
// mapped by unrelated processes). Only process-shared primitives live here
// (atomics, non-private futexes, pid-owned spin locks). Frames are aligned to
// the page size (at least 4 KiB), so they are O_DIRECT targets as they are.
//
// Ownership: the Arena object owns the mapping and unmaps it on destruction.
// The mapping is MAP_SHARED: a forked child shares it with its parent.
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
  static constexpr uint32_t kVersion = 5;  // 5: io_owner tagged ENDED at the end of a read (frame.h)
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
};

struct ArenaLayout {
  uint64_t frames_offset, buckets_offset, inodes_offset, journals_offset, data_offset, total_bytes;
  uint64_t bucket_count, inode_count;
  // Computes the layout for `frame_count` frames of `page_size` bytes.
  static ArenaLayout compute(uint64_t page_size, uint64_t frame_count);
};

class Arena {
 public:
  // Maps and initialises a new arena. Returns false and sets *error on failure.
  // `huge`: first try the administrator's reserved 2 MiB huge pages
  // (hugetlb, /proc/sys/vm/nr_hugepages), reserved whole at map time so that
  // no fault can fail later; when too few are free, the ordinary mapping.
  bool create(uint64_t page_size, uint64_t frame_count, std::string* error, bool huge = false);
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
  bool huge_ = false;
};

}  // namespace upcache
