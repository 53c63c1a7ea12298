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

// guarded_copy's body. A fault, if any, happens at a store to the program's
// buffer inside [upcache_guarded_copy_begin, upcache_guarded_copy_end),
// with nothing to undo: copy_guard_fixup sends it to the failure exit.
// Copies of 16 to 64 bytes (small sequential reads, the commonest hit) use
// overlapping 16-byte moves: first and last 16 (and the 16 after the first
// and before the last), no loop and no `rep` start-up; others `rep movsb`
// (a fault in a string instruction restarts it with the registers as they
// were).
extern "C" {
extern const char upcache_guarded_copy_begin[];
extern const char upcache_guarded_copy_end[];
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
  lea -16(%rdx), %rax
  cmp $48, %rax
  ja 2f
  movdqu (%rsi), %xmm0
  movdqu -16(%rsi,%rdx), %xmm1
  cmp $32, %rdx
  ja 1f
  .globl upcache_guarded_copy_begin
  .hidden upcache_guarded_copy_begin
upcache_guarded_copy_begin:
  movdqu %xmm0, (%rdi)
  movdqu %xmm1, -16(%rdi,%rdx)
  mov $1, %eax
  ret
1:
  movdqu 16(%rsi), %xmm2
  movdqu -32(%rsi,%rdx), %xmm3
  movdqu %xmm0, (%rdi)
  movdqu %xmm2, 16(%rdi)
  movdqu %xmm3, -32(%rdi,%rdx)
  movdqu %xmm1, -16(%rdi,%rdx)
  mov $1, %eax
  ret
2:
  mov %rdx, %rcx
  rep movsb
  .globl upcache_guarded_copy_end
  .hidden upcache_guarded_copy_end
upcache_guarded_copy_end:
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

// The inline copies' exception table (copy_guard.h), bounds from the linker.
// Weak: a program without an inline copy has no such section.
extern "C" {
extern const CopyExtableEntry __start_upcache_extable[] __attribute__((weak, visibility("hidden")));
extern const CopyExtableEntry __stop_upcache_extable[] __attribute__((weak, visibility("hidden")));
}

bool copy_guard_fixup(void* ucontext) {
  if (ucontext == nullptr) return false;
  auto* ctx = static_cast<ucontext_t*>(ucontext);
  greg_t& pc = ctx->uc_mcontext.gregs[REG_RIP];
  if (pc >= reinterpret_cast<greg_t>(upcache_guarded_copy_begin) &&
      pc < reinterpret_cast<greg_t>(upcache_guarded_copy_end)) {
    pc = reinterpret_cast<greg_t>(upcache_guarded_movsb_fault);
    return true;
  }
  for (const CopyExtableEntry* e = __start_upcache_extable; e < __stop_upcache_extable; ++e) {
    const char* insn = reinterpret_cast<const char*>(&e->insn) + e->insn;
    if (reinterpret_cast<greg_t>(insn) == pc) {
      pc = reinterpret_cast<greg_t>(reinterpret_cast<const char*>(&e->fixup) + e->fixup);
      return true;
    }
  }
  return false;
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
