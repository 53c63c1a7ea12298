// The inode table: (st_dev, st_ino) -> file id, with what identifies the
// file's contents at the time its pages were read (generation, size, mtime,
// ctime).
//
// A file id is never reused (64-bit counter in the arena header). attach()
// validates at every open: if the identity or any of those attributes
// changed, the file gets a new id, so a recycled inode number or a file
// rewritten behind our back never returns old pages (they are simply never
// looked up again and age out of the clock).
//
// Lives in the arena, shared across fork; one short pid-owned spin lock
// (open path only, never the read path).
#pragma once

#include <atomic>
#include <cstdint>

namespace upcache {

class Arena;

struct FileIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t generation = 0;  // i_generation where the filesystem gives one, else 0
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

struct InodeEntry {
  FileIdentity id;
  uint64_t file_id;  // 0: free slot
  uint64_t last_use; // for replacement when the table is full
  // CLOCK_REALTIME when `id` was last known to describe every page cached
  // under file_id (a new id, or confirm() under a lease); 0: never (pages
  // may be stale, confirm() fails).
  int64_t confirmed_ns;
};

class InodeTable {
 public:
  explicit InodeTable(Arena& arena) : arena_(arena) {}

  // Returns the file id to use for a file that currently looks like `id`:
  // the recorded one if nothing changed, a new one otherwise.
  uint64_t validate(const FileIdentity& id);

  // The file id currently recorded for (dev, ino) and the size recorded with
  // it; false if the inode is not in the table.
  bool lookup(uint64_t dev, uint64_t ino, uint64_t* file_id, uint64_t* size);

  // Under a read lease (nobody writes the file now), `id` is the file as it
  // is. True when every page cached under `file_id` may be trusted: the
  // entry was confirmed with these same attributes (generation aside), and
  // not racily — its ctime more than `racy_ns` before the confirmation, so
  // that a later change within the same timestamp tick could not have kept
  // the ctime unchanged (git's "racily clean" rule). Records `id` as
  // confirmed now either way; on false the caller drops the inode's pages.
  bool confirm(uint64_t file_id, const FileIdentity& id, int64_t now_ns, int64_t racy_ns);

  // The program itself changed the file (write, truncate): record the new
  // attributes so the next open keeps the pages the change left valid. The
  // entry is no longer confirmed (the change may have raced another
  // process's, and no lease watched it).
  void update(uint64_t file_id, const FileIdentity& id);
  // The same, keeping the recorded generation (the caller could not read it).
  void update_attributes(uint64_t file_id, const FileIdentity& id);

 private:
  InodeEntry* find_locked(uint64_t dev, uint64_t ino, uint64_t file_id);

  Arena& arena_;
};

}  // namespace upcache
