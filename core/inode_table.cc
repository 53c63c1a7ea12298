#include "core/inode_table.h"

#include <time.h>

#include "core/arena.h"
#include "core/spinlock.h"
#include "core/sys.h"

namespace upcache {

namespace {
uint64_t slot_of(uint64_t dev, uint64_t ino, uint64_t mask) {
  uint64_t h = (dev * 0x9E3779B97F4A7C15ull) ^ (ino * 0xC2B2AE3D27D4EB4Full);
  return (h ^ (h >> 29)) & mask;
}
constexpr int kProbe = 16;
int64_t realtime_ns() { return sys::clock_ns(CLOCK_REALTIME); }
}  // namespace

bool InodeTable::confirm(uint64_t file_id, const FileIdentity& id, int64_t now_ns, int64_t racy_ns) {
  SpinGuard guard(arena_.header().inode_lock);
  InodeEntry* e = find_locked(id.dev, id.ino, file_id);
  if (e == nullptr) return false;
  FileIdentity was = e->id;
  was.generation = id.generation;
  const bool trusted = was == id && e->confirmed_ns != 0 && e->confirmed_ns - id.ctime_ns > racy_ns;
  uint64_t generation = e->id.generation;
  e->id = id;
  e->id.generation = generation;
  e->confirmed_ns = now_ns;
  return trusted;
}

uint64_t InodeTable::validate(const FileIdentity& id) {
  ArenaHeader& h = arena_.header();
  InodeEntry* table = arena_.inodes();
  uint64_t mask = h.inode_count - 1;
  uint64_t home = slot_of(id.dev, id.ino, mask);
  SpinGuard guard(h.inode_lock);
  uint64_t now = h.next_file_id.load(std::memory_order_relaxed);
  InodeEntry* free_slot = nullptr;
  InodeEntry* oldest = nullptr;
  for (int i = 0; i < kProbe; ++i) {
    InodeEntry& e = table[(home + i) & mask];
    if (e.file_id == 0) {
      if (!free_slot) free_slot = &e;
      continue;
    }
    if (e.id.dev == id.dev && e.id.ino == id.ino) {
      if (!(e.id == id)) {
        // Same inode number, different contents or a recycled inode: the old
        // pages must never be served again.
        e.id = id;
        e.file_id = h.next_file_id.fetch_add(1, std::memory_order_relaxed);
        e.confirmed_ns = realtime_ns();  // no page is cached under the new id
      }
      e.last_use = now;
      return e.file_id;
    }
    if (!oldest || e.last_use < oldest->last_use) oldest = &e;
  }
  InodeEntry* slot = free_slot ? free_slot : oldest;
  slot->id = id;
  slot->file_id = h.next_file_id.fetch_add(1, std::memory_order_relaxed);
  slot->last_use = now;
  slot->confirmed_ns = realtime_ns();
  return slot->file_id;
}

// The entry of (dev, ino) — and of `file_id` unless it is 0 — or null.
// Caller holds the table lock.
InodeEntry* InodeTable::find_locked(uint64_t dev, uint64_t ino, uint64_t file_id) {
  ArenaHeader& h = arena_.header();
  InodeEntry* table = arena_.inodes();
  uint64_t mask = h.inode_count - 1;
  uint64_t home = slot_of(dev, ino, mask);
  for (int i = 0; i < kProbe; ++i) {
    InodeEntry& e = table[(home + i) & mask];
    if (e.file_id != 0 && e.id.dev == dev && e.id.ino == ino && (file_id == 0 || e.file_id == file_id))
      return &e;
  }
  return nullptr;
}

bool InodeTable::lookup(uint64_t dev, uint64_t ino, uint64_t* file_id, uint64_t* size) {
  SpinGuard guard(arena_.header().inode_lock);
  InodeEntry* e = find_locked(dev, ino, 0);
  if (e == nullptr) return false;
  *file_id = e->file_id;
  *size = e->id.size;
  return true;
}

void InodeTable::update_attributes(uint64_t file_id, const FileIdentity& id) {
  SpinGuard guard(arena_.header().inode_lock);
  if (InodeEntry* e = find_locked(id.dev, id.ino, file_id)) {
    uint64_t generation = e->id.generation;
    e->id = id;
    e->id.generation = generation;
    e->confirmed_ns = 0;
  }
}

void InodeTable::update(uint64_t file_id, const FileIdentity& id) {
  SpinGuard guard(arena_.header().inode_lock);
  if (InodeEntry* e = find_locked(id.dev, id.ino, file_id)) {
    e->id = id;
    e->confirmed_ns = 0;
  }
}

}  // namespace upcache
