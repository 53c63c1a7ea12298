// Coherence: the write family and truncate.
//
// The real call runs first; if the descriptor is cached, the pages the call
// touched are dropped (Cache::invalidate) before the wrapper returns, under
// the position lock for the offset-using calls. The file offset follows the
// kernel's rules: the kernel's offset is synced before an offset-using write
// and ours is set from the result (for O_APPEND and RWF_APPEND, from the
// kernel's offset after the write: the start of an appending write is only
// known afterwards, so everything from it to the end is dropped).
//
// Writes through a descriptor the cache does not serve (write-only, or a
// file the cache refused) do not reach pages cached through another
// descriptor of the same file in this process; truncation does (ftruncate,
// truncate and O_TRUNC opens look for every cached description of the inode).
// Other processes' writes are seen at the next open (close-to-open).
//
// A write that failed or came up short may have changed more than it
// reported (may_have_written_more, shim/coherence.h): everything from where
// it began to the end of the file is dropped then.
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/coherence.h"
#include "shim/interpose.h"
#include "shim/kernel_offset.h"
#include "shim/real_calls.h"

namespace upcache::shim {
namespace {

// Whether writes through `d` go to the end of the file. Our mirror of the
// status flags is exact while no other process holds the description; once
// it is shared, a relative may have changed O_APPEND with F_SETFL, so the
// kernel is asked (one fcntl, on the write path only). A wrong answer here
// drops the wrong pages: the bytes written would be served stale.
bool appends(int fd, const Description* d) {
  if (d->shared.load(std::memory_order_acquire)) {
    int fl = sys::fcntl(fd, F_GETFL);
    if (fl >= 0) return (fl & O_APPEND) != 0;
  }
  return (d->status_flags.load(std::memory_order_relaxed) & O_APPEND) != 0;
}

// The bytes an iovec array asks to write (saturated: only compared with a
// result, which the kernel caps far below).
uint64_t iov_bytes(const iovec* iov, int cnt) {
  uint64_t n = 0;
  for (int i = 0; i < cnt && i < IOV_MAX; ++i) {
    n += iov[i].iov_len;
    if (n < iov[i].iov_len) return UINT64_MAX;
  }
  return n;
}

// write, writev, pwritev2(-1) on a cached description; `asked` as in
// may_have_written_more.
template <typename Call, typename Asked>
ssize_t offset_write(int fd, Description* d, bool append, Call call, Asked asked) {
  PosLockGuard lock(d);
  bool shared = d->shared.load(std::memory_order_acquire);
  int64_t pos = 0;
  if (!shared) {
    int e = sync_kernel_offset(fd, d);
    if (e < 0) {
      errno = -e;
      return -1;
    }
    pos = static_cast<int64_t>(d->offset.load(std::memory_order_relaxed));
  } else if (!append) {
    ErrnoKeeper keep;
    pos = sys::lseek(fd, 0, SEEK_CUR);
  }
  ssize_t r = call();
  bool more = may_have_written_more(r, errno, asked);
  if (r <= 0 && !more) return r;
  ErrnoKeeper keep;
  if (r < 0) {
    // The offset has not moved. An appending write began at an end of file
    // no longer known: drop it all.
    g_cache->invalidate(d->file, append || pos < 0 ? 0 : static_cast<uint64_t>(pos), 0);
    return r;
  }
  if (append) {
    int64_t end = sys::lseek(fd, 0, SEEK_CUR);
    if (end >= 0) {
      if (!shared) d->offset.store(static_cast<uint64_t>(end), std::memory_order_relaxed);
      g_cache->invalidate(d->file, static_cast<uint64_t>(end - r), 0);
    } else {
      g_cache->invalidate(d->file, 0, 0);
    }
  } else {
    if (!shared) d->offset.store(static_cast<uint64_t>(pos + r), std::memory_order_relaxed);
    if (pos >= 0) {
      g_cache->invalidate(d->file, static_cast<uint64_t>(pos), more ? 0 : static_cast<uint64_t>(r));
    } else {
      g_cache->invalidate(d->file, 0, 0);
    }
  }
  return r;
}

// pwrite, pwritev, pwritev2(off >= 0) on a cached description: the bytes
// went to `off`, or to the end of the file for O_APPEND / RWF_APPEND.
// `more`: may_have_written_more.
void positional_written(int fd, Description* d, off_t off, ssize_t r, bool append, bool more) {
  if (r <= 0 && !more) return;
  ErrnoKeeper keep;
  if (more) {
    // Where appended bytes began is not known once the size may hold more.
    g_cache->invalidate(d->file, append || off < 0 ? 0 : static_cast<uint64_t>(off), 0);
  } else if (append) {
    struct stat st {};
    uint64_t start = 0;
    if (sys::fstat(fd, &st) == 0 && st.st_size >= r) start = static_cast<uint64_t>(st.st_size - r);
    g_cache->invalidate(d->file, start, 0);
  } else {
    g_cache->invalidate(d->file, static_cast<uint64_t>(off), static_cast<uint64_t>(r));
  }
}

// A write through a descriptor opened through a wrapper but not served by the
// cache (write-only, O_DIRECT, refused): the pages of the same inode cached
// through other descriptors of this process are dropped (Cache::invalidate_fd,
// one fstat). `start` kAtEnd: an appending positional write; -1: the write used the file offset, which the kernel
// has moved past the bytes written (one lseek; a pipe or socket answers
// ESPIPE and nothing is cached for it). Descriptors the shim never saw
// opened (inherited, pipes, sockets) are left alone: no system call is added.
// `more`: may_have_written_more (then a failed write's offset has not moved).
constexpr int64_t kAtEnd = -2;

void uncached_written(int fd, const DescRef& d, int64_t start, ssize_t r, bool more) {
  if ((r <= 0 && !more) || !d.looked_at()) return;
  ErrnoKeeper keep;
  if (start == -1) {
    int64_t now = sys::lseek(fd, 0, SEEK_CUR);
    if (now < 0) return;  // a pipe, socket or tty: nothing cached
    if (r < 0) {
      // Failed: the offset has not moved, so the write began there, unless
      // it was appending, at an end of file no longer known.
      start = (sys::fcntl(fd, F_GETFL) & O_APPEND) != 0 ? kAtEnd : now;
    } else {
      if (now < r) return;
      start = now - r;
    }
  } else if (start >= 0 && (sys::fcntl(fd, F_GETFL) & O_APPEND) != 0) {
    start = kAtEnd;
  } else if (start < 0 && start != kAtEnd) {
    return;  // a negative offset: refused before any I/O
  }
  if (start == kAtEnd) {
    // pwrite on an O_APPEND descriptor, RWF_APPEND: the bytes went to the
    // end, which no longer tells where they began if more may have gone.
    if (more) {
      g_cache->invalidate_fd(fd, 0, 0);
      return;
    }
    struct stat st {};
    if (sys::fstat(fd, &st) != 0 || st.st_size < r) return;
    start = st.st_size - r;
  }
  g_cache->invalidate_fd(fd, static_cast<uint64_t>(start), more ? 0 : static_cast<uint64_t>(r));
}

// A write arriving while this thread is inside the shim (signal handler): the
// position lock may be held by this thread. If the kernel's offset is stale,
// write at our offset with pwrite and advance it; else the kernel's offset is
// right and the plain call does.
template <typename Plain, typename At, typename Asked>
ssize_t nested_write(int fd, Plain plain, At at, Asked asked) {
  if (!g_ready.load(std::memory_order_acquire) || !nested()) return plain();
  Scope scope;
  DescRef d(fd);
  if (!d || d->shared.load() || !d->kernel_stale.load() || appends(fd, d.get())) return plain();
  const uint64_t pos = d->offset.load(std::memory_order_relaxed);
  ssize_t r = at(static_cast<off_t>(pos));
  bool more = may_have_written_more(r, errno, asked);
  if (r > 0) {
    uint64_t expected = pos;
    d->offset.compare_exchange_strong(expected, pos + static_cast<uint64_t>(r));
  }
  if (r > 0 || more) {
    ErrnoKeeper keep;
    g_cache->invalidate(d->file, pos, more ? 0 : static_cast<uint64_t>(r));
  }
  return r;
}

ssize_t do_write(int fd, const void* buf, size_t n) {
  auto asked = [&] { return static_cast<uint64_t>(n); };
  if (!active()) {
    return nested_write(
        fd, [&] { return real::write(fd, buf, n); },
        [&](off_t at) { return real::pwrite64(fd, buf, n, at); }, asked);
  }
  Scope scope;
  DescRef d(fd);
  if (!d) {
    ssize_t r = real::write(fd, buf, n);
    uncached_written(fd, d, -1, r, may_have_written_more(r, errno, asked));
    return r;
  }
  return offset_write(fd, d.get(), appends(fd, d.get()), [&] { return real::write(fd, buf, n); }, asked);
}

ssize_t do_pwrite(int fd, const void* buf, size_t n, off_t off) {
  if (!active()) return real::pwrite64(fd, buf, n, off);
  Scope scope;
  DescRef d(fd);
  ssize_t r = real::pwrite64(fd, buf, n, off);
  bool more = may_have_written_more(r, errno, [&] { return static_cast<uint64_t>(n); });
  if (d) {
    positional_written(fd, d.get(), off, r, appends(fd, d.get()), more);
  } else {
    uncached_written(fd, d, off, r, more);
  }
  return r;
}

ssize_t do_writev(int fd, const iovec* iov, int cnt) {
  auto asked = [&] { return iov_bytes(iov, cnt); };
  if (!active()) {
    return nested_write(
        fd, [&] { return real::writev(fd, iov, cnt); },
        [&](off_t at) { return real::pwritev64(fd, iov, cnt, at); }, asked);
  }
  Scope scope;
  DescRef d(fd);
  if (!d) {
    ssize_t r = real::writev(fd, iov, cnt);
    uncached_written(fd, d, -1, r, may_have_written_more(r, errno, asked));
    return r;
  }
  return offset_write(fd, d.get(), appends(fd, d.get()), [&] { return real::writev(fd, iov, cnt); },
                      asked);
}

ssize_t do_pwritev2(int fd, const iovec* iov, int cnt, off_t off, int flags, bool v2) {
  auto call = [&] {
    return v2 ? real::pwritev64v2(fd, iov, cnt, off, flags) : real::pwritev64(fd, iov, cnt, off);
  };
  auto asked = [&] { return iov_bytes(iov, cnt); };
  if (!active()) {
    if (v2 && off == -1) {
      return nested_write(
          fd, call, [&](off_t at) { return real::pwritev64v2(fd, iov, cnt, at, flags); }, asked);
    }
    return call();
  }
  Scope scope;
  DescRef d(fd);
  if (!d) {
    ssize_t r = call();
    // RWF_APPEND, or a pwrite on an O_APPEND descriptor, wrote at the end.
    uncached_written(fd, d, v2 && off == -1 ? -1 : v2 && (flags & RWF_APPEND) ? kAtEnd : off, r,
                     may_have_written_more(r, errno, asked));
    return r;
  }
  bool append = appends(fd, d.get()) || (v2 && (flags & RWF_APPEND) != 0);
  if (v2 && off == -1) return offset_write(fd, d.get(), append, call, asked);
  ssize_t r = call();
  positional_written(fd, d.get(), off, r, append, may_have_written_more(r, errno, asked));
  return r;
}

int do_ftruncate(int fd, off_t len) {
  int r = real::ftruncate64(fd, len);
  if (r != 0 || !active()) return r;
  Scope scope;
  ErrnoKeeper keep;
  DescRef d(fd);
  if (d) {
    g_cache->invalidate(d->file, static_cast<uint64_t>(len), 0);
  } else {
    invalidate_fd_everywhere(fd, static_cast<uint64_t>(len), 0);
  }
  return r;
}

int do_truncate(const char* path, off_t len) {
  int r = real::truncate64(path, len);
  if (r != 0 || !active()) return r;
  Scope scope;
  ErrnoKeeper keep;
  invalidate_path_everywhere(path, static_cast<uint64_t>(len), 0);
  return r;
}

}  // namespace
}  // namespace upcache::shim

using namespace upcache::shim;

UPCACHE_EXPORT ssize_t write(int fd, const void* buf, size_t n) { return do_write(fd, buf, n); }
UPCACHE_EXPORT ssize_t __write(int fd, const void* buf, size_t n) { return do_write(fd, buf, n); }
UPCACHE_EXPORT ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  return do_pwrite(fd, buf, n, off);
}
UPCACHE_EXPORT ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  return do_pwrite(fd, buf, n, off);
}
UPCACHE_EXPORT ssize_t writev(int fd, const struct iovec* iov, int cnt) { return do_writev(fd, iov, cnt); }
UPCACHE_EXPORT ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_pwritev2(fd, iov, cnt, off, 0, false);
}
UPCACHE_EXPORT ssize_t pwritev64(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_pwritev2(fd, iov, cnt, off, 0, false);
}
UPCACHE_EXPORT ssize_t pwritev2(int fd, const struct iovec* iov, int cnt, off_t off, int flags) {
  return do_pwritev2(fd, iov, cnt, off, flags, true);
}
UPCACHE_EXPORT ssize_t pwritev64v2(int fd, const struct iovec* iov, int cnt, off_t off, int flags) {
  return do_pwritev2(fd, iov, cnt, off, flags, true);
}
UPCACHE_EXPORT int ftruncate(int fd, off_t len) noexcept { return do_ftruncate(fd, len); }
UPCACHE_EXPORT int ftruncate64(int fd, off_t len) noexcept { return do_ftruncate(fd, len); }
UPCACHE_EXPORT int truncate(const char* path, off_t len) noexcept { return do_truncate(path, len); }
UPCACHE_EXPORT int truncate64(const char* path, off_t len) noexcept { return do_truncate(path, len); }
