// Shared memory on transparent huge pages, where the system gives shared
// memory only 4 KiB pages.
//
// Why: the arena is shared memory (forked workers share one cache), and the
// kernel backs shared memory with 4 KiB pages unless the administrator turned
// on shmem THP (/sys/kernel/mm/transparent_hugepage/shmem_enabled, "never" by
// default). Then every random hit of a large cache walks the page tables,
// while the kernel's own page cache is read through its huge-page direct map.
// A tmpfs mounted with huge=always gets 2 MiB pages whatever that knob says.
//
// How: a short-lived helper (a clone sharing our memory and descriptor table,
// every signal blocked, no SIGCHLD) enters a new mount namespace (and a new
// user namespace when it is not privileged), creates a tmpfs with the new
// mount API and never attaches it anywhere (fsmount), and opens an unnamed
// file there (O_TMPFILE). The namespaces die with the helper; the file lives
// as long as a descriptor or a mapping holds it. Nothing is visible to the
// program or to the system: no mount, no path, no child to reap.
//
// Contract: huge_shmem_open returns a descriptor (close-on-exec) of a file of
// exactly `bytes` bytes on such a tmpfs, or -errno when the system refuses
// (no user namespaces, seccomp, an old kernel); the caller then maps ordinary
// shared memory. The kernel still falls back to 4 KiB pages where it has no
// free 2 MiB page. Safe to call from several threads and from a fork
// handler (system calls only, no libc, no allocation); not async-signal-safe
// (it blocks signals for a moment and waits). Writes nothing to errno.
#pragma once

#include <cstdint>

namespace upcache {

int huge_shmem_open(uint64_t bytes);

// Bytes of the mapping that contains `addr` that are mapped by 2 MiB page
// table entries (ShmemPmdMapped in /proc/self/smaps), or -errno. For tests
// and the log; it reads a /proc file, so it is slow.
int64_t huge_shmem_pmd_bytes(const void* addr);

}  // namespace upcache
