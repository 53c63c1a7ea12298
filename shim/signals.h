// The shim's SIGSEGV/SIGBUS handler, chained to the program's, and crash
// diagnostics.
//
// Why the shim has a handler at all: core copies cached pages into the
// program's buffer with a guard (core/copy_guard.h). A bad buffer faults in
// that copy; the handler calls copy_guard_recover(), which jumps back so the
// read returns EFAULT (or the bytes before the bad page), as the kernel does.
//
// Chaining (DESIGN, contract points 1 and 6): the program must see its own
// dispositions as if upcache were not there.
//  - install() records the disposition in place (SIG_DFL, or SIG_IGN
//    inherited over exec, or another library's handler) as the program's,
//    then puts the shim's handler in the kernel.
//  - sigaction, __sigaction, signal, bsd_signal, ssignal, sysv_signal,
//    __sysv_signal and sigset on SIGSEGV/SIGBUS are interposed: a change is
//    recorded (normalized as glibc and the kernel would: SA_RESTORER and
//    glibc's restorer added, unknown flag bits cleared when the kernel clears
//    them, SIGKILL/SIGSTOP out of the mask) and the shim's handler is
//    re-installed with the program's mask and SA_ONSTACK/SA_RESTART/SA_NODEFER,
//    so the kernel blocks and restarts exactly as for the program's handler;
//    a query returns the recorded view. Other signals pass straight through.
//  - A fault that is not a guarded copy is delivered to the recorded
//    disposition: a handler is called with the same (sig, info, ucontext)
//    (SA_RESETHAND honoured by resetting the record to SIG_DFL first); SIG_DFL,
//    or SIG_IGN for a fault the kernel raised, restores the default action
//    and returns, so the faulting instruction faults again and the process
//    dies of the same signal with the same core; a SIGSEGV/SIGBUS sent with
//    kill() on SIG_DFL is re-sent to the thread, on SIG_IGN dropped.
//
// Crash diagnostics (issue 4 item 5): a fault that is not a guarded copy and
// whose PC lies in libupcache.so's text prints, once, to the log
// (shim/log.h): "upcache: fatal signal N (NAME) at PC in libupcache.so ...",
// the shim's state and a libunwind backtrace from the faulting frame; then
// the fault is chained as above.
//
// Not covered: raw rt_sigaction system calls (not interposable), siginterrupt
// on SIGSEGV/SIGBUS, and a fault in a guarded copy while the program blocks
// SIGSEGV/SIGBUS (the kernel then kills the process as it would for any
// blocked synchronous fault; plain, the read would have returned EFAULT).
//
// Sanitizer builds (UPCACHE_SANITIZE): ASan's own SIGSEGV handler, set
// before our constructor, is the recorded disposition; ASan reports a fault
// outside a guarded copy through the chain with the original context.
#pragma once

#include <cstdint>

namespace upcache::shim::signals {

struct State {
  uint64_t cache_bytes = 0;
  uint64_t page_size = 0;
  uint64_t ra_max_bytes = 0;
};

// Installs the handler and starts recording the program's dispositions.
// `fault` is UPCACHE_FAULT (the test-only "crash_on_read" entry arms
// g_crash_on_read). Called once from the library constructor.
void install(const State& state, const char* fault);

// UPCACHE_FAULT=crash_on_read (tests only): the first read() the cache
// serves faults inside the shim, to test the crash diagnostics.
extern bool g_crash_on_read;
[[noreturn]] void test_crash();

}  // namespace upcache::shim::signals
