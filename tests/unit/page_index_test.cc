// The arena's layout and the page index.
#include "core/page_index.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "core/arena.h"
#include "core/frame.h"

namespace upcache {
namespace {

using namespace frame_state;

TEST(Arena, FramesArePageAlignedAndDisjoint) {
  for (uint64_t ps : {4096ull, 65536ull, 2ull << 20}) {
    Arena a;
    std::string err;
    ASSERT_TRUE(a.create(ps, 8, &err)) << err;
    EXPECT_EQ(a.page_size(), ps);
    for (uint64_t i = 0; i < 8; ++i) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a.frame_data(i)) % ps, 0u);
      // Frames never overlap the metadata or each other.
      EXPECT_GE(a.frame_data(i), reinterpret_cast<char*>(&a.frame(7) + 1));
      if (i) {
        EXPECT_EQ(a.frame_data(i) - a.frame_data(i - 1), static_cast<ptrdiff_t>(ps));
      }
    }
    // The whole arena is writable.
    a.frame_data(7)[ps - 1] = 1;
    EXPECT_EQ(a.header().magic, ArenaHeader::kMagic);
    EXPECT_EQ(a.header().frame_count, 8u);
  }
}

TEST(Arena, RejectsBadGeometry) {
  Arena a;
  std::string err;
  EXPECT_FALSE(a.create(3000, 8, &err));
  EXPECT_FALSE(err.empty());
  Arena b;
  EXPECT_FALSE(b.create(4096, 0, &err));
}

// Free 2 MiB huge pages of the system (-1: no hugetlb support).
long free_huge_pages() {
  FILE* f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
  if (f == nullptr) return -1;
  long n = -1;
  if (fscanf(f, "%ld", &n) != 1) n = -1;
  fclose(f);
  return n;
}

// The kernel page size backing `addr`, from /proc/self/smaps (0: not found).
long kernel_page_kib(const void* addr) {
  FILE* f = fopen("/proc/self/smaps", "r");
  if (f == nullptr) return 0;
  char line[512];
  bool in = false;
  long kib = 0;
  const auto a = reinterpret_cast<uintptr_t>(addr);
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      in = a >= lo && a < hi;
    } else if (in && sscanf(line, "KernelPageSize: %ld kB", &kib) == 1) {
      break;
    }
  }
  fclose(f);
  return in ? kib : 0;
}

TEST(Arena, HugePagesAskedButTooFewFreeGiveAnOrdinaryArena) {
  long free = free_huge_pages();
  // More frames than every free huge page holds (ordinary memory is
  // committed lazily: the size costs nothing).
  uint64_t frames = static_cast<uint64_t>(free < 0 ? 0 : free) * 128 + 4096;
  Arena a;
  std::string err;
  ASSERT_TRUE(a.create(16384, frames, &err, /*huge=*/true)) << err;
  EXPECT_FALSE(a.huge());
  EXPECT_EQ(kernel_page_kib(a.frame_data(0)), 4);
  a.frame_data(frames - 1)[16383] = 7;
  EXPECT_EQ(a.frame_data(frames - 1)[16383], 7);
}

TEST(Arena, HugePagesWhenEnoughAreFree) {
  // 64 frames of 16 KiB: 1 MiB of data and its metadata, two huge pages.
  if (free_huge_pages() < 2) GTEST_SKIP() << "no free 2 MiB huge pages (tests/reliability rel_hugepages reserves some)";
  Arena a;
  std::string err;
  ASSERT_TRUE(a.create(16384, 64, &err, /*huge=*/true)) << err;
  ASSERT_TRUE(a.huge());
  EXPECT_EQ(kernel_page_kib(a.frame_data(0)), 2048);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.frame_data(0)) % 16384, 0u);
  for (uint64_t i = 0; i < 64; ++i) a.frame_data(i)[0] = static_cast<char>(i);
  for (uint64_t i = 0; i < 64; ++i) EXPECT_EQ(a.frame_data(i)[0], static_cast<char>(i));
  EXPECT_EQ(a.mapped_bytes() % (2u << 20), 0u);
}

TEST(Arena, LayoutOffsetsArePositionIndependent) {
  ArenaLayout l = ArenaLayout::compute(65536, 1000);
  EXPECT_EQ(l.bucket_count, 2048u);
  // What stays (inodes, journals), then what may move (descriptors,
  // buckets, frames).
  EXPECT_LT(l.inodes_offset, l.journals_offset);
  EXPECT_LT(l.journals_offset, l.frames_offset);
  EXPECT_LT(l.frames_offset, l.buckets_offset);
  EXPECT_GE(l.buckets_offset, l.frames_offset + 1000 * sizeof(FrameDesc));
  EXPECT_LT(l.buckets_offset, l.data_offset);
  EXPECT_GE(l.data_offset, l.buckets_offset + 2048 * sizeof(Bucket));
  EXPECT_EQ(l.data_offset % 65536, 0u);
  EXPECT_EQ(l.total_bytes, l.data_offset + 1000 * 65536ull);

  // Made for 2 MiB pages: the movable part and the frames start on 2 MiB
  // boundaries, so that one file mapping covers them from a huge page on.
  ArenaLayout h = ArenaLayout::compute(16384, 4096, /*huge_aligned=*/true);
  EXPECT_EQ(h.frames_offset % (2u << 20), 0u);
  EXPECT_EQ(h.buckets_offset % (2u << 20), 0u);
  EXPECT_EQ(h.data_offset % (2u << 20), 0u);
  EXPECT_LT(h.frames_offset, h.buckets_offset);
  EXPECT_LT(h.buckets_offset, h.data_offset);
  EXPECT_EQ(h.total_bytes, h.data_offset + 4096 * 16384ull);
}

class PageIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(arena.create(4096, 64, &err)) << err;
    index = std::make_unique<PageIndex>(arena);
  }
  // Gives frame `f` the key and links it.
  int64_t put(uint32_t f, uint64_t file, uint64_t page) {
    FrameDesc& d = arena.frame(f);
    d.file_id = file;
    d.page = page;
    return index->insert_or_get(file, page, f, [&] { d.state = kHashed | kUptodate; });
  }
  Arena arena;
  std::unique_ptr<PageIndex> index;
};

TEST_F(PageIndexTest, FindsWhatWasInserted) {
  EXPECT_EQ(index->find(1, 0), PageIndex::kNone);
  EXPECT_EQ(put(3, 1, 0), 3);
  EXPECT_EQ(put(4, 1, 1), 4);
  EXPECT_EQ(put(5, 2, 0), 5);
  EXPECT_EQ(index->find(1, 0), 3);
  EXPECT_EQ(index->find(1, 1), 4);
  EXPECT_EQ(index->find(2, 0), 5);
  EXPECT_EQ(index->find(2, 1), PageIndex::kNone);
}

TEST_F(PageIndexTest, InsertOfAPresentKeyReturnsTheExistingFrame) {
  EXPECT_EQ(put(3, 7, 9), 3);
  bool published = false;
  FrameDesc& d = arena.frame(6);
  d.file_id = 7;
  d.page = 9;
  EXPECT_EQ(index->insert_or_get(7, 9, 6, [&] { published = true; }), 3);
  EXPECT_FALSE(published);
}

TEST_F(PageIndexTest, RemoveUnlinksOnlyThatFrame) {
  // Force many keys so some share buckets.
  for (uint32_t f = 0; f < 64; ++f) ASSERT_EQ(put(f, 1 + f % 3, f), f);
  for (uint32_t f = 0; f < 64; f += 2) {
    arena.frame(f).state = 0;
    index->remove(1 + f % 3, f, f);
  }
  for (uint32_t f = 0; f < 64; ++f) {
    int64_t want = f % 2 ? static_cast<int64_t>(f) : PageIndex::kNone;
    EXPECT_EQ(index->find(1 + f % 3, f), want) << f;
  }
}

// The prefetching lookup answers exactly as find(), on chains of every
// length, for keys present, removed and never inserted.
TEST_F(PageIndexTest, PrefetchingFindAnswersAsFind) {
  for (uint32_t f = 0; f < 64; ++f) ASSERT_EQ(put(f, 1 + f % 3, f), f);
  for (uint32_t f = 0; f < 64; f += 3) {
    arena.frame(f).state = 0;
    index->remove(1 + f % 3, f, f);
  }
  for (uint64_t file = 0; file < 5; ++file) {
    for (uint64_t page = 0; page < 70; ++page) {
      int64_t want = index->find(file, page);
      EXPECT_EQ(index->find_prefetching(file, page, page % 4096), want) << file << " " << page;
      if (file == 1 + page % 3 && page < 64) {
        EXPECT_EQ(want != PageIndex::kNone, page % 3 != 0);
      }
    }
  }
}

TEST_F(PageIndexTest, HashSpreadsKeys) {
  EXPECT_NE(PageIndex::hash(1, 0), PageIndex::hash(0, 1));
  EXPECT_NE(PageIndex::hash(1, 1), PageIndex::hash(1, 2));
}

}  // namespace
}  // namespace upcache
