#include "core/arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "core/huge_shmem.h"
#include "core/inode_table.h"
#include "core/pin_journal.h"
#include "core/sys.h"

namespace upcache {

namespace {

// The huge pages asked for: 2 MiB, named explicitly (MAP_HUGE_2MB) so that a
// system whose default huge page is 1 GiB does not round a small cache up.
constexpr uint64_t kHugePageBytes = 2ull << 20;
constexpr long kHugeMapFlags = MAP_HUGETLB | (21L << MAP_HUGE_SHIFT);
constexpr long kMadvCollapse = 25;  // MADV_COLLAPSE (Linux 6.1), not in every libc's headers

uint64_t round_up(uint64_t v, uint64_t align) { return (v + align - 1) & ~(align - 1); }

uint64_t pow2_at_least(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

ArenaLayout ArenaLayout::compute(uint64_t page_size, uint64_t frame_count, bool huge_aligned) {
  ArenaLayout l{};
  // Two buckets per frame keeps chains short (load factor <= 0.5).
  l.bucket_count = pow2_at_least(frame_count * 2);
  // Enough inodes for many small files, bounded for huge caches.
  l.inode_count = pow2_at_least(frame_count / 4 < 1024 ? 1024 : (frame_count / 4 > 65536 ? 65536 : frame_count / 4));
  // What stays put first (header, inodes, journals), then what
  // Arena::settle_backing may move to 2 MiB pages: descriptors, buckets and
  // frames, from a 2 MiB boundary when asked.
  const uint64_t movable_align = huge_aligned ? kHugePageBytes : 64;
  uint64_t off = round_up(sizeof(ArenaHeader), 64);
  l.inodes_offset = off;
  off = round_up(off + l.inode_count * sizeof(InodeEntry), 64);
  l.journals_offset = off;
  off = round_up(off + PinJournals::kJournals * sizeof(PinJournal), 64);
  l.frames_offset = round_up(off, movable_align);
  // The buckets on a boundary of their own: they may lie on 2 MiB pages
  // while the descriptors do not yet (Arena::promote_descriptors).
  l.buckets_offset = round_up(l.frames_offset + frame_count * sizeof(FrameDesc), movable_align);
  off = l.buckets_offset;
  off = round_up(off + l.bucket_count * sizeof(Bucket), 64);
  l.data_offset = round_up(off, page_size > movable_align ? page_size : movable_align);
  l.total_bytes = l.data_offset + frame_count * page_size;
  return l;
}

bool Arena::create(uint64_t page_size, uint64_t frame_count, std::string* error, bool huge,
                   bool transparent_huge) {
  if (page_size < 4096 || (page_size & (page_size - 1)) != 0 || frame_count == 0 ||
      frame_count >= (1ull << 32) - 1) {
    if (error) *error = "invalid arena geometry";
    return false;
  }
  const uint64_t frame_bytes = frame_count * page_size;
  // What moves to 2 MiB pages later needs 2 MiB aligned addresses.
  const bool thp = transparent_huge && frame_bytes >= kTransparentHugeMinBytes;
  ArenaLayout l = ArenaLayout::compute(page_size, frame_count, thp && page_size < kHugePageBytes);
  const uint64_t data_align = thp && page_size < kHugePageBytes ? kHugePageBytes : page_size;
  // Over-map so the frame area can be aligned (mmap only promises 4 KiB).
  uint64_t map_bytes = l.total_bytes + data_align;
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
  // Place the header so that base + data_offset is aligned.
  uint64_t data_addr = round_up(reinterpret_cast<uint64_t>(raw) + l.data_offset, huge_ ? page_size : data_align);
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
  // New anonymous memory is zero: every FrameDesc, Bucket and InodeEntry
  // starts free (state 0, file_id 0, head 0).

  frames_ = reinterpret_cast<FrameDesc*>(base_ + l.frames_offset);
  buckets_ = reinterpret_cast<Bucket*>(base_ + l.buckets_offset);
  inodes_ = reinterpret_cast<InodeEntry*>(base_ + l.inodes_offset);
  journals_ = reinterpret_cast<PinJournal*>(base_ + l.journals_offset);
  data_ = base_ + l.data_offset;
  frame_count_ = frame_count;
  page_shift_ = h->page_shift;
  thp_possible_ = thp && !huge_;
  return true;
}

namespace {

// Is the page at `addr` mapped by this process alone? (PM_MMAP_EXCLUSIVE,
// bit 56 of its /proc/self/pagemap entry.) False when unknown.
bool page_mapped_only_here(const void* addr) {
  int fd = sys::openat(AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint64_t entry = 0;
  int64_t n = sys::pread(fd, &entry, sizeof entry,
                         static_cast<int64_t>(reinterpret_cast<uintptr_t>(addr) / 4096 * sizeof entry));
  sys::close(fd);
  return n == sizeof entry && (entry >> 63 & 1) != 0 && (entry >> 56 & 1) != 0;
}

}  // namespace

bool Arena::settle_backing(bool want_huge) {
  if (transparent_huge_) return true;
  std::atomic<uint32_t>& backing = header().frame_backing;
  uint32_t expected = kBackingUnsettled;
  if (want_huge && thp_possible_ && page_mapped_only_here(base_) &&
      backing.compare_exchange_strong(expected, kBackingMoving, std::memory_order_acq_rel)) {
    bool moved = move_to_huge_pages();
    backing.store(moved ? kBackingHuge : kBackingOrdinary, std::memory_order_release);
    return moved;
  }
  expected = kBackingUnsettled;
  backing.compare_exchange_strong(expected, kBackingOrdinary, std::memory_order_acq_rel);
  return false;
}

bool Arena::move_to_huge_pages() {
  // Why: the arena is shared memory, which the kernel backs with 4 KiB pages
  // unless shmem THP is on (rarely), so every random hit of a large cache
  // walks the page tables three times (bucket, descriptor, frame), where the
  // kernel's own page cache is read through its huge-page direct map. A
  // huge=always tmpfs gets 2 MiB pages where the kernel has them, taking
  // nothing from anyone.
  char* from = base_ + header().frames_offset;
  const uint64_t bytes = header().total_bytes - header().frames_offset;
  int fd = huge_shmem_open(bytes);
  if (fd < 0) {
    thp_possible_ = false;  // refused: do not ask again
    return false;
  }
  // MAP_FIXED replaces the untouched anonymous pages in one step (a
  // lock-free reader sees zeros before and after); the mapping keeps the
  // file, so its descriptor goes at once.
  long addr = sys::raw(SYS_mmap, reinterpret_cast<long>(from), static_cast<long>(bytes),
                       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  sys::close(fd);
  if (addr != reinterpret_cast<long>(from)) {
    // A failed MAP_FIXED may have unmapped the range: map fresh anonymous
    // memory there, which is what the untouched range held (zeros).
    sys::raw(SYS_mmap, reinterpret_cast<long>(from), static_cast<long>(bytes), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    thp_possible_ = false;
    return false;
  }
  // The descriptors start on 4 KiB pages (promote_descriptors); the buckets, read
  // at random from the first miss on, on 2 MiB ones at once.
  sys::raw(SYS_madvise, reinterpret_cast<long>(from),
           static_cast<long>(header().buckets_offset - header().frames_offset), MADV_NOHUGEPAGE);
  transparent_huge_ = true;
  return true;
}

bool Arena::promote_descriptors() {
  if (!transparent_huge_) return false;
  uint32_t expected = 0;
  if (!header().descriptors_promoted.compare_exchange_strong(expected, 1, std::memory_order_acq_rel))
    return expected == 2;
  char* from = base_ + header().frames_offset;
  const long len = static_cast<long>(header().buckets_offset - header().frames_offset);
  bool ok = sys::raw(SYS_madvise, reinterpret_cast<long>(from), len, MADV_HUGEPAGE) == 0 &&
            sys::raw(SYS_madvise, reinterpret_cast<long>(from), len, kMadvCollapse) == 0;
  header().descriptors_promoted.store(ok ? 2 : 3, std::memory_order_release);
  return ok;
}

Arena::~Arena() {
  if (mapped_base_ != nullptr) sys::raw(SYS_munmap, reinterpret_cast<long>(mapped_base_), static_cast<long>(mapped_bytes_));
}

}  // namespace upcache
