#include "core/arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "core/inode_table.h"
#include "core/pin_journal.h"
#include "core/sys.h"

namespace upcache {

namespace {

// The huge pages asked for: 2 MiB, named explicitly (MAP_HUGE_2MB) so that a
// system whose default huge page is 1 GiB does not round a small cache up.
constexpr uint64_t kHugePageBytes = 2ull << 20;
constexpr long kHugeMapFlags = MAP_HUGETLB | (21L << MAP_HUGE_SHIFT);

uint64_t round_up(uint64_t v, uint64_t align) { return (v + align - 1) & ~(align - 1); }

uint64_t pow2_at_least(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

ArenaLayout ArenaLayout::compute(uint64_t page_size, uint64_t frame_count) {
  ArenaLayout l{};
  // Two buckets per frame keeps chains short (load factor <= 0.5).
  l.bucket_count = pow2_at_least(frame_count * 2);
  // Enough inodes for many small files, bounded for huge caches.
  l.inode_count = pow2_at_least(frame_count / 4 < 1024 ? 1024 : (frame_count / 4 > 65536 ? 65536 : frame_count / 4));
  uint64_t off = round_up(sizeof(ArenaHeader), 64);
  l.frames_offset = off;
  off = round_up(off + frame_count * sizeof(FrameDesc), 64);
  l.buckets_offset = off;
  off = round_up(off + l.bucket_count * sizeof(Bucket), 64);
  l.inodes_offset = off;
  off = round_up(off + l.inode_count * sizeof(InodeEntry), 64);
  l.journals_offset = off;
  off = round_up(off + PinJournals::kJournals * sizeof(PinJournal), 64);
  l.data_offset = round_up(off, page_size);
  l.total_bytes = l.data_offset + frame_count * page_size;
  return l;
}

bool Arena::create(uint64_t page_size, uint64_t frame_count, std::string* error, bool huge) {
  if (page_size < 4096 || (page_size & (page_size - 1)) != 0 || frame_count == 0 ||
      frame_count >= (1ull << 32) - 1) {
    if (error) *error = "invalid arena geometry";
    return false;
  }
  ArenaLayout l = ArenaLayout::compute(page_size, frame_count);
  // Over-map by one page so the frame area can be aligned to the page size
  // (mmap only promises 4 KiB alignment).
  uint64_t map_bytes = l.total_bytes + page_size;
  long addr = -ENOMEM;
  if (huge) {
    // Why: the arena is shared memory, which gets no transparent huge pages
    // unless shmem THP is enabled (it rarely is), so every random hit walks
    // the page tables; hugetlb pages spare that. No MAP_NORESERVE: the pages
    // are taken at map time, or the map fails here and we fall back, rather
    // than a later fault killing the program with SIGBUS.
    uint64_t huge_bytes = round_up(map_bytes, kHugePageBytes);
    addr = sys::raw(SYS_mmap, 0, static_cast<long>(huge_bytes), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS | kHugeMapFlags, -1, 0);
    if (addr >= 0 || addr <= -4096) {
      map_bytes = huge_bytes;
      huge_ = true;
    }
  }
  // MAP_NORESERVE: memory is committed as frames are first filled, not up
  // front.
  if (!huge_) {
    addr = sys::raw(SYS_mmap, 0, static_cast<long>(map_bytes), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  if (addr < 0 && addr > -4096) {
    if (error) *error = std::string("cannot map the arena: ") + strerror(static_cast<int>(-addr));
    return false;
  }
  char* raw = reinterpret_cast<char*>(addr);
  // Place the header so that base + data_offset is page aligned.
  uint64_t data_addr = round_up(reinterpret_cast<uint64_t>(raw) + l.data_offset, page_size);
  base_ = reinterpret_cast<char*>(data_addr - l.data_offset);
  mapped_base_ = raw;
  mapped_bytes_ = map_bytes;

  auto* h = new (base_) ArenaHeader();
  h->magic = ArenaHeader::kMagic;
  h->version = ArenaHeader::kVersion;
  h->page_shift = static_cast<uint32_t>(__builtin_ctzll(page_size));
  h->page_size = page_size;
  h->frame_count = frame_count;
  h->bucket_count = l.bucket_count;
  h->inode_count = l.inode_count;
  h->frames_offset = l.frames_offset;
  h->buckets_offset = l.buckets_offset;
  h->inodes_offset = l.inodes_offset;
  h->journals_offset = l.journals_offset;
  h->data_offset = l.data_offset;
  h->total_bytes = l.total_bytes;
  h->next_file_id.store(1, std::memory_order_relaxed);
  // Anonymous memory is zero: every FrameDesc, Bucket and InodeEntry starts
  // free (state 0, file_id 0, head 0).

  frames_ = reinterpret_cast<FrameDesc*>(base_ + l.frames_offset);
  buckets_ = reinterpret_cast<Bucket*>(base_ + l.buckets_offset);
  inodes_ = reinterpret_cast<InodeEntry*>(base_ + l.inodes_offset);
  journals_ = reinterpret_cast<PinJournal*>(base_ + l.journals_offset);
  data_ = base_ + l.data_offset;
  frame_count_ = frame_count;
  page_shift_ = h->page_shift;
  return true;
}

Arena::~Arena() {
  if (mapped_base_ != nullptr) sys::raw(SYS_munmap, reinterpret_cast<long>(mapped_base_), static_cast<long>(mapped_bytes_));
}

}  // namespace upcache
