#include "shim/adopt.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/description.h"
#include "shim/fd_table.h"
#include "shim/log.h"
#include "shim/runtime.h"
#include "shim/splice_from_cache.h"

namespace upcache::shim {

Description* adopt_unseen(int fd, uintptr_t* seen) {
  if (fd < 0 || g_cache == nullptr || g_cache->owns_fd(fd) || log::owns_fd(fd) || splice_owns_fd(fd))
    return nullptr;
  ErrnoKeeper keep;
  struct stat st;
  if (sys::fstat(fd, &st) != 0) return nullptr;  // not open: nothing to remember
  // Not a file the cache could serve: as before adoption (no system call
  // added to its reads and writes; an inherited output file is not made
  // coherent, see adopt.h).
  uintptr_t value = FdTable::kUnseen;
  Description* d = nullptr;
  if (S_ISREG(st.st_mode)) {
    int fl = sys::fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_ACCMODE) != O_WRONLY && (fl & (O_DIRECT | O_PATH)) == 0) {
      if (FileRef* f = g_cache->attach(fd, nullptr, fl)) {
        d = description_new(f, g_cache->new_ra_state(), fl);
        if (d == nullptr) g_cache->release(f);
      }
    }
  }
  if (d != nullptr) {
    d->shared.store(true, std::memory_order_release);
    value = reinterpret_cast<uintptr_t>(d);
    d->ref();  // the caller's; the table takes the first
  }
  if (!g_fds.set_if_none(fd, value)) {
    // Another thread classified (or opened) it first: use what it set.
    if (d != nullptr) {
      d->unref();
      d->unref();
    }
    return g_fds.acquire(fd, seen);
  }
  struct stat again;
  if (sys::fstat(fd, &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
    // Closed (and perhaps reused) meanwhile: forget what we set.
    uintptr_t old = value;
    if (g_fds.clear_if(fd, old) && d != nullptr) d->unref();
    if (d != nullptr) d->unref();
    *seen = FdTable::kNone;
    return nullptr;
  }
  *seen = value;
  return d;
}

}  // namespace upcache::shim
