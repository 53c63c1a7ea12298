#include "core/pin_journal.h"

#include <pthread.h>
#include <unistd.h>

#include "core/owner.h"

namespace upcache {

namespace {

// The journals of the live cache of this process: a thread-exit hook only
// touches a journal inside them (a test may have destroyed its cache, and
// unmapped its arena, before one of its threads exits).
std::atomic<PinJournal*> g_live{nullptr};

struct ThreadJournal {
  PinJournal* journal = nullptr;
  PinJournal* set = nullptr;  // the journals it was taken from
  uint32_t generation = 0;    // owner_fork_generation() when taken
};

ThreadJournal& tls() {
  static thread_local ThreadJournal t __attribute__((tls_model("initial-exec")));
  return t;
}

pthread_key_t g_exit_key;
bool g_exit_key_ok = false;

void give_back(void* value) {
  auto* j = static_cast<PinJournal*>(value);
  PinJournal* live = g_live.load(std::memory_order_acquire);
  if (j == nullptr || live == nullptr || j < live || j >= live + PinJournals::kJournals) return;
  // A forked child's thread inherited its parent's journal in TLS: not ours.
  uint64_t me = owner_self();
  if (j->owner.load(std::memory_order_relaxed) != me) return;
  for (auto& e : j->frame) e.store(0, std::memory_order_relaxed);  // empty between reads
  j->owner.compare_exchange_strong(me, 0, std::memory_order_release);
}

}  // namespace

PinJournals::PinJournals(PinJournal* journals) : journals_(journals) {
  g_live.store(journals, std::memory_order_release);
}

PinJournals::~PinJournals() {
  PinJournal* mine = journals_;
  g_live.compare_exchange_strong(mine, nullptr, std::memory_order_acq_rel);
}

PinJournal* PinJournals::mine() {
  ThreadJournal& t = tls();
  uint32_t generation = owner_fork_generation().load(std::memory_order_relaxed);
  if (t.journal != nullptr && t.set == journals_ && t.generation == generation) return t.journal;
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, [] { g_exit_key_ok = pthread_key_create(&g_exit_key, &give_back) == 0; });
  t.journal = nullptr;
  t.set = journals_;
  t.generation = generation;
  uint64_t me = owner_self();
  // Start at a spot that depends on the thread, so threads starting at once
  // do not all fight for the first free journal.
  uint32_t start = static_cast<uint32_t>(sys::gettid()) % kJournals;
  for (uint32_t n = 0; n < kJournals; ++n) {
    PinJournal& j = journals_[(start + n) % kJournals];
    uint64_t none = 0;
    if (j.owner.load(std::memory_order_relaxed) == 0 &&
        j.owner.compare_exchange_strong(none, me, std::memory_order_acq_rel)) {
      t.journal = &j;
      break;
    }
  }
  if (g_exit_key_ok) pthread_setspecific(g_exit_key, t.journal);
  return t.journal;
}

void PinJournals::note(uint32_t frame) {
  PinJournal* j = mine();
  if (j == nullptr) return;
  for (auto& e : j->frame) {
    if (e.load(std::memory_order_relaxed) == 0) {
      e.store(frame + 1, std::memory_order_release);
      return;
    }
  }
}

void PinJournals::forget(uint32_t frame) {
  ThreadJournal& t = tls();
  if (t.journal == nullptr || t.set != journals_ ||
      t.generation != owner_fork_generation().load(std::memory_order_relaxed))
    return;  // noted nowhere (or in the parent's journal, before a fork)
  for (auto& e : t.journal->frame) {
    if (e.load(std::memory_order_relaxed) == frame + 1) {
      e.store(0, std::memory_order_release);
      return;
    }
  }
}

}  // namespace upcache
