#include "shim/coherence.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/fd_table.h"
#include "shim/runtime.h"

namespace upcache::shim {
namespace {

void invalidate_inode(dev_t dev, ino_t ino, uint64_t offset, uint64_t len) {
  constexpr int kSeen = 64;
  FileRef* seen[kSeen];
  int nseen = 0;
  g_fds.for_each([&](int fd, Description* d) {
    if (!d->try_ref()) return;
    FileRef* file = d->file;
    bool done = false;
    for (int i = 0; i < nseen && !done; ++i) done = seen[i] == file;
    struct stat st {};
    if (!done && sys::fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
      g_cache->invalidate(file, offset, len);
      if (nseen < kSeen) seen[nseen++] = file;
    }
    d->unref();
  });
}

}  // namespace

void invalidate_fd_everywhere(int fd, uint64_t offset, uint64_t len) {
  struct stat st {};
  if (sys::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  invalidate_inode(st.st_dev, st.st_ino, offset, len);
}

void invalidate_path_everywhere(const char* path, uint64_t offset, uint64_t len) {
  struct stat st {};
  long r = sys::raw(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>(path), reinterpret_cast<long>(&st), 0);
  if (r != 0 || !S_ISREG(st.st_mode)) return;
  invalidate_inode(st.st_dev, st.st_ino, offset, len);
}

}  // namespace upcache::shim
