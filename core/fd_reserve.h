// The backend's descriptors, kept out of the program's way.
//
// The kernel hands out the lowest free descriptor number, so a descriptor the
// backend kept at a low number would shift every number the program gets
// afterwards. The backend therefore moves each of its descriptors to the top
// of the program's range: fcntl(F_DUPFD_CLOEXEC, base), then closes the
// original, so the program's next open() gets the number it would get without
// upcache.
//
// base = soft RLIMIT_NOFILE minus a reserve of soft/16 descriptors, clamped to
// [64, 4096], and never below 100. With the usual soft limit of 1024 that is
// descriptors 960..1023 (a program needs 960 open files before it could meet
// one of ours); with a large limit the reserve grows so that many files can
// be cached at once. The limit is read at every adopt(), so a program that
// raises its limit (as the JVM does at start) gets our later descriptors
// moved up with it. When the range is full, adopt() fails and the caller
// passes the file through rather than use a low number.
//
// owns() is lock-free: a bitmap over descriptors below the hard limit
// (at most kMaxFds). adopt/release are thread-safe; owns() is
// async-signal-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace upcache {

class FdReserve {
 public:
  static constexpr int kMaxReserve = 4096;
  static constexpr int kMaxFds = 1 << 20;  // the kernel's default nr_open

  // Follows RLIMIT_NOFILE as it changes.
  FdReserve();
  // A fixed soft limit (tests).
  explicit FdReserve(uint64_t soft_limit);
  ~FdReserve();
  FdReserve(const FdReserve&) = delete;
  FdReserve& operator=(const FdReserve&) = delete;

  // The base for a given soft limit.
  static int base_for_limit(uint64_t soft_limit);
  // The base adopt() would use now.
  int base() const;

  // Moves `fd` to a number in the range (close-on-exec) and closes `fd`.
  // Returns the new descriptor, or -errno (then `fd` is closed too).
  int adopt(int fd);
  // A second descriptor for what `fd` (one of ours) refers to, at another
  // number in the range (close-on-exec); `fd` stays open and ours. Returns
  // the new descriptor or -errno. (Moving ours away from a number the
  // program names in dup2.)
  int duplicate(int fd);
  // Forgets and closes a descriptor returned by adopt().
  void release(int fd);
  // Forgets without closing (a descriptor closed by someone else).
  void forget(int fd);

  bool owns(int fd) const {
    if (fd < 0 || fd >= nbits_) return false;
    return (bits_[fd / 64].load(std::memory_order_acquire) >> (fd % 64)) & 1;
  }

 private:
  void init(uint64_t hard_limit);
  uint64_t soft_limit() const;
  int copy_high(int fd);  // adopt() without closing `fd`

  uint64_t fixed_soft_ = 0;  // 0: read the limit each time
  int nbits_ = 0;
  std::atomic<uint64_t>* bits_ = nullptr;  // nbits_ / 64 words, mimalloc
};

}  // namespace upcache
