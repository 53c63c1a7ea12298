// Coherence helpers for changes made through a descriptor or a path the
// cache does not serve (a write-only descriptor opened with O_TRUNC,
// truncate(path)): every cached description of the same inode in this
// process gets its pages dropped.
//
// Cost: one fstat of the changed file plus one per cached descriptor; used
// only for the rare calls above. Changes made through a cached description
// call Cache::invalidate on it directly.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace upcache::shim {

// Drops [offset, offset + len) (len 0: to the end) of the file open as `fd`
// from every cached description of that file.
void invalidate_fd_everywhere(int fd, uint64_t offset, uint64_t len);
// The same for the file at `path`.
void invalidate_path_everywhere(const char* path, uint64_t offset, uint64_t len);

}  // namespace upcache::shim
