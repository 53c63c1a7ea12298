// Copying cache pages out to the program's buffers, surviving a bad buffer.
//
// The kernel answers a read into an unmapped or read-only buffer with EFAULT
// (or a short count); it never kills the program. upcache copies with
// memcpy, so a bad buffer faults in our copy. The copy runs with a guard
// armed on its thread; the process's SIGSEGV/SIGBUS handler (installed by
// the shim, which owns signal policy) calls copy_guard_recover(), which jumps
// back to the copy when the fault happened inside a guarded copy, and returns
// when it did not (the fault is not ours to handle). The hit fast path uses
// guarded_copy() instead, which needs no setjmp: the handler calls
// copy_guard_fixup() first.
//
// Thread safety: one guard per thread (initial-exec TLS). Async-signal-safe.
#pragma once

#include <cstdint>

#include "core/iov_cursor.h"

namespace upcache {

// Copies n bytes from src to `out` (see IovCursor::copy_out). Returns false,
// with the cursor's position undefined, if the copy faulted.
bool guarded_copy_out(IovCursor& out, const char* src, uint64_t n);

// Copies n bytes from src to dst; false if the copy faulted (how much was
// copied is then undefined). For the hit fast path: no sigsetjmp per call.
// The copy's stores to dst lie in one known range of code; a fault there is
// turned by copy_guard_fixup() into a return of false, as the kernel's
// exception tables turn a fault in copy_to_user into -EFAULT.
extern "C" bool upcache_guarded_movsb(void* dst, const void* src, uint64_t n);  // copy_guard.cc
inline bool guarded_copy(void* dst, const void* src, uint64_t n) { return upcache_guarded_movsb(dst, src, n); }

// From a SIGSEGV/SIGBUS handler, with its ucontext: if the fault happened in
// guarded_copy()'s copy, points the interrupted context at its failure exit
// and returns true (the handler then returns, which resumes there).
// Otherwise returns false and changes nothing.
bool copy_guard_fixup(void* ucontext);

// From a SIGSEGV/SIGBUS handler: if this thread is inside a guarded copy,
// unblock `sig` and resume the copy's caller (does not return). Otherwise
// returns and the handler proceeds as it would have.
void copy_guard_recover(int sig);

// True while this thread is inside a guarded copy (for diagnostics).
bool copy_guard_armed();

}  // namespace upcache
