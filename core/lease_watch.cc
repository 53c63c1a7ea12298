#include "core/lease_watch.h"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "core/io_engine.h"
#include "core/sys.h"

namespace upcache {

namespace {
int default_signal() { return SIGRTMAX - 3; }
}  // namespace

LeaseWatch::LeaseWatch(unsigned signal, Callbacks callbacks) : callbacks_(callbacks) {
  int s = static_cast<int>(signal);
  if (s < SIGRTMIN || s > SIGRTMAX) s = default_signal();
  signal_.store(s, std::memory_order_relaxed);
}

LeaseWatch::~LeaseWatch() {
  if (!started_) return;
  stop_.store(true, std::memory_order_release);
  // A thread-directed signal from ourselves (SI_TKILL) wakes it to look at stop_.
  sys::raw(SYS_tgkill, sys::getpid(), tid_.load(std::memory_order_acquire), signal());
  pthread_join(thread_, nullptr);
}

// Has the program a handler (or SIG_IGN) for `sig`? Then it uses the number.
bool LeaseWatch::program_uses(int sig) const {
  struct sigaction old {};
  if (sigaction(sig, nullptr, &old) != 0) return true;
  return (old.sa_flags & SA_SIGINFO) ? old.sa_sigaction != nullptr : old.sa_handler != SIG_DFL;
}

int LeaseWatch::pick_free_signal(int avoid) const {
  for (int s = SIGRTMAX - 3; s > SIGRTMIN; --s)
    if (s != avoid && !program_uses(s)) return s;
  return -1;
}

int LeaseWatch::tid() {
  int t = tid_.load(std::memory_order_acquire);
  if (t > 0) return t;
  pthread_mutex_lock(&lock_);
  if (!started_) {
    int s = signal();
    if (program_uses(s)) {
      int other = pick_free_signal(s);
      if (other > 0) signal_.store(other, std::memory_order_release);
    }
    int rc = start_engine_thread(&thread_, &LeaseWatch::main, this);
    if (rc != 0) {
      pthread_mutex_unlock(&lock_);
      return -rc;
    }
    started_ = true;
    while ((t = tid_.load(std::memory_order_acquire)) == 0) tid_.wait(0, std::memory_order_acquire);
  }
  pthread_mutex_unlock(&lock_);
  return tid_.load(std::memory_order_acquire);
}

void LeaseWatch::after_fork_child() {
  started_ = false;
  tid_.store(0, std::memory_order_relaxed);
  stop_.store(false, std::memory_order_relaxed);
  pthread_mutex_init(&lock_, nullptr);
}

void* LeaseWatch::main(void* self) {
  static_cast<LeaseWatch*>(self)->run();
  return nullptr;
}

void LeaseWatch::run() {
  name_engine_thread("upcache-lease");
  const int self_pid = sys::getpid();
  tid_.store(sys::gettid(), std::memory_order_release);
  tid_.notify_all();
  // Every signal stays blocked on this thread (start_engine_thread).
  for (;;) {
    const int sig = signal();
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, sig);
    // A second's timeout: SIGIO in place of the real-time signal (queue
    // overflow) is seen on the next round, without taking a SIGIO that may
    // be the program's.
    struct timespec timeout {1, 0};
    siginfo_t info {};
    int got = sigtimedwait(&wanted, &info, &timeout);
    if (stop_.load(std::memory_order_acquire)) return;
    if (got < 0) {
      sigset_t pending;
      if (errno == EAGAIN && sigpending(&pending) == 0 && sigismember(&pending, SIGIO))
        callbacks_.on_break(callbacks_.ctx, -1);
      continue;
    }
    if (info.si_code == POLL_MSG) {
      callbacks_.on_break(callbacks_.ctx, info.si_fd);
      continue;
    }
    if (info.si_code == SI_TKILL && info.si_pid == self_pid) continue;  // a wake-up of ours
    // The program's own use of this number: move away from it, look at
    // every lease (a break may have been queued on the old number), and
    // hand the signal back to the process.
    int next = pick_free_signal(sig);
    if (next > 0) {
      signal_.store(next, std::memory_order_release);
      callbacks_.on_signal_moved(callbacks_.ctx, next);
      callbacks_.on_break(callbacks_.ctx, -1);
    }
    if (sys::raw(SYS_rt_sigqueueinfo, self_pid, sig, reinterpret_cast<long>(&info)) != 0)
      sys::raw(SYS_kill, self_pid, sig);
  }
}

}  // namespace upcache
