#include "core/copy_guard.h"

#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>

#include "core/sys.h"

namespace upcache {

namespace {

struct CopyGuard {
  sigjmp_buf env;
  volatile sig_atomic_t armed;
  // The copy in progress, kept here rather than in registers so nothing the
  // jump could clobber is live across sigsetjmp.
  IovCursor* out;
  const char* src;
  uint64_t n;
};

CopyGuard& this_thread_guard() {
  static thread_local CopyGuard guard __attribute__((tls_model("initial-exec")));
  return guard;
}

// Not inlined: sigsetjmp must return in a frame that is still live when the
// handler jumps back.
__attribute__((noinline)) bool run_guarded() {
  // savesigs = 0: saving the mask would cost a system call per copy; the
  // handler unblocks the signal itself before jumping.
  if (sigsetjmp(this_thread_guard().env, 0) != 0) {
    this_thread_guard().armed = 0;
    return false;
  }
  CopyGuard& g = this_thread_guard();
  g.armed = 1;
  g.out->copy_out(g.src, g.n);
  g.armed = 0;
  return true;
}

}  // namespace

bool guarded_copy_out(IovCursor& out, const char* src, uint64_t n) {
  CopyGuard& g = this_thread_guard();
  g.out = &out;
  g.src = src;
  g.n = n;
  return run_guarded();
}

// guarded_copy's body: the fault, if any, happens at the `rep movsb`, with
// the registers as they were (a fault in a string instruction restarts it).
extern "C" {
bool upcache_guarded_movsb(void* dst, const void* src, uint64_t n);
extern const char upcache_guarded_movsb_copy[];
extern const char upcache_guarded_movsb_fault[];
}
asm(R"(
  .text
  .p2align 4
  .globl upcache_guarded_movsb
  .hidden upcache_guarded_movsb
  .type upcache_guarded_movsb, @function
upcache_guarded_movsb:
  .cfi_startproc
  mov %rdx, %rcx
  .globl upcache_guarded_movsb_copy
  .hidden upcache_guarded_movsb_copy
upcache_guarded_movsb_copy:
  rep movsb
  mov $1, %eax
  ret
  .globl upcache_guarded_movsb_fault
  .hidden upcache_guarded_movsb_fault
upcache_guarded_movsb_fault:
  xor %eax, %eax
  ret
  .cfi_endproc
  .size upcache_guarded_movsb, .-upcache_guarded_movsb
)");

bool guarded_copy(void* dst, const void* src, uint64_t n) { return upcache_guarded_movsb(dst, src, n); }

bool copy_guard_fixup(void* ucontext) {
  if (ucontext == nullptr) return false;
  auto* ctx = static_cast<ucontext_t*>(ucontext);
  greg_t& pc = ctx->uc_mcontext.gregs[REG_RIP];
  if (pc != reinterpret_cast<greg_t>(upcache_guarded_movsb_copy)) return false;
  pc = reinterpret_cast<greg_t>(upcache_guarded_movsb_fault);
  return true;
}

void copy_guard_recover(int sig) {
  CopyGuard& g = this_thread_guard();
  if (!g.armed) return;
  g.armed = 0;
  // The kernel blocked `sig` while its handler runs (unless SA_NODEFER);
  // we leave the handler by jumping, so unblock it ourselves.
  uint64_t set = 1ull << (sig - 1);
  sys::raw(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&set), 0, sizeof set);
  siglongjmp(g.env, 1);
}

bool copy_guard_armed() { return this_thread_guard().armed != 0; }

}  // namespace upcache
