// A cursor over a caller's scattered buffers (the kernel's iov_iter, for the
// one direction upcache needs: copying cache pages out to user memory).
// Holds no ownership; no allocation; async-signal-safe.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstring>

namespace upcache {

class IovCursor {
 public:
  IovCursor(const iovec* iov, int count) : iov_(iov), count_(count) { skip_empty(); }

  // Copies n bytes from src to the current position and advances.
  // The caller guarantees n <= remaining().
  void copy_out(const char* src, uint64_t n) {
    while (n > 0) {
      uint64_t room = iov_[index_].iov_len - offset_;
      uint64_t chunk = n < room ? n : room;
      memcpy(static_cast<char*>(iov_[index_].iov_base) + offset_, src, chunk);
      src += chunk;
      n -= chunk;
      offset_ += chunk;
      if (offset_ == iov_[index_].iov_len) {
        ++index_;
        offset_ = 0;
        skip_empty();
      }
    }
  }

  static uint64_t total(const iovec* iov, int count) {
    uint64_t sum = 0;
    for (int i = 0; i < count; ++i) sum += iov[i].iov_len;
    return sum;
  }

 private:
  void skip_empty() {
    while (index_ < count_ && iov_[index_].iov_len == 0) ++index_;
  }

  const iovec* iov_;
  int count_;
  int index_ = 0;
  uint64_t offset_ = 0;
};

}  // namespace upcache
