// Coherence helpers for changes made through a descriptor or a path the
// cache does not serve (a write-only descriptor opened with O_TRUNC,
// truncate(path)): the cache drops the inode's pages under every file id it
// knows for it (this process's and the one shared with forked relatives).
//
// Cost: one fstat (or stat) of the changed file. Changes made through a
// cached description call Cache::invalidate on it directly.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace upcache::shim {

// Drops [offset, offset + len) (len 0: to the end) of the file open as `fd`
// from the cache, whoever cached them.
void invalidate_fd_everywhere(int fd, uint64_t offset, uint64_t len);
// The same for the file at `path`.
void invalidate_path_everywhere(const char* path, uint64_t offset, uint64_t len);

}  // namespace upcache::shim
