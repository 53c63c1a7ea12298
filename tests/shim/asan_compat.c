/* Sanitizer builds only: preloaded before the ASan runtime into programs that
 * are not instrumented. glibc's aligned_alloc accepts a size that is not a
 * multiple of the alignment (dd relies on it); ASan's interceptor aborts on
 * it. This forwards aligned_alloc to memalign, which ASan accepts, so the
 * shim tests exercise upcache rather than ASan's C11 strictness. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

void* aligned_alloc(size_t alignment, size_t size) {
  static void* (*real_memalign)(size_t, size_t);
  if (!real_memalign) real_memalign = (void* (*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  return real_memalign(alignment, size);
}
