// The thread-pool engine: Config::io_threads threads take requests from a
// fixed-capacity ring and run them with blocking preadv (IoHost::execute).
// Works everywhere, including under seccomp filters that forbid io_uring.
#include <cerrno>
#include <condition_variable>
#include <mutex>

#include "core/io_engine.h"

namespace upcache {
namespace {

class ThreadEngine final : public IoEngine {
 public:
  static constexpr unsigned kMaxThreads = 64;
  static constexpr unsigned kMaxDepth = 1024;

  ThreadEngine(IoHost* host, unsigned depth) : host_(host), depth_(depth) {}

  ~ThreadEngine() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (unsigned i = 0; i < nthreads_; ++i) pthread_join(threads_[i], nullptr);
  }

  int start(unsigned threads) {
    if (threads == 0) threads = 1;
    if (threads > kMaxThreads) threads = kMaxThreads;
    for (unsigned i = 0; i < threads; ++i) {
      int rc = start_engine_thread(&threads_[i], &ThreadEngine::worker_main, this);
      if (rc != 0) return nthreads_ > 0 ? 0 : rc;  // positive errno
      ++nthreads_;
    }
    return 0;
  }

  bool submit(IoRequest* r) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ || count_ == depth_) return false;
      ring_[(head_ + count_) % depth_] = r;
      ++count_;
    }
    cv_.notify_one();
    return true;
  }

  const char* name() const override { return "threads"; }

  void abandon_after_fork() override {
    // Nothing of ours is a descriptor or a mapping; the workers do not exist
    // in the child. Leave the object as it is.
    nthreads_ = 0;
  }

 private:
  static void* worker_main(void* self) {
    name_engine_thread("upcache-io");
    static_cast<ThreadEngine*>(self)->work();
    return nullptr;
  }

  void work() {
    for (;;) {
      IoRequest* r;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || count_ > 0; });
        // Stop only once the queue is empty: every request completes.
        if (count_ == 0) return;
        r = ring_[head_];
        head_ = (head_ + 1) % depth_;
        --count_;
      }
      host_->execute(r);
      host_->complete(r);
    }
  }

  IoHost* host_;
  unsigned depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  IoRequest* ring_[kMaxDepth] = {};
  unsigned head_ = 0, count_ = 0;
  bool stop_ = false;
  pthread_t threads_[kMaxThreads] = {};
  unsigned nthreads_ = 0;
};

}  // namespace

IoEngine* make_thread_engine(IoHost* host, unsigned depth, unsigned threads, int* err) {
  if (depth == 0 || depth > ThreadEngine::kMaxDepth) {
    *err = -EINVAL;
    return nullptr;
  }
  auto* engine = backend_new<ThreadEngine>(host, depth);
  if (!engine) {
    *err = -ENOMEM;
    return nullptr;
  }
  int rc = engine->start(threads);
  if (rc != 0) {
    backend_delete(engine);
    *err = -rc;
    return nullptr;
  }
  return engine;
}

}  // namespace upcache
