// Copying cache pages out to the program's buffers, surviving a bad buffer.
//
// The kernel answers a read into an unmapped or read-only buffer with EFAULT
// (or a short count); it never kills the program. upcache copies with
// memcpy, so a bad buffer faults in our copy. The copy runs with a guard
// armed on its thread; the process's SIGSEGV/SIGBUS handler (installed by
// the shim, which owns signal policy) calls copy_guard_recover(), which jumps
// back to the copy when the fault happened inside a guarded copy, and returns
// when it did not (the fault is not ours to handle).
//
// Thread safety: one guard per thread (initial-exec TLS). Async-signal-safe.
#pragma once

#include <cstdint>

#include "core/iov_cursor.h"

namespace upcache {

// Copies n bytes from src to `out` (see IovCursor::copy_out). Returns false,
// with the cursor's position undefined, if the copy faulted.
bool guarded_copy_out(IovCursor& out, const char* src, uint64_t n);

// From a SIGSEGV/SIGBUS handler: if this thread is inside a guarded copy,
// unblock `sig` and resume the copy's caller (does not return). Otherwise
// returns and the handler proceeds as it would have.
void copy_guard_recover(int sig);

// True while this thread is inside a guarded copy (for diagnostics).
bool copy_guard_armed();

}  // namespace upcache
