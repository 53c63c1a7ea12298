// The read family and lseek.
//
// A call on a descriptor the fd table does not hold as cached goes to the real
// function after one table lookup. On a cached description:
//   read, readv, preadv2(offset -1)  take the position lock and read at the
//       description's offset (private mode) or at the kernel's (shared mode,
//       see kernel_offset.h);
//   pread, preadv, preadv2(offset >= 0)  read at the given offset without the
//       position lock;
//   lseek  SEEK_SET/SEEK_CUR within the range every filesystem accepts are
//       answered from the description without a system call; the rest goes to
//       the kernel after the kernel's offset was synced.
// Errors are the kernel's, checked in the kernel's order where the cache
// decides them (EINVAL for a negative offset or a bad iovcnt or length,
// EFAULT for a buffer range outside user space, counts clamped to
// MAX_RW_COUNT); the cache returns -errno for the rest.
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <climits>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/callers.h"
#include "shim/hazard.h"
#include "shim/interpose.h"
#include "shim/kernel_offset.h"
#include "shim/real_calls.h"
#include "shim/signals.h"

extern "C" [[noreturn]] void __chk_fail(void);

namespace upcache::shim {
namespace {

// The range [base, base + len) lies below the lowest user-space limit of
// x86-64 (TASK_SIZE_MAX with 4-level paging). A range that does not is
// handed to the kernel, whose access_ok() decides (EFAULT, or fine with
// 5-level paging): the shim never guesses the limit.
inline bool user_range_ok(const void* base, size_t len) {
  constexpr uint64_t kUserMax = (1ull << 47) - 4096;
  uint64_t start = reinterpret_cast<uint64_t>(base);
  uint64_t end = start + len;
  return end >= start && end <= kUserMax;
}

inline int64_t from_libc(ssize_t r) { return r < 0 ? -errno : r; }

// The kernel's read at `pos`, with RWF_NOWAIT if the program asked for it;
// counted as passed through; errno left as it was. Returns bytes or -errno.
int64_t kernel_read_at(int fd, uint64_t pos, const iovec* iov, int cnt, unsigned flags) {
  count_passthrough();
  int saved = errno;
  int64_t r = from_libc((flags & kReadNoWait)
                            ? real::preadv64v2(fd, iov, cnt, static_cast<off_t>(pos), RWF_NOWAIT)
                            : real::preadv64(fd, iov, cnt, static_cast<off_t>(pos)));
  errno = saved;
  return r;
}

// Serves [pos, pos + len(iov)) of `d` from the cache. The readahead state is
// serialized by ra_lock; a caller that finds it busy (concurrent preads on one
// description) reads with a fresh state instead of waiting.
// The cache answers -ENOBUFS when it does not serve the read (no frame to be
// had, or the file is mapped shared and writable: shim/mappings.h), -EFAULT
// when the buffer faulted before any byte was copied: the kernel serves that
// read, at the same position (with RWF_NOWAIT if the program asked for it).
int64_t serve(int fd, Description* d, uint64_t pos, const iovec* iov, int cnt, unsigned flags) {
  // A description shared with another process may have had its status flags
  // changed there (fcntl(F_SETFL, O_DIRECT) in a child): ask the kernel. Shared
  // descriptions already pay system calls for their offset; private ones
  // cannot change behind our back.
  if (d->shared.load(std::memory_order_acquire)) {
    int fl = static_cast<int>(sys::fcntl(fd, F_GETFL));
    if (fl < 0) return fl;  // closed meanwhile (EBADF): the kernel's answer
    // RWF_NOWAIT included: tmpfs refuses it on a direct description.
    if (fl & O_DIRECT) return kernel_read_at(fd, pos, iov, cnt, flags);
  }
  // rw_verify_area(): pos + count must not overflow loff_t.
  uint64_t total = 0;
  for (int i = 0; i < cnt; ++i) total += iov[i].iov_len;
  if (pos > static_cast<uint64_t>(INT64_MAX) - total) return -EINVAL;
  if (flags & kReadNoWait) {
    // Not every filesystem takes RWF_NOWAIT (tmpfs: EOPNOTSUPP): ask the
    // kernel with a one-byte probe, whose answer is exact for that.
    char probe;
    iovec v{&probe, 1};
    int saved = errno;
    ssize_t p = real::preadv64v2(fd, &v, 1, 0, RWF_NOWAIT);
    int e = errno;
    errno = saved;
    if (p < 0 && e == EOPNOTSUPP) return -EOPNOTSUPP;
  }
  int64_t r;
  if (d->ra_lock.try_lock()) {
    r = g_cache->read(d->file, d->ra, pos, iov, cnt, flags);
    d->ra_lock.unlock();
  } else {
    RaState scratch = d->ra_initial;
    r = g_cache->read(d->file, scratch, pos, iov, cnt, flags);
  }
  // -EFAULT: the program's buffer faulted in the cache's copy (shim/signals.h
  // recovers it). The kernel then gives the exact answer: EFAULT, or the count
  // up to the bad byte where the bad part begins inside the first cache page
  // (a fault after whole cache pages were copied returns those pages' count).
  if (__builtin_expect(r == -ENOBUFS || r == -EFAULT, 0)) return kernel_read_at(fd, pos, iov, cnt, flags);
  callers_after_read(r);
  return r;
}

// The cache's hit fast path (Cache::read_hit) for one buffer on a private
// description: no readahead lock, no pin. 0: not served, call serve().
// (A shared description first asks the kernel for its status flags, and
// RWF_NOWAIT asks the kernel whether the filesystem takes it: serve() does.)
inline int64_t try_hit(Description* d, uint64_t pos, void* buf, size_t n) {
  int64_t r = g_cache->read_hit(d->file, d->ra, pos, buf, n);
  if (r > 0) callers_after_read(r);
  return r;
}

// A read that uses the file offset but goes to the kernel (O_DIRECT on, or
// flags the cache does not take): the kernel's offset is synced first and
// ours follows the kernel's afterwards. Caller holds the position lock.
template <typename Pass>
int64_t offset_read_passthrough(int fd, Description* d, Pass pass) {
  count_passthrough();
  bool shared = d->shared.load(std::memory_order_acquire);
  if (!shared) {
    int e = sync_kernel_offset(fd, d);
    if (e < 0) return e;
  }
  int64_t r = from_libc(pass());
  if (r > 0 && !shared) d->offset.fetch_add(static_cast<uint64_t>(r), std::memory_order_relaxed);
  return r;
}

// read()'s hit fast path: a private description whose next bytes lie in one
// cached page. Under the position lock, serves them with Cache::read_hit and
// moves the offset; 0 when it does not serve them (the caller takes
// offset_read). No system call, and errno untouched: a hit costs no
// save and restore of errno (a libc call each).
__attribute__((always_inline)) inline int64_t offset_read_hit(Description* d, void* buf, size_t n) {
  PosLockGuard lock(d);
  if (d->shared.load(std::memory_order_acquire)) return 0;
  uint64_t pos = d->offset.load(std::memory_order_relaxed);
  // The description's cursor first (the page its last read() hit), then
  // the hit path, which refills the cursor; both under the position lock.
  int64_t r = g_cache->read_cursor(d->cursor, d->ra, pos, buf, n);
  if (r == 0) r = g_cache->read_hit(d->file, d->ra, pos, buf, n, &d->cursor);
  if (r > 0) {
    callers_after_read(r);
    d->offset.store(pos + static_cast<uint64_t>(r), std::memory_order_relaxed);
    d->kernel_stale.store(true, std::memory_order_relaxed);
  }
  return r;
}

// read, readv, preadv2(-1) on a cached description. `hit_tried`: the
// caller tried offset_read_hit already.
int64_t offset_read(int fd, Description* d, const iovec* iov, int cnt, unsigned flags,
                    bool hit_tried = false) {
  PosLockGuard lock(d);
  bool shared = d->shared.load(std::memory_order_acquire);
  uint64_t pos;
  if (shared) {
    int64_t p = sys::lseek(fd, 0, SEEK_CUR);
    if (p < 0) return p;
    pos = static_cast<uint64_t>(p);
  } else {
    pos = d->offset.load(std::memory_order_relaxed);
  }
  int64_t r = 0;
  if (!shared && cnt == 1 && flags == 0 && !hit_tried) r = try_hit(d, pos, iov[0].iov_base, iov[0].iov_len);
  if (r == 0) r = serve(fd, d, pos, iov, cnt, flags);
  if (r > 0) {
    if (shared) {
      sys::lseek(fd, static_cast<int64_t>(pos + r), SEEK_SET);
    } else {
      d->offset.store(pos + static_cast<uint64_t>(r), std::memory_order_relaxed);
      d->kernel_stale.store(true, std::memory_order_relaxed);
    }
  }
  return r;
}

// A read() arriving while this thread is already inside the shim (a signal
// handler): it must not wait for the position lock this thread may hold, and
// the kernel's offset may be stale. A private cached description is read with
// pread at its offset, which then advances; anything else goes to the kernel.
ssize_t nested_read(int fd, void* buf, size_t n) {
  if (!g_ready.load(std::memory_order_acquire) || !nested()) return real::read(fd, buf, n);
  Scope scope;
  DescRef d(fd);
  if (!d || d->shared.load(std::memory_order_acquire) || !d->kernel_stale.load()) {
    return real::read(fd, buf, n);
  }
  uint64_t pos = d->offset.load(std::memory_order_relaxed);
  ssize_t r = real::pread64(fd, buf, n, static_cast<off_t>(pos));
  if (r > 0) d->offset.compare_exchange_strong(pos, pos + static_cast<uint64_t>(r));
  return r;
}

inline ssize_t finish(int64_t r, int saved_errno) {
  if (r < 0) {
    errno = static_cast<int>(-r);
    return -1;
  }
  errno = saved_errno;
  return static_cast<ssize_t>(r);
}

// read()'s hit path, with the general path (do_read) out of line so that
// the compiler keeps it short (the general path's registers and spills stay
// out of it): a private cached description whose next bytes are a hit (the
// description's cursor, else Cache::read_hit). `v`: g_fds.peek(fd), just
// seen. Returns the bytes served; 0 when it tried and did not serve;
// kNotTried when it did not try. Nothing else changed in either case.
constexpr int64_t kNotTried = -1;
__attribute__((always_inline)) inline int64_t read_hit_path(int fd, void* buf, size_t n, uintptr_t v) {
  if (!FdTable::is_description(v) || n == 0 || !user_range_ok(buf, n)) return kNotTried;
  if (__builtin_expect(signals::g_crash_on_read, 0)) return kNotTried;  // tests: do_read crashes
  Scope scope;
  if (!hazard_try_enter(fd, v)) return kNotTried;
  Description* d = FdTable::as_description(v);
  int64_t r = kNotTried;
  if (!reads_pass_through(d)) r = offset_read_hit(d, buf, n < kMaxRwCount ? n : kMaxRwCount);
  hazard_leave();
  return r;
}

// read() when read_hit_path did not serve it (`hit_tried`: it tried).
__attribute__((noinline)) ssize_t do_read(int fd, void* buf, size_t n, bool hit_tried) {
  if (!active()) return nested_read(fd, buf, n);
  // A descriptor adopted as nothing to do (a pipe, a socket, a terminal):
  // straight to the kernel, before any bookkeeping; pass-through costs this
  // one lookup. (A descriptor never seen, kNone, takes the long way once:
  // its first call adopts it, shim/adopt.h.)
  const uintptr_t seen = g_fds.peek(fd);
  if (seen == FdTable::kUnseen) return real::read(fd, buf, n);
  Scope scope;
  HazardRef d(fd, seen);
  if (!d) {
    if (d.looked_at()) count_passthrough();
    return real::read(fd, buf, n);
  }
  if (__builtin_expect(signals::g_crash_on_read, 0)) signals::test_crash();  // tests only
  const bool cached = user_range_ok(buf, n) && !reads_pass_through(d.get());
  const size_t len = n < kMaxRwCount ? n : kMaxRwCount;
  if (cached && n != 0 && !hit_tried) {
    int64_t hit = offset_read_hit(d.get(), buf, len);
    if (hit > 0) return hit;
  }
  int saved = errno;
  int64_t r;
  if (!cached) {
    PosLockGuard lock(d.get());
    r = offset_read_passthrough(fd, d.get(), [&] { return real::read(fd, buf, n); });
  } else if (n == 0) {
    r = 0;
  } else {
    iovec v{buf, len};
    r = offset_read(fd, d.get(), &v, 1, 0, /*hit_tried=*/true);
  }
  return finish(r, saved);
}

// A descriptor that may be cached: the hit path, then the general path.
__attribute__((noinline)) ssize_t read_maybe_cached(int fd, void* buf, size_t n, uintptr_t v) {
  const int64_t r = read_hit_path(fd, buf, n, v);
  if (r > 0) return r;
  return do_read(fd, buf, n, r == 0);
}

// read(): a descriptor adopted as nothing to do (a pipe, a socket, a
// terminal) goes straight to the kernel after one lookup, with no frame of
// its own to set up.
inline ssize_t do_read(int fd, void* buf, size_t n) {
  if (!active()) return nested_read(fd, buf, n);
  const uintptr_t v = g_fds.peek(fd);
  if (v == FdTable::kUnseen) return real::read(fd, buf, n);
  return read_maybe_cached(fd, buf, n, v);
}

ssize_t do_pread(int fd, void* buf, size_t n, off_t off) {
  if (!active()) return real::pread64(fd, buf, n, off);
  if (g_fds.peek(fd) == FdTable::kUnseen) return real::pread64(fd, buf, n, off);  // as in do_read
  Scope scope;
  HazardRef d(fd);
  if (!d) {
    if (d.looked_at()) count_passthrough();
    return real::pread64(fd, buf, n, off);
  }
  int saved = errno;
  int64_t r;
  if (off < 0) {
    r = -EINVAL;
  } else if (!user_range_ok(buf, n) || reads_pass_through(d.get())) {
    count_passthrough();
    r = from_libc(real::pread64(fd, buf, n, off));
  } else if (n == 0) {
    r = 0;
  } else {
    iovec v{buf, n < kMaxRwCount ? n : kMaxRwCount};
    r = 0;
    if (!d->shared.load(std::memory_order_acquire)) r = try_hit(d.get(), static_cast<uint64_t>(off), buf, v.iov_len);
    if (r == 0) r = serve(fd, d.get(), static_cast<uint64_t>(off), &v, 1, 0);
  }
  return finish(r, saved);
}

// Checks an iovec array as import_iovec does. Returns the number of segments
// to use (the array may be replaced by `clamped`, whose total is cut to
// MAX_RW_COUNT) or -errno.
constexpr int kIovToKernel = -100000;  // let the kernel check this array

int check_iov(const iovec* iov, int cnt, const iovec** use, iovec* clamped) {
  if (cnt < 0 || cnt > kMaxIov) return -EINVAL;
  *use = iov;
  size_t total = 0;
  bool clamp = false;
  for (int i = 0; i < cnt; ++i) {
    size_t len = iov[i].iov_len;
    if (static_cast<ssize_t>(len) < 0) return -EINVAL;
    if (!user_range_ok(iov[i].iov_base, len)) return kIovToKernel;
    if (len > kMaxRwCount - total) {
      len = kMaxRwCount - total;
      clamp = true;
    }
    total += len;
  }
  if (!clamp) return cnt;
  total = 0;
  for (int i = 0; i < cnt; ++i) {
    size_t len = iov[i].iov_len;
    if (len > kMaxRwCount - total) len = kMaxRwCount - total;
    clamped[i] = iovec{iov[i].iov_base, len};
    total += len;
  }
  *use = clamped;
  return cnt;
}

bool iov_empty(const iovec* iov, int cnt) {
  for (int i = 0; i < cnt; ++i)
    if (iov[i].iov_len != 0) return false;
  return true;
}

ssize_t do_readv(int fd, const iovec* iov, int cnt) {
  if (!active()) return real::readv(fd, iov, cnt);
  Scope scope;
  HazardRef d(fd);
  if (!d) {
    if (d.looked_at()) count_passthrough();
    return real::readv(fd, iov, cnt);
  }
  int saved = errno;
  iovec clamped[kMaxIov];
  const iovec* use = nullptr;
  int64_t r = check_iov(iov, cnt, &use, clamped);
  if (r >= 0 || r == kIovToKernel) {
    if (r == kIovToKernel || reads_pass_through(d.get())) {
      PosLockGuard lock(d.get());
      r = offset_read_passthrough(fd, d.get(), [&] { return real::readv(fd, iov, cnt); });
    } else if (iov_empty(use, cnt)) {
      r = 0;
    } else {
      r = offset_read(fd, d.get(), use, cnt, 0);
    }
  }
  return finish(r, saved);
}

// preadv2's flags the cache handles itself; anything else (write-only flags,
// unknown bits) goes to the kernel, which gives the exact answer.
constexpr int kCachedRwFlags = RWF_HIPRI | RWF_NOWAIT;

ssize_t do_preadv2(int fd, const iovec* iov, int cnt, off_t off, int flags, bool v2) {
  auto pass = [&] {
    return v2 ? real::preadv64v2(fd, iov, cnt, off, flags) : real::preadv64(fd, iov, cnt, off);
  };
  if (!active()) return pass();
  Scope scope;
  HazardRef d(fd);
  if (!d) {
    if (d.looked_at()) count_passthrough();
    return pass();
  }
  int saved = errno;
  bool at_offset = v2 && off == -1;
  int64_t r;
  if (off < 0 && !at_offset) {
    r = -EINVAL;
  } else if ((flags & ~kCachedRwFlags) != 0 || reads_pass_through(d.get())) {
    if (at_offset) {
      PosLockGuard lock(d.get());
      r = offset_read_passthrough(fd, d.get(), pass);
    } else {
      count_passthrough();
      r = from_libc(pass());
    }
  } else {
    iovec clamped[kMaxIov];
    const iovec* use = nullptr;
    r = check_iov(iov, cnt, &use, clamped);
    unsigned rflags = (flags & RWF_NOWAIT) ? static_cast<unsigned>(kReadNoWait) : 0u;
    if (r == kIovToKernel) {
      if (at_offset) {
        PosLockGuard lock(d.get());
        r = offset_read_passthrough(fd, d.get(), pass);
      } else {
        count_passthrough();
        r = from_libc(pass());
      }
    } else if (r < 0) {
    } else if (iov_empty(use, cnt)) {
      r = 0;
    } else if (at_offset) {
      r = offset_read(fd, d.get(), use, cnt, rflags);
    } else {
      r = serve(fd, d.get(), static_cast<uint64_t>(off), use, cnt, rflags);
    }
  }
  return finish(r, saved);
}

off_t do_lseek(int fd, off_t off, int whence) {
  if (!active()) return real::lseek64(fd, off, whence);
  Scope scope;
  HazardRef d(fd);
  if (!d) {
    if (d.looked_at()) count_passthrough();
    return real::lseek64(fd, off, whence);
  }
  if (d->shared.load(std::memory_order_acquire)) {
    count_passthrough();
    return real::lseek64(fd, off, whence);
  }
  PosLockGuard lock(d.get());
  uint64_t cur = d->offset.load(std::memory_order_relaxed);
  int64_t target = -1;
  if (whence == SEEK_SET) {
    target = off;
  } else if (whence == SEEK_CUR) {
    if (__builtin_add_overflow(static_cast<int64_t>(cur), static_cast<int64_t>(off), &target)) target = -1;
  }
  if (target >= 0 && static_cast<uint64_t>(target) <= d->seek_ok_max.load(std::memory_order_relaxed)) {
    if (static_cast<uint64_t>(target) != cur) {
      d->offset.store(static_cast<uint64_t>(target), std::memory_order_relaxed);
      d->kernel_stale.store(true, std::memory_order_relaxed);
    }
    return target;
  }
  // The kernel decides: SEEK_END/DATA/HOLE, negative or very large targets.
  int saved = errno;
  int e = sync_kernel_offset(fd, d.get());
  if (e < 0) {
    errno = -e;
    return -1;
  }
  errno = saved;
  off_t r = real::lseek64(fd, off, whence);
  if (r >= 0) {
    d->offset.store(static_cast<uint64_t>(r), std::memory_order_relaxed);
    if ((whence == SEEK_SET || whence == SEEK_CUR) &&
        static_cast<uint64_t>(r) > d->seek_ok_max.load(std::memory_order_relaxed)) {
      d->seek_ok_max.store(static_cast<uint64_t>(r), std::memory_order_relaxed);
    }
  }
  return r;
}

}  // namespace

int64_t serve_read(int fd, Description* d, uint64_t pos, const iovec* iov, int cnt, unsigned flags) {
  return serve(fd, d, pos, iov, cnt, flags);
}

}  // namespace upcache::shim

using namespace upcache::shim;

UPCACHE_EXPORT ssize_t read(int fd, void* buf, size_t n) { return do_read(fd, buf, n); }
UPCACHE_EXPORT ssize_t __read(int fd, void* buf, size_t n) { return do_read(fd, buf, n); }
UPCACHE_EXPORT ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __chk_fail();
  return do_read(fd, buf, n);
}

UPCACHE_EXPORT ssize_t pread(int fd, void* buf, size_t n, off_t off) { return do_pread(fd, buf, n, off); }
UPCACHE_EXPORT ssize_t pread64(int fd, void* buf, size_t n, off_t off) { return do_pread(fd, buf, n, off); }
UPCACHE_EXPORT ssize_t __pread_chk(int fd, void* buf, size_t n, off_t off, size_t buflen) {
  if (n > buflen) __chk_fail();
  return do_pread(fd, buf, n, off);
}
UPCACHE_EXPORT ssize_t __pread64_chk(int fd, void* buf, size_t n, off_t off, size_t buflen) {
  if (n > buflen) __chk_fail();
  return do_pread(fd, buf, n, off);
}

UPCACHE_EXPORT ssize_t readv(int fd, const struct iovec* iov, int cnt) { return do_readv(fd, iov, cnt); }
UPCACHE_EXPORT ssize_t preadv(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_preadv2(fd, iov, cnt, off, 0, false);
}
UPCACHE_EXPORT ssize_t preadv64(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_preadv2(fd, iov, cnt, off, 0, false);
}
UPCACHE_EXPORT ssize_t preadv2(int fd, const struct iovec* iov, int cnt, off_t off, int flags) {
  return do_preadv2(fd, iov, cnt, off, flags, true);
}
UPCACHE_EXPORT ssize_t preadv64v2(int fd, const struct iovec* iov, int cnt, off_t off, int flags) {
  return do_preadv2(fd, iov, cnt, off, flags, true);
}

UPCACHE_EXPORT off_t lseek(int fd, off_t off, int whence) noexcept { return do_lseek(fd, off, whence); }
UPCACHE_EXPORT off_t lseek64(int fd, off_t off, int whence) noexcept { return do_lseek(fd, off, whence); }
