// Calls that move bytes between descriptors in the kernel (sendfile,
// copy_file_range, splice), change a file's allocation (fallocate), or give
// advice about future reads (posix_fadvise, readahead).
//
// splice from a cached file into a pipe is served from the cache
// (shim/splice_from_cache.h) unless UPCACHE_SPLICE=kernel or the kernel must
// answer. The rest:
// sendfile, copy_file_range, splice: passed through to the kernel, exactly
// (its return value and errno are the program's), with the offsets right:
// the kernel's offset of every cached description involved is synced first
// (shim/kernel_offset.h), the call runs under their position locks, and our
// offsets are read back from the kernel afterwards. The bytes written to a
// file are dropped from the cache before the wrapper returns (the output
// range: [off_out, +n) when given, else the n bytes before the output's
// offset after the call; from the output's start to the end of the file when
// the call failed or came up short, see may_have_written_more in
// shim/coherence.h). Serving their input from the cache is left to a
// later measurement: the kernel's copy needs no user-space buffer.
//
// fallocate: the real call, then the range it changed is dropped (to the end
// of the file for COLLAPSE_RANGE and INSERT_RANGE, which move bytes).
//
// posix_fadvise, readahead: the real call first (its answer is the
// program's), then, when it succeeded on a cached description, the same
// advice acts on upcache's state: Cache::advise (NORMAL, SEQUENTIAL, RANDOM
// change the description's readahead window, WILLNEED prefetches, DONTNEED
// drops the range) and Cache::prefetch for readahead(2).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <utility>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/coherence.h"
#include "shim/interpose.h"
#include "shim/kernel_offset.h"
#include "shim/real_calls.h"
#include "shim/splice_from_cache.h"

namespace upcache::shim {
namespace {

// Bytes were written to [start, start + n) of the file open as `fd` (start
// < 0: somewhere unknown; n 0: up to the end of the file). `d` is fd's
// description when cached.
void written(int fd, Description* d, int64_t start, int64_t n, bool looked_at) {
  if (d != nullptr) {
    if (start >= 0) {
      g_cache->invalidate(d->file, static_cast<uint64_t>(start), static_cast<uint64_t>(n));
    } else {
      g_cache->invalidate(d->file, 0, 0);
    }
  } else if (looked_at && start >= 0) {
    g_cache->invalidate_fd(fd, static_cast<uint64_t>(start), static_cast<uint64_t>(n));
  }
}

// Runs `call`, which uses the file offsets of `in` and `out` (or the offsets
// it was given), with the kernel's offsets exact and ours updated after.
// `off_out` is the caller's output offset pointer (null: the file offset).
// `asked`: the length the call was given.
template <typename Call>
ssize_t offsets_passthrough(int in, int out, const loff_t* off_out, size_t asked, Call call) {
  if (!active()) return call();
  Scope scope;
  DescRef din(in);
  DescRef dout(out);
  Description* a = din.get();
  Description* b = dout.get();
  bool looked_out = dout.looked_at();
  if (a == nullptr && b == nullptr && !looked_out) {
    if (din.looked_at()) count_passthrough();
    return call();
  }
  count_passthrough();
  Description* locks[2] = {a, b == a ? nullptr : b};
  int fds[2] = {in, out};
  if (locks[0] != nullptr && locks[1] != nullptr && locks[0] > locks[1]) {
    std::swap(locks[0], locks[1]);
    std::swap(fds[0], fds[1]);
  }
  for (Description* d : locks)
    if (d != nullptr) d->pos_lock.lock();
  ssize_t r = -1;
  int err = 0;
  bool ok = true;
  for (int i = 0; i < 2 && ok; ++i) {
    Description* d = locks[i];
    if (d == nullptr || d->shared.load(std::memory_order_acquire)) continue;
    int e = sync_kernel_offset(fds[i], d);
    if (e < 0) {
      err = -e;
      ok = false;
    }
  }
  int64_t out_start = -1;
  if (ok) {
    if (off_out != nullptr) out_start = *off_out;
    r = call();
    err = errno;
    bool more = may_have_written_more(r, err, [&] { return static_cast<uint64_t>(asked); });
    ErrnoKeeper keep;
    for (int i = 0; i < 2; ++i) {
      Description* d = locks[i];
      if (d == nullptr || d->shared.load(std::memory_order_acquire)) continue;
      int64_t p = sys::lseek(fds[i], 0, SEEK_CUR);
      if (p >= 0) d->offset.store(static_cast<uint64_t>(p), std::memory_order_relaxed);
    }
    if ((r > 0 || more) && (b != nullptr || looked_out)) {
      if (off_out == nullptr) {
        // After a failure the offset has not moved.
        int64_t now = sys::lseek(out, 0, SEEK_CUR);
        out_start = r < 0 ? now : now >= r ? now - r : -1;
      }
      if (out_start >= 0 || b != nullptr) written(out, b, out_start, more ? 0 : r, looked_out);
    }
  }
  for (int i = 1; i >= 0; --i)
    if (locks[i] != nullptr) locks[i]->pos_lock.unlock();
  errno = err;
  return r;
}

ssize_t do_sendfile(int out, int in, off_t* off, size_t count) {
  return offsets_passthrough(in, out, nullptr, count,
                             [&] { return real::sendfile64(out, in, off, count); });
}

ssize_t do_copy_file_range(int in, loff_t* off_in, int out, loff_t* off_out, size_t len,
                           unsigned flags) {
  return offsets_passthrough(in, out, off_out, len, [&] {
    return real::copy_file_range(in, off_in, out, off_out, len, flags);
  });
}

ssize_t do_splice(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags) {
  ssize_t served;
  if (active() && splice_from_cache(in, off_in, out, off_out, len, flags, &served)) return served;
  return offsets_passthrough(in, out, off_out, len, [&] {
    return real::splice(in, off_in, out, off_out, len, flags);
  });
}

int do_fallocate(int fd, int mode, off_t off, off_t len) {
  int r = real::fallocate64(fd, mode, off, len);
  if (r != 0 || !active()) return r;
  Scope scope;
  ErrnoKeeper keep;
  DescRef d(fd);
  if (!d && !d.looked_at()) return r;
  bool moves = (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) != 0;
  uint64_t start = static_cast<uint64_t>(off);
  uint64_t n = moves ? 0 : static_cast<uint64_t>(len);
  if (d) {
    g_cache->invalidate(d->file, start, n);
  } else {
    g_cache->invalidate_fd(fd, start, n);
  }
  return r;
}

int do_fadvise(int fd, off_t off, off_t len, int advice) {
  int r = real::posix_fadvise64(fd, off, len, advice);
  if (r != 0 || !active()) return r;
  Scope scope;
  ErrnoKeeper keep;
  DescRef d(fd);
  if (!d) return r;
  uint64_t start = static_cast<uint64_t>(off);
  uint64_t n = static_cast<uint64_t>(len);
  if (d->ra_lock.try_lock()) {
    g_cache->advise(d->file, d->ra, start, n, advice);
    d->ra_lock.unlock();
  } else {
    RaState scratch = d->ra_initial;  // busy: the advice's page effects still apply
    g_cache->advise(d->file, scratch, start, n, advice);
  }
  return r;
}

ssize_t do_readahead(int fd, off64_t off, size_t count) {
  ssize_t r = real::readahead(fd, off, count);
  if (r != 0 || !active()) return r;
  Scope scope;
  ErrnoKeeper keep;
  DescRef d(fd);
  if (d && !reads_pass_through(d.get()) && count != 0) {
    g_cache->prefetch(d->file, static_cast<uint64_t>(off), count);
  }
  return r;
}

}  // namespace
}  // namespace upcache::shim

using namespace upcache::shim;

UPCACHE_EXPORT ssize_t sendfile(int out, int in, off_t* off, size_t count) {
  return do_sendfile(out, in, off, count);
}
UPCACHE_EXPORT ssize_t sendfile64(int out, int in, off_t* off, size_t count) {
  return do_sendfile(out, in, off, count);
}
UPCACHE_EXPORT ssize_t copy_file_range(int in, loff_t* off_in, int out, loff_t* off_out, size_t len,
                                       unsigned flags) {
  return do_copy_file_range(in, off_in, out, off_out, len, flags);
}
UPCACHE_EXPORT ssize_t splice(int in, loff_t* off_in, int out, loff_t* off_out, size_t len,
                              unsigned flags) {
  return do_splice(in, off_in, out, off_out, len, flags);
}
UPCACHE_EXPORT int fallocate(int fd, int mode, off_t off, off_t len) {
  return do_fallocate(fd, mode, off, len);
}
UPCACHE_EXPORT int fallocate64(int fd, int mode, off_t off, off_t len) {
  return do_fallocate(fd, mode, off, len);
}
UPCACHE_EXPORT int posix_fadvise(int fd, off_t off, off_t len, int advice) noexcept {
  return do_fadvise(fd, off, len, advice);
}
UPCACHE_EXPORT int posix_fadvise64(int fd, off_t off, off_t len, int advice) noexcept {
  return do_fadvise(fd, off, len, advice);
}
UPCACHE_EXPORT ssize_t readahead(int fd, off64_t off, size_t count) noexcept {
  return do_readahead(fd, off, count);
}
