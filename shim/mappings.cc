#include "shim/mappings.h"

#include <sys/mman.h>

#include <atomic>

#include "core/cache.h"
#include "shim/description.h"
#include "shim/log.h"
#include "shim/runtime.h"

namespace upcache::shim {
namespace {

struct Mapping {
  uintptr_t start;
  uintptr_t end;  // exclusive, page aligned
  uint64_t dev;
  uint64_t ino;
  bool writable;
};

constexpr int kMaxMappings = 512;
constexpr uintptr_t kPage = 4096;

Mapping g_maps[kMaxMappings];
int g_count = 0;                   // entries in use, under g_lock
std::atomic<int> g_live{0};        // g_count, for the lock-free mappings_any()
FutexLock g_lock;
bool g_exec_uncounted = false;     // before_exec uncounted the writable entries
bool g_full_logged = false;

uintptr_t page_end(uintptr_t addr, size_t len) {
  uintptr_t e = addr + len;
  if (e < addr) return ~uintptr_t{0} & ~(kPage - 1);
  return (e + kPage - 1) & ~(kPage - 1);
}

void publish() { g_live.store(g_count, std::memory_order_relaxed); }

void remove_at(int i) {
  g_maps[i] = g_maps[g_count - 1];
  --g_count;
}

// Takes [s, e) out of every entry; an entry that disappears uncounts (and
// drops its inode's pages) if writable. Caller holds g_lock.
void cut(uintptr_t s, uintptr_t e) {
  for (int i = 0; i < g_count;) {
    Mapping& m = g_maps[i];
    if (m.end <= s || m.start >= e) {
      ++i;
      continue;
    }
    if (s <= m.start && e >= m.end) {
      Mapping gone = m;
      remove_at(i);
      if (gone.writable) g_cache->unmapped_writable(gone.dev, gone.ino);
      continue;  // slot i now holds another entry
    }
    if (s <= m.start) {
      m.start = e;
    } else if (e >= m.end) {
      m.end = s;
    } else if (g_count < kMaxMappings) {
      // A hole in the middle: two entries, each holding one count.
      Mapping tail = m;
      tail.start = e;
      m.end = s;
      g_maps[g_count++] = tail;
      if (tail.writable) g_cache->count_writable(tail.dev, tail.ino);
    }
    // else: no room to split; the entry keeps covering the hole (stays counted).
    ++i;
  }
}

// Records an entry whose count (if writable) is already taken.
void insert(const Mapping& m) {
  if (g_count < kMaxMappings) {
    g_maps[g_count++] = m;
    return;
  }
  if (!g_full_logged) {
    g_full_logged = true;
    log::line(2, "upcache: more than 512 shared file mappings; later writable ones keep their files uncached");
  }
}

class TableLock {
 public:
  TableLock() { g_lock.lock(); }
  ~TableLock() {
    publish();
    g_lock.unlock();
  }
};

}  // namespace

bool mappings_any() { return g_live.load(std::memory_order_relaxed) != 0; }

void mappings_mapped(uintptr_t addr, size_t len, const struct stat* st, bool writable) {
  TableLock lock;
  uintptr_t end = page_end(addr, len);
  cut(addr, end);
  if (st == nullptr) return;
  Mapping m{addr, end, static_cast<uint64_t>(st->st_dev), static_cast<uint64_t>(st->st_ino), writable};
  if (writable) g_cache->mapped_writable(m.dev, m.ino);
  insert(m);
}

void mappings_unmapped(uintptr_t addr, size_t len) {
  TableLock lock;
  cut(addr, page_end(addr, len));
}

void mappings_moved(uintptr_t old, size_t old_len, uintptr_t addr, size_t new_len, bool keep_old) {
  TableLock lock;
  int found = -1;
  uintptr_t old_end = page_end(old, old_len == 0 ? 1 : old_len);
  for (int i = 0; i < g_count; ++i) {
    if (g_maps[i].start < old_end && g_maps[i].end > old) {
      found = i;
      break;
    }
  }
  if (found < 0) {
    cut(addr, page_end(addr, new_len));  // whatever was at the target is gone
    return;
  }
  Mapping m = g_maps[found];
  m.start = addr;
  m.end = page_end(addr, new_len);
  // Count the new place first, so the inode never looks unmapped meanwhile.
  if (m.writable) g_cache->count_writable(m.dev, m.ino);
  if (!keep_old) cut(old, old_end);
  cut(m.start, m.end);
  insert(m);
}

void mappings_protected(uintptr_t addr, size_t len, int prot) {
  if (!(prot & PROT_WRITE)) return;  // dropping write access: stores already made stay counted
  TableLock lock;
  uintptr_t end = page_end(addr, len);
  for (int i = 0; i < g_count; ++i) {
    Mapping& m = g_maps[i];
    if (m.writable || m.end <= addr || m.start >= end) continue;
    m.writable = true;
    g_cache->mapped_writable(m.dev, m.ino);
  }
}

void mappings_fork_prepare() { g_lock.lock(); }
void mappings_fork_parent() { g_lock.unlock(); }
void mappings_fork_child() {
  g_lock.reset();
  for (int i = 0; i < g_count; ++i)
    if (g_maps[i].writable) g_cache->count_writable(g_maps[i].dev, g_maps[i].ino);
}

void mappings_before_exec() {
  TableLock lock;
  for (int i = 0; i < g_count; ++i)
    if (g_maps[i].writable) g_cache->unmapped_writable(g_maps[i].dev, g_maps[i].ino);
  g_exec_uncounted = true;
}

void mappings_exec_failed() {
  TableLock lock;
  if (!g_exec_uncounted) return;
  g_exec_uncounted = false;
  for (int i = 0; i < g_count; ++i)
    if (g_maps[i].writable) g_cache->count_writable(g_maps[i].dev, g_maps[i].ino);
}

void mappings_at_exit() {
  TableLock lock;
  for (int i = 0; i < g_count; ++i)
    if (g_maps[i].writable) g_cache->unmapped_writable(g_maps[i].dev, g_maps[i].ino);
  g_count = 0;
}

}  // namespace upcache::shim
