// SIGSEGV/SIGBUS: the guarded copy's recovery, the program's own handlers
// chained behind ours, and crash diagnostics (signals.h).
#include "shim/signals.h"

#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/copy_guard.h"
#include "core/sys.h"
#include "shim/interpose.h"
#include "shim/log.h"
#include "shim/runtime.h"

namespace upcache::shim::signals {

bool g_crash_on_read = false;

namespace {

using SigactionFn = int (*)(int, const struct sigaction*, struct sigaction*);
using SignalFn = sighandler_t (*)(int, sighandler_t);

std::atomic<SigactionFn> g_real_sigaction{nullptr};

SigactionFn real_sigaction() {
  SigactionFn f = g_real_sigaction.load(std::memory_order_acquire);
  if (f != nullptr) return f;
  f = reinterpret_cast<SigactionFn>(dlsym(RTLD_NEXT, "sigaction"));
  if (f != nullptr) g_real_sigaction.store(f, std::memory_order_release);
  return f;
}

SignalFn real_signal_fn(const char* name) { return reinterpret_cast<SignalFn>(dlsym(RTLD_NEXT, name)); }

constexpr uint64_t bit(int sig) { return 1ull << (sig - 1); }
constexpr uint64_t kSaUnsupported = 0x400;  // never a valid flag (Linux 5.11+)
constexpr uint64_t kSaExposeTagbits = 0x800;
constexpr uint64_t kSaRestorer = 0x04000000;  // SA_RESTORER (x86-64; not in glibc's headers)
// The flags Linux 5.11+ keeps (UAPI_SA_FLAGS on x86-64); the rest are cleared.
constexpr uint64_t kUapiFlags = SA_NOCLDSTOP | SA_NOCLDWAIT | SA_SIGINFO | SA_ONSTACK | SA_RESTART |
                                SA_NODEFER | SA_RESETHAND | kSaExposeTagbits | kSaRestorer;

// A disposition as the kernel holds it (and glibc reports it).
struct KAct {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

// The program's disposition of one signal, read by the handler without a
// lock (a sequence counter; the writer runs with every signal blocked).
struct Record {
  std::atomic<uint64_t> w[4];
};
Record g_record[2];  // SIGSEGV, SIGBUS
std::atomic<unsigned> g_seq{0};
std::atomic<bool> g_write_lock{false};
std::atomic<bool> g_installed{false};
std::atomic<bool> g_reported{false};

uint64_t g_restorer = 0;        // glibc's __restore_rt
bool g_kernel_masks_flags = false;
uintptr_t g_text_lo = 0, g_text_hi = 0, g_base = 0;
State g_state;

int index_of(int sig) { return sig == SIGSEGV ? 0 : sig == SIGBUS ? 1 : -1; }

KAct load(int idx) {
  KAct k{};
  for (int tries = 0; tries < 1000; ++tries) {
    unsigned s1 = g_seq.load(std::memory_order_acquire);
    k.handler = g_record[idx].w[0].load(std::memory_order_relaxed);
    k.flags = g_record[idx].w[1].load(std::memory_order_relaxed);
    k.restorer = g_record[idx].w[2].load(std::memory_order_relaxed);
    k.mask = g_record[idx].w[3].load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if ((s1 & 1) == 0 && g_seq.load(std::memory_order_relaxed) == s1) break;
  }
  return k;
}

// Caller holds the write lock (or is the handler applying SA_RESETHAND).
void store(int idx, const KAct& k) {
  g_seq.fetch_add(1, std::memory_order_acq_rel);
  g_record[idx].w[0].store(k.handler, std::memory_order_relaxed);
  g_record[idx].w[1].store(k.flags, std::memory_order_relaxed);
  g_record[idx].w[2].store(k.restorer, std::memory_order_relaxed);
  g_record[idx].w[3].store(k.mask, std::memory_order_relaxed);
  g_seq.fetch_add(1, std::memory_order_release);
}

// Every signal blocked and the write lock held, for a change of a record.
class WriteSection {
 public:
  WriteSection() {
    uint64_t all = ~0ull;
    sys::raw(SYS_rt_sigprocmask, SIG_BLOCK, reinterpret_cast<long>(&all), reinterpret_cast<long>(&old_), 8);
    while (g_write_lock.exchange(true, std::memory_order_acquire)) {
    }
  }
  ~WriteSection() {
    g_write_lock.store(false, std::memory_order_release);
    sys::raw(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&old_), 0, 8);
  }
  WriteSection(const WriteSection&) = delete;
  WriteSection& operator=(const WriteSection&) = delete;

 private:
  uint64_t old_ = 0;
};

bool is_default_or_ignore(uint64_t h) {
  return h == reinterpret_cast<uint64_t>(SIG_DFL) || h == reinterpret_cast<uint64_t>(SIG_IGN);
}

KAct from_libc(const struct sigaction& sa) {
  KAct k{};
  k.handler = reinterpret_cast<uint64_t>(sa.sa_handler);
  k.flags = static_cast<uint64_t>(static_cast<unsigned>(sa.sa_flags));
  k.restorer = reinterpret_cast<uint64_t>(sa.sa_restorer);
  memcpy(&k.mask, &sa.sa_mask, sizeof k.mask);
  return k;
}

// What the kernel would hold after glibc's sigaction(act).
KAct normalize(const struct sigaction* act) {
  KAct k{};
  k.handler = reinterpret_cast<uint64_t>(act->sa_handler);
  // glibc: int sa_flags widened to unsigned long, SA_RESTORER and its restorer added.
  k.flags = static_cast<uint64_t>(static_cast<int64_t>(act->sa_flags)) | kSaRestorer;
  if (g_kernel_masks_flags) k.flags &= kUapiFlags;
  k.restorer = g_restorer;
  memcpy(&k.mask, &act->sa_mask, sizeof k.mask);
  k.mask &= ~(bit(SIGKILL) | bit(SIGSTOP));
  return k;
}

void to_libc(const KAct& k, struct sigaction* out) {
  out->sa_handler = reinterpret_cast<sighandler_t>(k.handler);
  sigemptyset(&out->sa_mask);
  memcpy(&out->sa_mask, &k.mask, sizeof k.mask);
  out->sa_flags = static_cast<int>(static_cast<uint32_t>(k.flags));
  out->sa_restorer = reinterpret_cast<void (*)()>(k.restorer);
}

void on_fault(int sig, siginfo_t* info, void* uc);

// Puts our handler in the kernel for `sig`, blocking and restarting as the
// program's recorded handler would.
void install_ours(int sig, const KAct& rec, uint64_t extra_flags = 0) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sigemptyset(&sa.sa_mask);
  if (is_default_or_ignore(rec.handler)) {
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  } else {
    sa.sa_flags = SA_SIGINFO | static_cast<int>(rec.flags & (SA_ONSTACK | SA_RESTART | SA_NODEFER));
    memcpy(&sa.sa_mask, &rec.mask, sizeof rec.mask);
  }
  sa.sa_flags |= static_cast<int>(extra_flags);
  real_sigaction()(sig, &sa, nullptr);
}

// The kernel's default action for `sig` from now on (raw: no wrapper, no lock).
void kernel_default(int sig) {
  struct {
    uint64_t handler, flags, restorer, mask;
  } k{reinterpret_cast<uint64_t>(SIG_DFL), 0, 0, 0};
  sys::raw(SYS_rt_sigaction, sig, reinterpret_cast<long>(&k), 0, 8);
}

const char* signal_name(int sig) { return sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : "?"; }

void frame_line(int i, uint64_t ip, unw_cursor_t* c) {
  log::Line l;
  l.s("upcache:   #").dec(i).s(" ").hex(ip);
  char name[160];
  unw_word_t off = 0;
  if (unw_get_proc_name(c, name, sizeof name, &off) == 0) {
    name[sizeof name - 1] = '\0';
    l.s(" ").s(name).s("+").hex(off);
  }
  if (ip >= g_text_lo && ip < g_text_hi) l.s(" [libupcache.so+").hex(ip - g_base).s("]");
  l.emit();
}

void report(int sig, siginfo_t* info, ucontext_t* uc, uintptr_t pc) {
  log::Line()
      .s("upcache: fatal signal ").dec(sig).s(" (").s(signal_name(sig)).s(") at ").hex(pc)
      .s(" in libupcache.so (+").hex(pc - g_base).s("), fault address ")
      .hex(info != nullptr ? reinterpret_cast<uint64_t>(info->si_addr) : 0)
      .s(", si_code ").dec(info != nullptr ? info->si_code : 0)
      .emit();
  log::Line()
      .s("upcache: state: pid ").dec(sys::raw(SYS_getpid)).s(" tid ").dec(sys::raw(SYS_gettid))
      .s(", cache ").udec(g_state.cache_bytes).s(" bytes, page ").udec(g_state.page_size)
      .s(", readahead max ").udec(g_state.ra_max_bytes).s(", shim depth ").dec(t_depth)
      .s(", in guarded copy ").s(upcache::copy_guard_armed() ? "yes" : "no")
      .s(", ready ").s(g_ready.load(std::memory_order_relaxed) ? "yes" : "no")
      .emit();
  log::Line().s("upcache: backtrace:").emit();
  // From the interrupted frame: on x86-64 libunwind's context is a ucontext_t.
  static_assert(sizeof(unw_context_t) >= sizeof(ucontext_t), "unw_context_t is a ucontext_t");
  unw_context_t ctx;
  unw_cursor_t c;
  bool ok = false;
  if (uc != nullptr) {
    memcpy(&ctx, uc, sizeof(ucontext_t));
    ok = unw_init_local2(&c, &ctx, UNW_INIT_SIGNAL_FRAME) == 0;
  }
  if (!ok) {
    unw_getcontext(&ctx);
    ok = unw_init_local(&c, &ctx) == 0;
  }
  for (int i = 0; ok && i < 48; ++i) {
    unw_word_t ip = 0;
    if (unw_get_reg(&c, UNW_REG_IP, &ip) < 0 || ip == 0) break;
    frame_line(i, ip, &c);
    if (unw_step(&c) <= 0) break;
  }
}

// The fault goes where it would have gone without upcache.
void chain(int sig, siginfo_t* info, void* uc, int saved_errno) {
  int idx = index_of(sig);
  KAct a = load(idx);
  bool sent = info == nullptr || info->si_code <= 0;  // kill/tgkill/sigqueue, not a fault
  if (is_default_or_ignore(a.handler)) {
    if (a.handler == reinterpret_cast<uint64_t>(SIG_IGN) && sent) {
      errno = saved_errno;
      return;  // an ignored signal someone sent: dropped, as the kernel would
    }
    // SIG_DFL, or a fault while ignored (the kernel forces the default):
    // returning re-runs the faulting instruction under the default action,
    // which kills the process with this signal and the same core.
    kernel_default(sig);
    if (sent) sys::raw(SYS_tgkill, sys::raw(SYS_getpid), sys::raw(SYS_gettid), sig);
    errno = saved_errno;
    return;
  }
  if (a.flags & SA_RESETHAND) {
    KAct reset = a;
    reset.handler = reinterpret_cast<uint64_t>(SIG_DFL);
    store(idx, reset);
  }
  errno = saved_errno;
  if (a.flags & SA_SIGINFO) {
    reinterpret_cast<void (*)(int, siginfo_t*, void*)>(a.handler)(sig, info, uc);
  } else {
    reinterpret_cast<void (*)(int)>(a.handler)(sig);
  }
}

void on_fault(int sig, siginfo_t* info, void* uc) {
  int saved_errno = errno;
  if (upcache::copy_guard_fixup(uc)) {  // a bad buffer in the hit path's copy: it returns false
    errno = saved_errno;
    return;
  }
  upcache::copy_guard_recover(sig);  // a bad buffer in our copy: does not return
  auto* ctx = static_cast<ucontext_t*>(uc);
  uintptr_t pc = ctx != nullptr ? static_cast<uintptr_t>(ctx->uc_mcontext.gregs[REG_RIP]) : 0;
  if (pc >= g_text_lo && pc < g_text_hi && !g_reported.exchange(true)) {
    report(sig, info, ctx, pc);
  }
  chain(sig, info, uc, saved_errno);
}

int find_text(struct dl_phdr_info* info, size_t, void*) {
  uintptr_t self = reinterpret_cast<uintptr_t>(&on_fault);
  bool mine = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (self >= lo && self < lo + ph.p_memsz) mine = true;
  }
  if (!mine) return 0;
  g_base = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (g_text_lo == 0 || lo < g_text_lo) g_text_lo = lo;
    if (lo + ph.p_memsz > g_text_hi) g_text_hi = lo + ph.p_memsz;
  }
  return 1;
}

bool has_token(const char* list, const char* token) {
  if (list == nullptr) return false;
  size_t n = strlen(token);
  for (const char* p = list; *p != '\0';) {
    const char* end = strchr(p, ',');
    size_t len = end != nullptr ? static_cast<size_t>(end - p) : strlen(p);
    if (len == n && strncmp(p, token, n) == 0) return true;
    if (end == nullptr) break;
    p = end + 1;
  }
  return false;
}

int do_sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  int idx = index_of(sig);
  if (idx < 0 || !g_installed.load(std::memory_order_acquire)) {
    SigactionFn f = real_sigaction();
    if (f == nullptr) {
      errno = ENOSYS;
      return -1;
    }
    return f(sig, act, old);
  }
  KAct prev;
  {
    WriteSection w;
    prev = load(idx);
    if (act != nullptr) {
      KAct k = normalize(act);
      store(idx, k);
      install_ours(sig, k);
    }
  }
  if (old != nullptr) to_libc(prev, old);
  return 0;
}

bool chained(int sig) { return index_of(sig) >= 0 && g_installed.load(std::memory_order_acquire); }

// Not chained: the program's call goes to libc as it is.
sighandler_t pass_signal(int sig, sighandler_t handler, const char* name) {
  SignalFn f = real_signal_fn(name);
  if (f == nullptr) {
    errno = ENOSYS;
    return SIG_ERR;
  }
  return f(sig, handler);
}

// glibc's signal()/bsd_signal()/ssignal() (BSD semantics: the signal blocked
// while its handler runs, calls restarted) and sysv_signal() (one-shot, not
// blocked, not restarted), expressed as the sigaction glibc itself makes.
sighandler_t do_signal(int sig, sighandler_t handler, const char* name, bool bsd) {
  if (!chained(sig)) return pass_signal(sig, handler, name);
  if (handler == SIG_ERR) {
    errno = EINVAL;
    return SIG_ERR;
  }
  struct sigaction act, old;
  memset(&act, 0, sizeof act);
  act.sa_handler = handler;
  sigemptyset(&act.sa_mask);
  if (bsd) {
    sigaddset(&act.sa_mask, sig);
    act.sa_flags = SA_RESTART;
  } else {
    act.sa_flags = static_cast<int>((SA_RESETHAND | SA_NODEFER | 0x20000000u /* SA_INTERRUPT */) & ~SA_RESTART);
  }
  if (do_sigaction(sig, &act, &old) < 0) return SIG_ERR;
  return old.sa_handler;
}

// glibc's sigset() (System V), SIG_HOLD included.
sighandler_t do_sigset(int sig, sighandler_t disp) {
  if (!chained(sig)) return pass_signal(sig, disp, "sigset");
  sigset_t set, oset;
  sigemptyset(&set);
  sigaddset(&set, sig);
  struct sigaction act, old;
  if (disp == SIG_HOLD) {
    if (pthread_sigmask(SIG_BLOCK, &set, &oset) != 0) return SIG_ERR;
    if (sigismember(&oset, sig)) return SIG_HOLD;
    do_sigaction(sig, nullptr, &old);
    return old.sa_handler;
  }
  memset(&act, 0, sizeof act);
  act.sa_handler = disp;
  sigemptyset(&act.sa_mask);  // glibc 2.36: an empty mask
  act.sa_flags = 0;
  if (do_sigaction(sig, &act, &old) < 0) return SIG_ERR;
  if (pthread_sigmask(SIG_UNBLOCK, &set, &oset) != 0) return SIG_ERR;
  return sigismember(&oset, sig) ? SIG_HOLD : old.sa_handler;
}

}  // namespace

void install(const State& state, const char* fault) {
  g_state = state;
  g_crash_on_read = has_token(fault, "crash_on_read");
  // Sanitizer builds (UPCACHE_SANITIZE): ASan installed its SIGSEGV handler
  // with a raw system call before this constructor ran; it is recorded here
  // like any earlier disposition and chained to, so its reports stay intact.
  if (real_sigaction() == nullptr) return;
  dl_iterate_phdr(find_text, nullptr);
  WriteSection w;
  for (int sig : {SIGSEGV, SIGBUS}) {
    struct sigaction prev;
    memset(&prev, 0, sizeof prev);
    if (real_sigaction()(sig, nullptr, &prev) != 0) return;
    store(index_of(sig), from_libc(prev));
  }
  // One probe: does the kernel clear unknown flag bits (Linux 5.11+)? And
  // glibc's restorer, which it puts in every disposition it sets.
  install_ours(SIGSEGV, load(0), kSaUnsupported);
  struct sigaction probe;
  memset(&probe, 0, sizeof probe);
  real_sigaction()(SIGSEGV, nullptr, &probe);
  g_kernel_masks_flags = (static_cast<unsigned>(probe.sa_flags) & kSaUnsupported) == 0;
  g_restorer = reinterpret_cast<uint64_t>(probe.sa_restorer);
  install_ours(SIGSEGV, load(0));
  install_ours(SIGBUS, load(1));
  g_installed.store(true, std::memory_order_release);
}

[[noreturn]] __attribute__((noinline)) void test_crash() {
  volatile uintptr_t addr = 16;
  *reinterpret_cast<volatile int*>(addr) = 1;
  __builtin_trap();
}

}  // namespace upcache::shim::signals

using namespace upcache::shim::signals;

UPCACHE_EXPORT int sigaction(int sig, const struct sigaction* act, struct sigaction* old) noexcept {
  return do_sigaction(sig, act, old);
}
UPCACHE_EXPORT int __sigaction(int sig, const struct sigaction* act, struct sigaction* old) noexcept {
  return do_sigaction(sig, act, old);
}
UPCACHE_EXPORT sighandler_t signal(int sig, sighandler_t h) noexcept { return do_signal(sig, h, "signal", true); }
UPCACHE_EXPORT sighandler_t bsd_signal(int sig, sighandler_t h) noexcept { return do_signal(sig, h, "bsd_signal", true); }
UPCACHE_EXPORT sighandler_t ssignal(int sig, sighandler_t h) noexcept { return do_signal(sig, h, "ssignal", true); }
UPCACHE_EXPORT sighandler_t sysv_signal(int sig, sighandler_t h) noexcept {
  return do_signal(sig, h, "sysv_signal", false);
}
UPCACHE_EXPORT sighandler_t __sysv_signal(int sig, sighandler_t h) noexcept {
  return do_signal(sig, h, "__sysv_signal", false);
}
UPCACHE_EXPORT sighandler_t sigset(int sig, sighandler_t disp) noexcept { return do_sigset(sig, disp); }
