// The position lock of a description (description.h): a futex mutex biased
// towards the one thread that uses the description.
//
// Why: nearly every description is only ever read by one thread, and the
// kernel itself skips f_pos_lock when a file is not shared (fdget_pos). A
// futex mutex costs two atomic read-modify-writes per read(), more than the
// rest of a 64-byte read() hit.
//
// How: the first thread to lock becomes the owner (one CAS, once). The owner
// locks with plain stores: busy = 1, then checks `revoked` (asym_light); it
// unlocks with busy = 0. Any other thread that wants the lock revokes the
// bias for good: revoked = 1, asym_heavy() (so the owner's store of busy and
// its check of revoked are ordered as if both sides had full fences: Dekker's
// protocol with the fence on the rare side), waits for busy == 0, and from
// then on everyone, the owner too, uses the futex mutex. Without asymmetric
// barriers (asym_barrier.h) there is no bias: always the mutex.
//
// Thread identity: the address of a thread-local, unique among live threads.
// A new thread that reuses a dead owner's TLS block inherits the bias, which
// is safe: the owner is gone.
//
// Reentrancy: a signal handler on the owner thread whose try_lock() meets a
// lock the interrupted code holds sees busy == 1 and fails, as with the
// mutex. lock() is never called from a nested context (the shim's rule; the
// mutex would deadlock there too).
#pragma once

#include <atomic>
#include <cstdint>

#include "shim/asym_barrier.h"
#include "shim/futex_lock.h"

namespace upcache::shim {

class BiasedLock {
 public:
  void lock() {
    if (__builtin_expect(owner_.load(std::memory_order_relaxed) == self() && enter_biased(), 1)) return;
    lock_slow();
  }
  bool try_lock();
  void unlock() {
    if (busy_.load(std::memory_order_relaxed) != 0 && owner_.load(std::memory_order_relaxed) == self()) {
      busy_.store(0, std::memory_order_release);
      if (__builtin_expect(revoked_.load(std::memory_order_relaxed) != kBiased, 0)) wake_revoker();
      return;
    }
    mutex_.unlock();
  }
  // A new description, or in a fork child (the holders do not exist there).
  void reset() {
    owner_.store(0, std::memory_order_relaxed);
    busy_.store(0, std::memory_order_relaxed);
    revoked_.store(kBiased, std::memory_order_relaxed);
    mutex_.reset();
  }

 private:
  static constexpr uint32_t kBiased = 0, kRevoking = 1, kRevoked = 2;

  static uintptr_t self() {
    static thread_local char token __attribute__((tls_model("initial-exec")));
    return reinterpret_cast<uintptr_t>(&token);
  }
  // The owner's way in; false when the bias is (being) revoked.
  bool enter_biased() {
    if (revoked_.load(std::memory_order_relaxed) != kBiased) return false;
    busy_.store(1, std::memory_order_relaxed);
    asym_light();
    if (__builtin_expect(revoked_.load(std::memory_order_relaxed) == kBiased, 1)) return true;
    busy_.store(0, std::memory_order_release);
    wake_revoker();
    return false;
  }
  void lock_slow();
  // Revokes another thread's bias; waits until it left its critical section
  // (or, with wait == false, returns false if it is inside).
  bool revoke(bool wait);
  void wake_revoker();

  std::atomic<uintptr_t> owner_{0};  // 0: no owner yet
  std::atomic<uint32_t> busy_{0};    // written by the owner only
  std::atomic<uint32_t> revoked_{kBiased};
  FutexLock mutex_;
};

}  // namespace upcache::shim
