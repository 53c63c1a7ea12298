// The program's shared mappings of regular files (contract point 3: a file
// mapped shared and writable is not served from the cache while the mapping
// lives).
//
// A table of this process's MAP_SHARED file mappings: address range, inode
// (st_dev, st_ino) and whether it is writable. The wrappers of mmap, munmap,
// mremap and mprotect (interpose_mmap.cc) keep it in step with the kernel
// after each successful call; the cache is told through
// Cache::mapped_writable / unmapped_writable / count_writable, which count
// the writable ones per inode in the arena (so forked relatives stop serving
// the inode too) and drop the inode's cached pages at map and unmap time.
// Each writable entry holds exactly one count.
//
// Precision: a munmap that cuts an entry in two splits it (the second piece
// is counted again); a partial mprotect that adds PROT_WRITE marks the whole
// entry writable; when the table is full a new writable mapping is counted
// but not recorded, so its inode stays uncached until the process ends.
// Every approximation errs toward passing reads through, never toward
// serving stale bytes.
//
// Process events: a forked child inherits the mappings (counted again in the
// child), exec and exit end them (uncounted; a failed exec counts them back).
//
// Threads: one process-private lock around the table, taken only by the
// wrappers (never on the read path). Not async-signal-safe (neither is mmap);
// calls nested inside the shim are not tracked.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>

namespace upcache::shim {

// True when the table holds anything (one relaxed load): munmap, mremap and
// mprotect skip the table otherwise.
bool mappings_any();

// A successful mmap of `len` bytes at `addr`: drops whatever the table had
// in that range (MAP_FIXED replaces mappings), then records a MAP_SHARED
// mapping of the regular file `st` (`st` null: not a shared file mapping).
void mappings_mapped(uintptr_t addr, size_t len, const struct stat* st, bool writable);

// A successful munmap of [addr, addr + len).
void mappings_unmapped(uintptr_t addr, size_t len);

// A successful mremap: [old, old + old_len) now lives at
// [addr, addr + new_len); `keep_old`: MREMAP_DONTUNMAP or old_len 0.
void mappings_moved(uintptr_t old, size_t old_len, uintptr_t addr, size_t new_len, bool keep_old);

// A successful mprotect of [addr, addr + len) to `prot`.
void mappings_protected(uintptr_t addr, size_t len, int prot);

// fork (the lock is held across it), exec and exit.
void mappings_fork_prepare();
void mappings_fork_parent();
void mappings_fork_child();
void mappings_before_exec();
void mappings_exec_failed();
void mappings_at_exit();

}  // namespace upcache::shim
