#include "core/fd_reserve.h"

#include <mimalloc.h>

#include "core/sys.h"

namespace upcache {
namespace {

constexpr uint64_t kLimitCap = 1u << 30;  // RLIM_INFINITY and anything beyond nr_open

bool read_limit(struct rlimit* lim) {
  return sys::prlimit(0, RLIMIT_NOFILE, nullptr, lim) == 0;
}

}  // namespace

FdReserve::FdReserve() {
  struct rlimit lim = {1024, 1024};
  if (!read_limit(&lim)) lim.rlim_cur = lim.rlim_max = 1024;
  init(lim.rlim_max);
}

FdReserve::FdReserve(uint64_t soft_limit) : fixed_soft_(soft_limit ? soft_limit : 1) {
  init(soft_limit);
}

FdReserve::~FdReserve() { mi_free(bits_); }

void FdReserve::init(uint64_t hard_limit) {
  if (hard_limit > static_cast<uint64_t>(kMaxFds)) hard_limit = kMaxFds;
  nbits_ = static_cast<int>((hard_limit + 63) / 64 * 64);
  // Zeroed pages straight from the allocator; only the words in use are touched.
  bits_ = static_cast<std::atomic<uint64_t>*>(mi_zalloc(static_cast<size_t>(nbits_) / 8 + 8));
  if (!bits_) nbits_ = 0;
}

int FdReserve::base_for_limit(uint64_t soft_limit) {
  if (soft_limit > kLimitCap) soft_limit = kLimitCap;
  uint64_t reserve = soft_limit / 16;
  if (reserve < 64) reserve = 64;
  if (reserve > kMaxReserve) reserve = kMaxReserve;
  int64_t base = static_cast<int64_t>(soft_limit) - static_cast<int64_t>(reserve);
  if (base < 100) base = 100;
  return static_cast<int>(base);
}

uint64_t FdReserve::soft_limit() const {
  if (fixed_soft_) return fixed_soft_;
  struct rlimit lim;
  if (!read_limit(&lim)) return 1024;
  return lim.rlim_cur > kLimitCap ? kLimitCap : lim.rlim_cur;
}

int FdReserve::base() const { return base_for_limit(soft_limit()); }

// A close-on-exec copy of `fd` in the reserved range, recorded as ours.
int FdReserve::copy_high(int fd) {
  uint64_t soft = soft_limit();
  int base = base_for_limit(soft);
  int high = static_cast<uint64_t>(base) < soft ? sys::fcntl(fd, F_DUPFD_CLOEXEC, base) : -EMFILE;
  if (high < 0) return high == -EINVAL ? -EMFILE : high;
  if (high >= nbits_ || static_cast<uint64_t>(high) >= soft) {
    // Beyond what we track (or the limit moved under us): not ours to use.
    sys::close(high);
    return -EMFILE;
  }
  bits_[high / 64].fetch_or(1ull << (high % 64), std::memory_order_acq_rel);
  return high;
}

int FdReserve::adopt(int fd) {
  if (fd < 0) return fd;
  int high = copy_high(fd);
  sys::close(fd);
  return high;
}

int FdReserve::duplicate(int fd) {
  if (!owns(fd)) return -EBADF;
  return copy_high(fd);
}

void FdReserve::forget(int fd) {
  if (fd < 0 || fd >= nbits_) return;
  bits_[fd / 64].fetch_and(~(1ull << (fd % 64)), std::memory_order_acq_rel);
}

void FdReserve::release(int fd) {
  if (fd < 0) return;
  // Forget first: once closed, the number may be the program's.
  forget(fd);
  sys::close(fd);
}

}  // namespace upcache
