#include "shim/splice_from_cache.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <atomic>
#include <new>

#include "core/cache.h"
#include "core/copy_guard.h"
#include "core/fd_reserve.h"
#include "core/iov_cursor.h"
#include "core/sys.h"
#include "shim/interpose.h"
#include "shim/kernel_offset.h"
#include "shim/real_calls.h"

namespace upcache::shim {
namespace {

constexpr uint64_t kPage = 4096;               // the kernel's PAGE_SIZE (pipe buffers)
constexpr uint64_t kBounceBytes = 1ull << 20;  // one splice moves at most this much here
constexpr int kSlots = 4;

struct Slot {
  std::atomic<uint32_t> busy{0};
  int r = -1;  // the private pipe (read, write end); -1: not made yet
  int w = -1;
  uint64_t pipe_bytes = 0;
  char* bounce = nullptr;  // kBounceBytes, private anonymous
};

Slot g_slots[kSlots];
std::atomic<int> g_devnull{-1};
std::atomic<bool> g_setup_lock{false};
alignas(FdReserve) unsigned char g_reserve_storage[sizeof(FdReserve)];
std::atomic<FdReserve*> g_reserve{nullptr};

FdReserve* reserve() {
  FdReserve* r = g_reserve.load(std::memory_order_acquire);
  if (r != nullptr) return r;
  r = new (g_reserve_storage) FdReserve();
  g_reserve.store(r, std::memory_order_release);
  return r;
}

void setup_lock() {
  while (g_setup_lock.exchange(true, std::memory_order_acquire)) sys::raw(SYS_sched_yield);
}
void setup_unlock() { g_setup_lock.store(false, std::memory_order_release); }

// Makes the slot's pipe and bounce buffer. Caller holds the slot.
bool make_slot(Slot& s) {
  if (s.r >= 0) return true;
  setup_lock();
  bool ok = false;
  do {
    FdReserve* res = reserve();
    if (g_devnull.load(std::memory_order_relaxed) < 0) {
      int n = res->adopt(sys::openat(AT_FDCWD, "/dev/null", O_WRONLY | O_CLOEXEC));
      if (n < 0) break;
      g_devnull.store(n, std::memory_order_release);
    }
    int p[2];
    if (sys::raw(SYS_pipe2, reinterpret_cast<long>(p), O_CLOEXEC) != 0) break;
    // As large as the bounce buffer (pipe-max-size is 1 MiB by default);
    // the per-user pipe limit may refuse: then what we got.
    sys::fcntl(p[1], F_SETPIPE_SZ, static_cast<long>(kBounceBytes));
    long size = sys::fcntl(p[1], F_GETPIPE_SZ);
    int r = res->adopt(p[0]);
    int w = res->adopt(p[1]);
    if (r < 0 || w < 0 || size <= 0) {
      if (r >= 0) res->release(r);
      if (w >= 0) res->release(w);
      break;
    }
    if (s.bounce == nullptr) {
      long m = sys::raw(SYS_mmap, 0, static_cast<long>(kBounceBytes), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m < 0 && m > -4096) {
        res->release(r);
        res->release(w);
        break;
      }
      s.bounce = reinterpret_cast<char*>(m);
    }
    s.pipe_bytes = static_cast<uint64_t>(size);
    s.w = w;
    s.r = r;
    ok = true;
  } while (false);
  setup_unlock();
  return ok;
}

Slot* claim() {
  for (Slot& s : g_slots) {
    uint32_t expected = 0;
    if (s.busy.load(std::memory_order_relaxed) == 0 &&
        s.busy.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
      if (make_slot(s)) return &s;
      s.busy.store(0, std::memory_order_release);
      return nullptr;
    }
  }
  return nullptr;
}

void release(Slot* s) { s->busy.store(0, std::memory_order_release); }

// Empties the private pipe of `left` bytes (buffers the program's pipe
// took references to, or that did not fit) and frees the slot's pipe for the
// next call.
// A private pipe in an unknown state (should not happen): closed; the slot
// makes a new one next time.
void discard(Slot* s) {
  FdReserve* res = reserve();
  res->release(s->r);
  res->release(s->w);
  s->r = s->w = -1;
}

void drain(Slot* s, uint64_t left) {
  while (left > 0) {
    long n = sys::raw(SYS_splice, s->r, 0, g_devnull.load(std::memory_order_relaxed), 0,
                      static_cast<long>(left), 0);
    if (n <= 0) {
      discard(s);
      return;
    }
    left -= static_cast<uint64_t>(n);
  }
}

// Writes n bytes into the (empty or page-filled) private pipe: one write, all
// of it (the pipe has room).
bool put(Slot* s, const char* p, uint64_t n) {
  while (n > 0) {
    long w = sys::raw(SYS_write, s->w, reinterpret_cast<long>(p), static_cast<long>(n));
    if (w <= 0) return false;
    p += w;
    n -= static_cast<uint64_t>(w);
  }
  return true;
}

bool guarded_load(const loff_t* p, loff_t* v) {
  iovec out{v, sizeof *v};
  IovCursor c(&out, 1);
  return guarded_copy_out(c, reinterpret_cast<const char*>(p), sizeof *v);
}
bool guarded_store(loff_t* p, loff_t v) {
  iovec out{p, sizeof *p};
  IovCursor c(&out, 1);
  return guarded_copy_out(c, reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

bool splice_owns_fd(int fd) {
  FdReserve* r = g_reserve.load(std::memory_order_acquire);
  return r != nullptr && r->owns(fd);
}

int splice_relocate_fd(int fd) {
  FdReserve* res = g_reserve.load(std::memory_order_acquire);
  if (res == nullptr || !res->owns(fd)) return -EBADF;
  // Hold every slot: then no call is using any of these descriptors.
  for (Slot& s : g_slots) {
    uint32_t expected = 0;
    while (!s.busy.compare_exchange_weak(expected, 1, std::memory_order_acquire)) {
      expected = 0;
      sys::raw(SYS_sched_yield);
    }
  }
  int moved = res->duplicate(fd);
  if (moved >= 0) {
    for (Slot& s : g_slots) {
      if (s.r == fd) s.r = moved;
      if (s.w == fd) s.w = moved;
    }
    if (g_devnull.load(std::memory_order_relaxed) == fd) g_devnull.store(moved, std::memory_order_release);
    res->forget(fd);  // still open: the program's dup2 replaces it
  }
  for (Slot& s : g_slots) s.busy.store(0, std::memory_order_release);
  return moved < 0 ? moved : 0;
}

void splice_after_fork_child() {
  FdReserve* res = g_reserve.load(std::memory_order_acquire);
  g_setup_lock.store(false, std::memory_order_relaxed);
  for (Slot& s : g_slots) {
    if (s.r >= 0 && res != nullptr) {
      res->release(s.r);
      res->release(s.w);
    }
    s.r = s.w = -1;
    s.busy.store(0, std::memory_order_relaxed);
  }
}

bool splice_from_cache(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags,
                       ssize_t* result) {
  if (len == 0 || off_out != nullptr || (flags & ~static_cast<unsigned>(SPLICE_F_MOVE | SPLICE_F_NONBLOCK |
                                                                         SPLICE_F_MORE | SPLICE_F_GIFT)))
    return false;
  if (!g_cache->config().splice_from_cache) return false;
  Scope scope;
  DescRef d(in);
  if (!d || reads_pass_through(d.get())) return false;

  // The program's pipe: its size (F_GETPIPE_SZ fails on anything but a pipe)
  // and the bytes it holds. Each byte held uses a slot of at most a page, so
  // at most this many slots are free (never fewer).
  long pipe_size = sys::fcntl(out, F_GETPIPE_SZ);
  if (pipe_size <= 0) return false;
  // The kernel's splice marks both pipe ends it is given as unable to honour
  // RWF_NOWAIT before it checks anything else (pipe_clear_nowait): a later
  // preadv2(RWF_NOWAIT) on the pipe fails with EOPNOTSUPP, not EAGAIN. The
  // calls served here never reach that code, so reach it: a splice of the
  // pipe onto itself does nothing else (EINVAL).
  {
    int saved = errno;
    real::splice(out, nullptr, out, nullptr, 1, SPLICE_F_NONBLOCK);
    errno = saved;
  }
  int held = 0;
  if (sys::ioctl(out, FIONREAD, &held) != 0 || held < 0) return false;
  uint64_t slots = static_cast<uint64_t>(pipe_size) / kPage;
  uint64_t used = (static_cast<uint64_t>(held) + kPage - 1) / kPage;
  if (used >= slots) return false;  // may be full: the kernel waits or answers
  uint64_t free_slots = slots - used;

  loff_t given = 0;
  if (off_in != nullptr && (!guarded_load(off_in, &given) || given < 0)) return false;

  int saved = errno;
  bool at_offset = off_in == nullptr;
  if (at_offset) d->pos_lock.lock();
  bool shared = d->shared.load(std::memory_order_acquire);
  uint64_t pos;
  if (!at_offset) {
    pos = static_cast<uint64_t>(given);
  } else if (shared) {
    int64_t p = sys::lseek(in, 0, SEEK_CUR);
    if (p < 0) {
      d->pos_lock.unlock();
      return false;
    }
    pos = static_cast<uint64_t>(p);
  } else {
    pos = d->offset.load(std::memory_order_relaxed);
  }
  auto give_back = [&] {
    if (at_offset) d->pos_lock.unlock();
    errno = saved;
    return false;
  };
  uint64_t want = len < kMaxRwCount ? len : kMaxRwCount;
  if (pos > static_cast<uint64_t>(INT64_MAX) - want) return give_back();  // the kernel's EINVAL
  uint64_t head = pos & (kPage - 1);
  uint64_t room = free_slots * kPage - head;  // free slots, one buffer per file page
  if (want > room) want = room;

  Slot* s = claim();
  if (s == nullptr) return give_back();
  uint64_t bounce_room = kBounceBytes < s->pipe_bytes ? kBounceBytes : s->pipe_bytes;
  if (want > bounce_room - head) {
    // A pipe larger than ours: the kernel would move more in one call.
    release(s);
    return give_back();
  }
  char* base = s->bounce;
  iovec v{base, want};
  int64_t got = serve_read(in, d.get(), pos, &v, 1, 0);
  if (got <= 0) {
    // End of file or an error: the kernel answers (EOF, EPIPE, EAGAIN... in
    // its own order).
    release(s);
    return give_back();
  }
  // Pipe buffers as the kernel's file splice makes them: one per file page.
  // write() fills fresh pages from the start of each call and merges a short
  // write into a last buffer that has room, so the head (up to the first
  // page boundary), the whole pages and the tail are written separately; a
  // tail that would merge into the head buffer goes in a second round.
  uint64_t n = static_cast<uint64_t>(got);
  uint64_t h1 = n < kPage - head ? n : kPage - head;
  uint64_t mid = (n - h1) & ~(kPage - 1);
  uint64_t tail = n - h1 - mid;
  bool defer_tail = mid == 0 && tail > 0 && h1 + tail <= kPage;
  uint64_t first = defer_tail ? h1 : n;
  long moved;
  if (!put(s, base, h1) || !put(s, base + h1, mid) || (!defer_tail && !put(s, base + h1 + mid, tail))) {
    discard(s);
    release(s);
    return give_back();
  }
  // tee, not splice: the program's pipe gets references to our buffers
  // without the "can merge" mark that write() gave them (page-cache buffers
  // do not have it either), so later writes to it fill slots as they would.
  moved = sys::raw(SYS_tee, s->r, out, static_cast<long>(first), static_cast<long>(flags));
  drain(s, first);
  if (moved == static_cast<long>(first) && defer_tail && s->r >= 0 && put(s, base + h1, tail)) {
    long more = sys::raw(SYS_tee, s->r, out, static_cast<long>(tail),
                         static_cast<long>(flags | SPLICE_F_NONBLOCK));
    drain(s, tail);
    if (more > 0) moved += more;
  }
  release(s);
  if (moved > 0) {
    uint64_t end = pos + static_cast<uint64_t>(moved);
    if (!at_offset) {
      if (!guarded_store(off_in, static_cast<loff_t>(end))) moved = -EFAULT;
    } else if (shared) {
      sys::lseek(in, static_cast<int64_t>(end), SEEK_SET);
    } else {
      d->offset.store(end, std::memory_order_relaxed);
      d->kernel_stale.store(true, std::memory_order_relaxed);
    }
  }
  if (at_offset) d->pos_lock.unlock();
  if (moved < 0) {
    errno = static_cast<int>(-moved);
    *result = -1;
  } else {
    errno = saved;
    *result = moved;
  }
  return true;
}

}  // namespace upcache::shim
