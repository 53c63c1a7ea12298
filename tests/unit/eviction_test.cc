// CLOCK: free frames first, second chance for referenced ones, never a pinned,
// locked or in-flight frame.
#include "core/eviction.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/frame.h"

namespace upcache {
namespace {

using namespace frame_state;

constexpr uint64_t kOwner = 0x1234'00000042ull;  // owner_word(0x42, 0x1234)

class ClockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(arena.create(4096, 8, &err)) << err;
  }
  Arena arena;
};

TEST_F(ClockTest, HandsOutEveryFreeFrameOnce) {
  ClockPolicy clock(arena);
  std::set<int64_t> got;
  for (int i = 0; i < 8; ++i) {
    int64_t v = clock.take_victim(kOwner);
    ASSERT_NE(v, EvictionPolicy::kNone);
    EXPECT_TRUE(arena.frame(v).state.load() & kLocked);
    EXPECT_EQ(arena.frame(v).lock_owner.load(), kOwner);
    got.insert(v);
  }
  EXPECT_EQ(got.size(), 8u);
  // All are locked now: nothing left.
  EXPECT_EQ(clock.take_victim(kOwner), EvictionPolicy::kNone);
}

TEST_F(ClockTest, NeverTakesPinnedOrInFlightFrames) {
  for (uint64_t i = 0; i < 8; ++i) arena.frame(i).state = kHashed | kUptodate | kPinOne;
  arena.frame(5).state = kHashed | kIo;
  arena.frame(6).state = kHashed | kUptodate;  // the only candidate
  ClockPolicy clock(arena);
  EXPECT_EQ(clock.take_victim(kOwner), 6);
  EXPECT_EQ(clock.take_victim(kOwner), EvictionPolicy::kNone);
}

TEST_F(ClockTest, ReferencedFramesGetASecondChance) {
  for (uint64_t i = 0; i < 8; ++i) arena.frame(i).state = kHashed | kUptodate | kReferenced;
  arena.frame(3).state = kHashed | kUptodate;  // not referenced
  ClockPolicy clock(arena);
  EXPECT_EQ(clock.take_victim(kOwner), 3);
  // The hand cleared the bits it passed; the next victim is the next frame
  // after 3 whose bit was cleared on the first sweep.
  int64_t next = clock.take_victim(kOwner);
  ASSERT_NE(next, EvictionPolicy::kNone);
  EXPECT_NE(next, 3);
  for (uint64_t i = 0; i < 8; ++i) {
    if (static_cast<int64_t>(i) == 3 || static_cast<int64_t>(i) == next) continue;
    EXPECT_FALSE(arena.frame(i).state.load() & kReferenced) << i;
  }
}

// A frame whose owner word is set belongs to a claim in progress (or to a
// process killed in the middle of one): the hand passes it over.
TEST_F(ClockTest, FramesWithAnOwnerAreNotTaken) {
  for (uint64_t i = 0; i < 8; ++i) arena.frame(i).state = kHashed | kUptodate | kPinOne;
  arena.frame(2).state = kHashed | kUptodate;
  arena.frame(2).lock_owner = 0x99;
  ClockPolicy clock(arena);
  EXPECT_EQ(clock.take_victim(kOwner), EvictionPolicy::kNone);
  EXPECT_EQ(arena.frame(2).lock_owner.load(), 0x99u);
  arena.frame(2).lock_owner = 0;
  EXPECT_EQ(clock.take_victim(kOwner), 2);
}

}  // namespace
}  // namespace upcache
