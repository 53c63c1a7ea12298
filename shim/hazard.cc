#include "shim/hazard.h"

#include <pthread.h>

#include <atomic>

#include "shim/adopt.h"
#include "shim/asym_barrier.h"
#include "shim/runtime.h"

namespace upcache::shim {

__thread hazard_detail::ThreadHazard hazard_detail::t_hazard __attribute__((tls_model("initial-exec")));

namespace {

// One cache line per slot: a reader's stores never touch another's line.
using hazard_detail::Slot;
using hazard_detail::ThreadHazard;
using hazard_detail::t_hazard;
Slot g_slots[kHazardSlots];
std::atomic<int> g_used{0};
pthread_key_t g_key;
bool g_key_ok = false;

// Thread exit (pthread key destructor): give the slot back.
void give_back(void* value) {
  auto* s = static_cast<Slot*>(value);
  s->ptr.store(nullptr, std::memory_order_release);
  s->owned.store(0, std::memory_order_release);
  t_hazard.slot = nullptr;
  t_hazard.tried = true;  // a later call of this dying thread takes references
}

Slot* claim() {
  t_hazard.tried = true;
  if (!g_key_ok) return nullptr;
  for (int i = 0; i < kHazardSlots; ++i) {
    Slot& s = g_slots[i];
    uint32_t expected = 0;
    if (s.owned.load(std::memory_order_relaxed) != 0 ||
        !s.owned.compare_exchange_strong(expected, 1, std::memory_order_acq_rel))
      continue;
    if (pthread_setspecific(g_key, &s) != 0) {
      s.owned.store(0, std::memory_order_release);
      return nullptr;
    }
    int used = g_used.load(std::memory_order_relaxed);
    while (used < i + 1 && !g_used.compare_exchange_weak(used, i + 1, std::memory_order_acq_rel)) {
    }
    t_hazard.slot = &s;
    return &s;
  }
  return nullptr;
}

}  // namespace

void hazard_init() { g_key_ok = pthread_key_create(&g_key, &give_back) == 0; }

void hazard_after_fork_child() {
  // Only this thread exists here: the other slots' owners do not.
  for (Slot& s : g_slots) {
    if (&s == t_hazard.slot) continue;
    s.ptr.store(nullptr, std::memory_order_relaxed);
    s.owned.store(0, std::memory_order_relaxed);
  }
}

bool hazard_sync() {
  if (!asym_available()) {
    // Readers publish with a full barrier; so do we.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return true;
  }
  // No other thread owns a slot: none can be reading with a plain
  // publication. (A thread that claims a slot later does so with a locked
  // instruction after the description left the table, so its check of the
  // table sees that.)
  bool others = false;
  int used = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < used && !others; ++i)
    others = &g_slots[i] != t_hazard.slot && g_slots[i].owned.load(std::memory_order_acquire) != 0;
  if (!others) return true;
  return asym_heavy();
}

bool hazard_held(const Description* d) {
  int used = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < used; ++i)
    if (g_slots[i].ptr.load(std::memory_order_acquire) == d) return true;
  return false;
}

void HazardRef::enter_slow(int fd) {
  ThreadHazard& t = t_hazard;
  Slot* s = t.slot;
  if (__builtin_expect(s == nullptr, 0) && !t.tried) s = claim();
  if (s == nullptr || t.busy || t_depth != 1) {
    d_ = g_fds.acquire(fd, &seen_);
    // As DescRef: a descriptor the shim never saw made is adopted at its
    // first call at top level (shim/adopt.h).
    if (__builtin_expect(seen_ == FdTable::kNone, 0) && t_depth == 1) d_ = adopt_unseen(fd, &seen_);
    counted_ = d_ != nullptr;
    return;
  }
  const bool asym = asym_available();
  for (;;) {
    uintptr_t v = g_fds.peek(fd);
    seen_ = v;
    if (!FdTable::is_description(v)) {
      s->ptr.store(nullptr, std::memory_order_release);
      if (__builtin_expect(v == FdTable::kNone, 0)) {
        d_ = adopt_unseen(fd, &seen_);  // with a reference of its own
        counted_ = d_ != nullptr;
      }
      return;
    }
    Description* d = FdTable::as_description(v);
    if (asym) {
      s->ptr.store(d, std::memory_order_relaxed);
      asym_light();  // the releaser's asym_heavy() orders this store before the check below
    } else {
      s->ptr.exchange(d, std::memory_order_seq_cst);
    }
    if (g_fds.peek(fd) == v) {
      d_ = d;
      t.busy = true;
      return;
    }
  }
}

}  // namespace upcache::shim
