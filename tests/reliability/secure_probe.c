// upcache_secure_probe: loads libupcache.so and reports where it put things.
//
// A setuid program cannot be given LD_PRELOAD with a path (the dynamic
// loader ignores it in secure-execution mode), so this probe dlopen()s the
// library itself: its constructor then runs with AT_SECURE set exactly as it
// would in a preloaded privileged program.
//
// usage: upcache_secure_probe LIB STATS_DIR
// Prints "secure=0|1", then "segments=N": the number of upcache segments in
// STATS_DIR while the library is loaded.
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  printf("secure=%lu\n", getauxval(AT_SECURE));
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (h == NULL) {
    printf("dlopen failed: %s\n", dlerror());
    return 1;
  }
  int n = 0;
  DIR* d = opendir(argv[2]);
  if (d != NULL) {
    struct dirent* e;
    while ((e = readdir(d)) != NULL)
      if (strncmp(e->d_name, "upcache.", 8) == 0) ++n;
    closedir(d);
  }
  printf("segments=%d\n", n);
  return 0;
}
