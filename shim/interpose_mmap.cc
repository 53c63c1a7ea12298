// mmap, mmap64, munmap, mremap, mprotect: kept only to know which files the
// program maps shared (shim/mappings.h). Each calls the kernel first; its
// return value and errno are the program's. The shim's bookkeeping follows a
// successful call:
//   mmap   MAP_SHARED / MAP_SHARED_VALIDATE of a regular file: recorded
//          (writable when PROT_WRITE), which stops the cache from serving
//          the inode while a writable one lives; any mmap replaces what the
//          table had at its address (MAP_FIXED).
//   munmap, mremap, mprotect (adding PROT_WRITE): the table follows.
// A private or anonymous mmap with an empty table costs one flag test; a
// munmap/mremap/mprotect with an empty table one relaxed load.
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "core/sys.h"
#include "shim/interpose.h"
#include "shim/mappings.h"
#include "shim/real_calls.h"

namespace upcache::shim {
namespace {

void* do_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  void* r = real::mmap64(addr, len, prot, flags, fd, off);
  if (r == MAP_FAILED || !active()) return r;
  int type = flags & MAP_TYPE;
  bool shared_file = (type == MAP_SHARED || type == MAP_SHARED_VALIDATE) && !(flags & MAP_ANONYMOUS) && fd >= 0;
  if (!shared_file && !mappings_any()) return r;
  Scope scope;
  ErrnoKeeper keep;
  struct stat st;
  bool file = shared_file && sys::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  mappings_mapped(reinterpret_cast<uintptr_t>(r), len, file ? &st : nullptr, (prot & PROT_WRITE) != 0);
  return r;
}

}  // namespace
}  // namespace upcache::shim

using namespace upcache::shim;

UPCACHE_EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) noexcept {
  return do_mmap(addr, len, prot, flags, fd, off);
}
UPCACHE_EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off) noexcept {
  return do_mmap(addr, len, prot, flags, fd, off);
}

UPCACHE_EXPORT int munmap(void* addr, size_t len) noexcept {
  int r = real::munmap(addr, len);
  if (r == 0 && active() && mappings_any()) {
    Scope scope;
    ErrnoKeeper keep;
    mappings_unmapped(reinterpret_cast<uintptr_t>(addr), len);
  }
  return r;
}

UPCACHE_EXPORT void* mremap(void* old, size_t old_len, size_t new_len, int flags, ...) noexcept {
  void* new_addr = nullptr;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    new_addr = va_arg(ap, void*);
    va_end(ap);
  }
  void* r = real::mremap(old, old_len, new_len, flags, new_addr);
  if (r != MAP_FAILED && active() && mappings_any()) {
    Scope scope;
    ErrnoKeeper keep;
    bool keep_old = (flags & MREMAP_DONTUNMAP) != 0 || old_len == 0;
    mappings_moved(reinterpret_cast<uintptr_t>(old), old_len, reinterpret_cast<uintptr_t>(r), new_len,
                   keep_old);
  }
  return r;
}

UPCACHE_EXPORT int mprotect(void* addr, size_t len, int prot) noexcept {
  int r = real::mprotect(addr, len, prot);
  if (r == 0 && (prot & PROT_WRITE) && active() && mappings_any()) {
    Scope scope;
    ErrnoKeeper keep;
    mappings_protected(reinterpret_cast<uintptr_t>(addr), len, prot);
  }
  return r;
}
