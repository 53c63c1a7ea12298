// Coherence helpers for changes made through a descriptor or a path the
// cache does not serve (a write-only descriptor opened with O_TRUNC,
// truncate(path)): the cache drops the inode's pages under every file id it
// knows for it (this process's and the one shared with forked relatives).
//
// Cost: one fstat (or stat) of the changed file. Changes made through a
// cached description call Cache::invalidate on it directly.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstdint>

namespace upcache::shim {

// Drops [offset, offset + len) (len 0: to the end) of the file open as `fd`
// from the cache, whoever cached them.
void invalidate_fd_everywhere(int fd, uint64_t offset, uint64_t len);
// The same for the file at `path`.
void invalidate_path_everywhere(const char* path, uint64_t offset, uint64_t len);

// Whether a call that writes into a file, returned `r` (errno `err` when r <
// 0) and was asked for `asked()` bytes, may have changed bytes past the r it
// reports: then everything from where it began to the end of the file is
// dropped. Why: ext4's direct I/O writes the part of an O_DIRECT write that
// lies over existing blocks, then rejects an unaligned rest past the end of
// file and reports only EINVAL (a copy done in chunks reports only the chunks
// before). Only EBADF (not open for writing) surely wrote nothing. `asked`
// is called only when r > 0: a failed call's iovec array may be bad.
template <typename Asked>
bool may_have_written_more(ssize_t r, int err, Asked asked) {
  if (r < 0) return err != EBADF;
  return r > 0 && static_cast<uint64_t>(r) < asked();
}

}  // namespace upcache::shim
