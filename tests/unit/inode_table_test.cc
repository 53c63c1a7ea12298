#include "core/inode_table.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/arena.h"

namespace upcache {
namespace {

class InodeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(arena.create(4096, 16, &err)) << err;
  }
  static FileIdentity ident(uint64_t ino) {
    FileIdentity id;
    id.dev = 0x801;
    id.ino = ino;
    id.generation = 5;
    id.size = 1000;
    id.mtime_ns = 111;
    id.ctime_ns = 222;
    return id;
  }
  Arena arena;
};

TEST_F(InodeTableTest, SameFileKeepsItsId) {
  InodeTable t(arena);
  uint64_t a = t.validate(ident(10));
  EXPECT_NE(a, 0u);
  EXPECT_EQ(t.validate(ident(10)), a);
  EXPECT_NE(t.validate(ident(11)), a);
}

TEST_F(InodeTableTest, AnyChangeGivesANewId) {
  InodeTable t(arena);
  std::set<uint64_t> ids;
  FileIdentity id = ident(10);
  ids.insert(t.validate(id));
  id.size = 2000;  // grew
  ids.insert(t.validate(id));
  id.mtime_ns = 999;  // rewritten
  ids.insert(t.validate(id));
  id.ctime_ns = 999;  // metadata changed
  ids.insert(t.validate(id));
  id.generation = 6;  // recycled inode number
  ids.insert(t.validate(id));
  id.dev = 0x802;  // another filesystem
  ids.insert(t.validate(id));
  EXPECT_EQ(ids.size(), 6u);
}

TEST_F(InodeTableTest, IdsAreNeverReusedEvenWhenTheTableOverflows) {
  InodeTable t(arena);
  std::set<uint64_t> ids;
  const uint64_t n = arena.header().inode_count * 3;
  for (uint64_t ino = 1; ino <= n; ++ino) ids.insert(t.validate(ident(ino)));
  EXPECT_EQ(ids.size(), n);
}

TEST_F(InodeTableTest, UpdateRecordsTheProgramsOwnChange) {
  InodeTable t(arena);
  FileIdentity id = ident(10);
  uint64_t a = t.validate(id);
  id.size = 5000;
  id.mtime_ns = 333;
  t.update(a, id);
  EXPECT_EQ(t.validate(id), a);
}

}  // namespace
}  // namespace upcache
