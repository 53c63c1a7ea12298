#include "shim/coherence.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/fd_table.h"
#include "shim/runtime.h"

namespace upcache::shim {

// The cache drops the pages of every file id of the inode (this process's
// and the one shared with forked relatives): no need to find descriptions.
void invalidate_fd_everywhere(int fd, uint64_t offset, uint64_t len) {
  struct stat st {};
  if (sys::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  g_cache->invalidate_inode(st, offset, len);
}

void invalidate_path_everywhere(const char* path, uint64_t offset, uint64_t len) {
  struct stat st {};
  long r = sys::raw(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>(path), reinterpret_cast<long>(&st), 0);
  if (r != 0 || !S_ISREG(st.st_mode)) return;
  g_cache->invalidate_inode(st, offset, len);
}

}  // namespace upcache::shim
