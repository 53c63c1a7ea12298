#include "core/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <vector>

namespace upcache {
namespace {

std::vector<std::string> g_warnings;
void collect(const char* line) { g_warnings.emplace_back(line); }

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_warnings.clear();
    for (const char* v : {"UPCACHE_SIZE", "UPCACHE_PAGE_SIZE", "UPCACHE_RA_MAX", "UPCACHE_DIRECT",
                          "UPCACHE_ASYNC", "UPCACHE_STATS", "UPCACHE_LOG", "UPCACHE_IO_THREADS",
                          "UPCACHE_HUGEPAGES", "UPCACHE_THP", "UPCACHE_COHERENCE",
                          "UPCACHE_LEASE_SIGNAL"})
      unsetenv(v);
  }
};

TEST(ParseSize, AcceptsSuffixes) {
  uint64_t v = 0;
  EXPECT_TRUE(parse_size("123", &v));
  EXPECT_EQ(v, 123u);
  EXPECT_TRUE(parse_size("4K", &v));
  EXPECT_EQ(v, 4096u);
  EXPECT_TRUE(parse_size("64k", &v));
  EXPECT_EQ(v, 65536u);
  EXPECT_TRUE(parse_size("1M", &v));
  EXPECT_EQ(v, 1u << 20);
  EXPECT_TRUE(parse_size("2GiB", &v));
  EXPECT_EQ(v, 2ull << 30);
  EXPECT_TRUE(parse_size("1TB", &v));
  EXPECT_EQ(v, 1ull << 40);
}

TEST(ParseSize, RejectsGarbageAndOverflow) {
  uint64_t v = 7;
  EXPECT_FALSE(parse_size("banana", &v));
  EXPECT_FALSE(parse_size("", &v));
  EXPECT_FALSE(parse_size("-1", &v));
  EXPECT_FALSE(parse_size("12Q", &v));
  EXPECT_FALSE(parse_size("1M2", &v));
  EXPECT_FALSE(parse_size("99999999999999999999", &v));
  EXPECT_FALSE(parse_size("99999999999T", &v));
  EXPECT_EQ(v, 7u);
}

TEST_F(ConfigTest, DefaultsWithoutEnvironment) {
  Config c = Config::from_env(collect);
  EXPECT_EQ(c.cache_bytes, Config::kDefaultCacheBytes);
  EXPECT_EQ(c.page_size, Config::kDefaultPageSize);
  EXPECT_EQ(c.ra_max_bytes, Config::kDefaultRaMaxBytes);
  EXPECT_FALSE(c.huge_pages);
  EXPECT_TRUE(c.transparent_huge);
  EXPECT_TRUE(g_warnings.empty());
}

TEST_F(ConfigTest, HugePageFlags) {
  setenv("UPCACHE_HUGEPAGES", "1", 1);
  setenv("UPCACHE_THP", "0", 1);
  Config c = Config::from_env(collect);
  EXPECT_TRUE(c.huge_pages);
  EXPECT_FALSE(c.transparent_huge);
  setenv("UPCACHE_THP", "maybe", 1);
  EXPECT_TRUE(Config::from_env(collect).transparent_huge);
  ASSERT_EQ(g_warnings.size(), 1u);
  EXPECT_NE(g_warnings[0].find("UPCACHE_THP"), std::string::npos);
}

TEST_F(ConfigTest, CoherenceModeAndLeaseSignal) {
  Config c = Config::from_env(collect);
  EXPECT_EQ(c.coherence, Coherence::kLease);  // never stale unless asked
  EXPECT_EQ(c.lease_signal, 0u);
  setenv("UPCACHE_COHERENCE", "open", 1);
  setenv("UPCACHE_LEASE_SIGNAL", "50", 1);
  c = Config::from_env(collect);
  EXPECT_EQ(c.coherence, Coherence::kOpen);
  EXPECT_EQ(c.lease_signal, 50u);
  EXPECT_TRUE(g_warnings.empty());
  setenv("UPCACHE_COHERENCE", "sometimes", 1);
  setenv("UPCACHE_LEASE_SIGNAL", "99", 1);
  c = Config::from_env(collect);
  EXPECT_EQ(c.coherence, Coherence::kLease);
  EXPECT_EQ(c.lease_signal, 0u);
  ASSERT_EQ(g_warnings.size(), 2u);
  EXPECT_NE(g_warnings[0].find("UPCACHE_COHERENCE"), std::string::npos);
  EXPECT_NE(g_warnings[1].find("UPCACHE_LEASE_SIGNAL"), std::string::npos);
}

TEST_F(ConfigTest, ReadsValidValues) {
  setenv("UPCACHE_SIZE", "256M", 1);
  setenv("UPCACHE_PAGE_SIZE", "4K", 1);
  setenv("UPCACHE_RA_MAX", "1M", 1);
  setenv("UPCACHE_DIRECT", "off", 1);
  setenv("UPCACHE_ASYNC", "threads", 1);
  Config c = Config::from_env(collect);
  EXPECT_EQ(c.cache_bytes, 256u << 20);
  EXPECT_EQ(c.page_size, 4096u);
  EXPECT_EQ(c.ra_max_pages(), 256u);
  EXPECT_EQ(c.direct, DirectMode::kOff);
  EXPECT_EQ(c.async_engine, AsyncEngine::kThreads);
  EXPECT_TRUE(g_warnings.empty());
}

TEST_F(ConfigTest, BadValuesWarnOnceAndKeepDefaults) {
  setenv("UPCACHE_SIZE", "banana", 1);
  setenv("UPCACHE_PAGE_SIZE", "3000", 1);  // not a power of two
  setenv("UPCACHE_DIRECT", "sometimes", 1);
  Config c = Config::from_env(collect);
  EXPECT_EQ(c.cache_bytes, Config::kDefaultCacheBytes);
  EXPECT_EQ(c.page_size, Config::kDefaultPageSize);
  EXPECT_EQ(c.direct, DirectMode::kAuto);
  ASSERT_EQ(g_warnings.size(), 3u);
  EXPECT_NE(g_warnings[0].find("upcache"), std::string::npos);
  EXPECT_NE(g_warnings[0].find("UPCACHE_PAGE_SIZE"), std::string::npos);
  EXPECT_NE(g_warnings[1].find("UPCACHE_SIZE=\"banana\""), std::string::npos);
  EXPECT_NE(g_warnings[2].find("UPCACHE_DIRECT"), std::string::npos);
}

TEST_F(ConfigTest, PageSizeBounds) {
  setenv("UPCACHE_PAGE_SIZE", "2K", 1);
  EXPECT_EQ(Config::from_env(collect).page_size, Config::kDefaultPageSize);
  setenv("UPCACHE_PAGE_SIZE", "4M", 1);
  EXPECT_EQ(Config::from_env(collect).page_size, Config::kDefaultPageSize);
  setenv("UPCACHE_PAGE_SIZE", "2M", 1);
  EXPECT_EQ(Config::from_env(collect).page_size, 2u << 20);
  EXPECT_EQ(g_warnings.size(), 2u);
}

TEST_F(ConfigTest, SecureModeIgnoresPaths) {
  setenv("UPCACHE_LOG", "/tmp/upcache.log", 1);
  EXPECT_EQ(Config::from_env(collect, false).log_file, "/tmp/upcache.log");
  EXPECT_EQ(Config::from_env(collect, true).log_file, "");
}

}  // namespace
}  // namespace upcache
