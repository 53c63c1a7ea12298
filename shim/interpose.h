// Shared helpers of the interposed functions (interpose_*.cc).
#pragma once

#include <fcntl.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "shim/adopt.h"
#include "shim/description.h"
#include "shim/fd_table.h"
#include "shim/runtime.h"

// Marks a function exported from libupcache.so under its C name. Everything
// else in the library is hidden (-fvisibility=hidden and exports.map).
#define UPCACHE_EXPORT extern "C" __attribute__((visibility("default")))

namespace upcache::shim {

// The kernel's MAX_RW_COUNT: one read or write moves at most this many bytes.
constexpr size_t kMaxRwCount = 0x7ffff000;
// The kernel's UIO_MAXIOV.
constexpr int kMaxIov = 1024;

// Returns -1 with errno = -negerr (a -errno value from core or sys::).
template <typename T = long>
inline T fail(long negerr) {
  errno = static_cast<int>(-negerr);
  return static_cast<T>(-1);
}

// A description reference held for the length of one call.
class DescRef {
 public:
  // A descriptor the shim never saw made (slot kNone) is adopted at its
  // first call at top level (shim/adopt.h).
  explicit DescRef(int fd) : d_(g_fds.acquire(fd, &seen_)) {
    if (__builtin_expect(seen_ == FdTable::kNone, 0) && t_depth == 1) d_ = adopt_unseen(fd, &seen_);
  }
  ~DescRef() {
    if (d_ != nullptr) d_->unref();
  }
  DescRef(const DescRef&) = delete;
  DescRef& operator=(const DescRef&) = delete;
  Description* get() const { return d_; }
  explicit operator bool() const { return d_ != nullptr; }
  Description* operator->() const { return d_; }
  // The descriptor was opened through a wrapper (cached or not): a
  // pass-through on it is counted.
  bool looked_at() const { return seen_ == FdTable::kPassthrough || d_ != nullptr; }

 private:
  uintptr_t seen_ = 0;
  Description* d_;
};

// Holds a description's position lock for a scope.
class PosLockGuard {
 public:
  explicit PosLockGuard(Description* d) : d_(d) { d_->pos_lock.lock(); }
  ~PosLockGuard() { d_->pos_lock.unlock(); }
  PosLockGuard(const PosLockGuard&) = delete;
  PosLockGuard& operator=(const PosLockGuard&) = delete;

 private:
  Description* d_;
};

// Reads are served by the kernel on this description (O_DIRECT turned on
// with fcntl: the program asked for direct I/O).
inline bool reads_pass_through(const Description* d) {
  return (d->status_flags.load(std::memory_order_relaxed) & O_DIRECT) != 0;
}

// Serves [pos, pos + len(iov)) of cached description `d` (descriptor `fd`)
// from the cache as pread would (interpose_read.cc): the kernel's status
// flags of a shared description are checked, a read the cache does not take
// goes to the kernel at the same position. Returns bytes or -errno. The
// caller holds a Scope and a reference on `d`; iov has been checked.
int64_t serve_read(int fd, Description* d, uint64_t pos, const struct iovec* iov, int cnt, unsigned flags);

}  // namespace upcache::shim
