#include "shim/fd_table.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "core/sys.h"

namespace upcache::shim {

FdTable g_fds;

namespace {

void* map_zeroed(size_t bytes) {
  long p = sys::raw(SYS_mmap, 0, static_cast<long>(bytes), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p < 0 && p > -4096) return nullptr;
  return reinterpret_cast<void*>(p);
}

// /proc/sys/fs/nr_open: the largest RLIMIT_NOFILE anyone may set.
uint64_t nr_open() {
  int fd = sys::openat(AT_FDCWD, "/proc/sys/fs/nr_open", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32];
  int64_t n = sys::read(fd, buf, sizeof buf - 1);
  sys::close(fd);
  uint64_t v = 0;
  for (int64_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) v = v * 10 + (buf[i] - '0');
  return v;
}

}  // namespace

bool FdTable::init() {
  if (top_.load(std::memory_order_acquire) != nullptr) return true;
  struct rlimit64 lim {};
  uint64_t cap = 1 << 20;
  if (sys::raw(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&lim)) == 0) {
    cap = lim.rlim_max;
  }
  uint64_t nr = nr_open();
  if (nr > cap || cap == RLIM64_INFINITY) cap = nr != 0 ? nr : 1 << 20;
  if (cap < kChunkSlots) cap = kChunkSlots;
  if (cap > (1ull << 30)) cap = 1ull << 30;
  size_t chunks = (cap + kChunkSlots - 1) / kChunkSlots;
  size_t bytes = sizeof(Top) + chunks * sizeof(std::atomic<Chunk*>);
  auto* top = static_cast<Top*>(map_zeroed(bytes));
  if (top == nullptr) return false;
  top->capacity = cap;
  top->chunk_count = chunks;
  Top* expected = nullptr;
  if (!top_.compare_exchange_strong(expected, top, std::memory_order_acq_rel)) {
    sys::raw(SYS_munmap, reinterpret_cast<long>(top), static_cast<long>(bytes));
  }
  return true;
}

int FdTable::capacity() const {
  const Top* top = top_.load(std::memory_order_acquire);
  return top == nullptr ? 0 : static_cast<int>(top->capacity);
}

FdTable::Chunk* FdTable::chunk_for(int fd) {
  if (!init()) return nullptr;
  Top* top = top_.load(std::memory_order_acquire);
  if (fd < 0 || static_cast<size_t>(fd) >= top->capacity) return nullptr;
  std::atomic<Chunk*>& slot = top->chunks[fd >> kChunkBits];
  Chunk* c = slot.load(std::memory_order_acquire);
  if (c != nullptr) return c;
  auto* fresh = static_cast<Chunk*>(map_zeroed(sizeof(Chunk)));
  if (fresh == nullptr) return nullptr;
  if (slot.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) return fresh;
  sys::raw(SYS_munmap, reinterpret_cast<long>(fresh), sizeof(Chunk));
  return c;
}

Description* FdTable::acquire(int fd, uintptr_t* seen) const {
  for (;;) {
    uintptr_t v = peek(fd);
    *seen = v;
    if (!is_description(v)) return nullptr;
    Description* d = as_description(v);
    // A count of 0 means the slot changed under us (while in the slot, the
    // description holds the slot's reference): look again.
    if (!d->try_ref()) continue;
    if (peek(fd) == v) return d;
    d->unref();  // recycled for another descriptor meanwhile
  }
}

void FdTable::set(int fd, uintptr_t value) {
  Chunk* c = chunk_for(fd);
  if (c == nullptr) {
    if (is_description(value)) as_description(value)->unref();
    return;
  }
  uintptr_t old = c->slots[fd & (kChunkSlots - 1)].exchange(value, std::memory_order_acq_rel);
  if (is_description(old)) as_description(old)->unref();
}

bool FdTable::set_if_none(int fd, uintptr_t value) {
  Chunk* c = chunk_for(fd);
  if (c == nullptr) return false;
  uintptr_t expected = kNone;
  return c->slots[fd & (kChunkSlots - 1)].compare_exchange_strong(expected, value, std::memory_order_acq_rel);
}

bool FdTable::clear_if(int fd, uintptr_t value) {
  Chunk* c = chunk_for(fd);
  if (c == nullptr) return false;
  uintptr_t expected = value;
  return c->slots[fd & (kChunkSlots - 1)].compare_exchange_strong(expected, kNone, std::memory_order_acq_rel);
}

uintptr_t FdTable::take(int fd) {
  const Top* top = top_.load(std::memory_order_acquire);
  if (top == nullptr || fd < 0 || static_cast<size_t>(fd) >= top->capacity) return kNone;
  Chunk* c = top->chunks[fd >> kChunkBits].load(std::memory_order_acquire);
  if (c == nullptr) return kNone;
  return c->slots[fd & (kChunkSlots - 1)].exchange(kNone, std::memory_order_acq_rel);
}

}  // namespace upcache::shim
