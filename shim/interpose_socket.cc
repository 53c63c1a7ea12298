// Descriptors passed to another process over a Unix socket (SCM_RIGHTS):
// the receiver shares the open file description, and with it the offset, so
// the kernel's offset of every cached description being sent is made exact
// first, and the description is marked shared from then on (reads take their
// position from the kernel, see kernel_offset.h).
#include <sys/socket.h>

#include "shim/interpose.h"
#include "shim/kernel_offset.h"
#include "shim/real_calls.h"

namespace upcache::shim {
namespace {

void share_passed_descriptors(const msghdr* msg) {
  if (msg == nullptr || msg->msg_control == nullptr || msg->msg_controllen < sizeof(cmsghdr)) return;
  // CMSG_NXTHDR takes a non-const header; it only reads it.
  msghdr* m = const_cast<msghdr*>(msg);
  for (cmsghdr* c = CMSG_FIRSTHDR(m); c != nullptr; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      __builtin_memcpy(&fd, data + i * sizeof(int), sizeof fd);
      DescRef d(fd);
      if (!d) continue;
      PosLockGuard lock(d.get());
      if (!d->shared.load(std::memory_order_acquire)) sync_kernel_offset(fd, d.get());
      d->shared.store(true, std::memory_order_release);
    }
  }
}

}  // namespace
}  // namespace upcache::shim

using namespace upcache::shim;

UPCACHE_EXPORT ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  if (active()) {
    Scope scope;
    ErrnoKeeper keep;
    share_passed_descriptors(msg);
  }
  return real::sendmsg(fd, msg, flags);
}

UPCACHE_EXPORT int sendmmsg(int fd, struct mmsghdr* vec, unsigned int vlen, int flags) {
  if (active() && vec != nullptr) {
    Scope scope;
    ErrnoKeeper keep;
    for (unsigned int i = 0; i < vlen; ++i) share_passed_descriptors(&vec[i].msg_hdr);
  }
  return real::sendmmsg(fd, vec, vlen, flags);
}
