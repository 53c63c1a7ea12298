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
// A fault at one of the copy's stores to dst is turned by copy_guard_fixup()
// into a return of false, as the kernel's exception tables turn a fault in
// copy_to_user into -EFAULT.
//
// Copies of 32 to 64 bytes (small sequential reads, the commonest hit) are
// inline: four overlapping 16-byte moves, whose stores are listed in the
// section upcache_extable with the place to resume at when one faults, as
// the kernel lists the instructions of copy_to_user (exception tables). Other
// sizes call upcache_guarded_movsb (copy_guard.cc), whose stores lie in one
// range of code.
extern "C" bool upcache_guarded_movsb(void* dst, const void* src, uint64_t n);  // copy_guard.cc

// An exception-table entry: a store that may fault and where to resume, each
// as an offset from the field itself (no relocation at load time).
struct CopyExtableEntry {
  int32_t insn;
  int32_t fixup;
};

__attribute__((always_inline)) inline bool guarded_copy(void* dst, const void* src, uint64_t n) {
#if defined(__x86_64__)
  if (n - 32 <= 32) {
    asm goto(
        "movdqu (%[s]), %%xmm0\n\t"
        "movdqu 16(%[s]), %%xmm1\n\t"
        "movdqu -32(%[s],%[n]), %%xmm2\n\t"
        "movdqu -16(%[s],%[n]), %%xmm3\n"
        "1:\tmovdqu %%xmm0, (%[d])\n"
        "2:\tmovdqu %%xmm1, 16(%[d])\n"
        "3:\tmovdqu %%xmm2, -32(%[d],%[n])\n"
        "4:\tmovdqu %%xmm3, -16(%[d],%[n])\n\t"
        ".pushsection upcache_extable, \"a\"\n\t"
        ".balign 4\n\t"
        ".long 1b - ., %l[fault] - .\n\t"
        ".long 2b - ., %l[fault] - .\n\t"
        ".long 3b - ., %l[fault] - .\n\t"
        ".long 4b - ., %l[fault] - .\n\t"
        ".popsection"
        :
        : [d] "r"(dst), [s] "r"(src), [n] "r"(n)
        : "xmm0", "xmm1", "xmm2", "xmm3", "memory"
        : fault);
    return true;
  fault:
    return false;
  }
#endif
  return upcache_guarded_movsb(dst, src, n);
}

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
