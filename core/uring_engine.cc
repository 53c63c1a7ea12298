// The io_uring engine: one ring per Backend, owned by one thread (the reaper)
// that both submits and reaps.
//
// Why only the reaper touches the ring: io_uring delivers a completion as
// task work to the task that submitted the request. Had the program's threads
// submitted (read_async is called from them), the kernel would interrupt
// those threads to run our completions (TIF_NOTIFY_SIGNAL), and a program
// blocked in, say, epoll_wait could see a spurious EINTR. So read_async only
// pushes the request on a lock-free list and, if the reaper sleeps, wakes it
// through an eventfd that the ring itself reads. With the reaper as the only
// issuer the ring is set up IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN where
// the kernel has them (6.1+): completions are then processed only when the
// reaper waits, never by interrupting anyone.
//
// Short reads and EINVAL go through IoHost::step(); when it asks for another
// attempt the remainder is resubmitted.
#include <liburing.h>
#include <sys/eventfd.h>

#include <atomic>
#include <cerrno>

#include "core/fd_reserve.h"
#include "core/io_engine.h"
#include "core/sys.h"

namespace upcache {
namespace {

constexpr uint64_t kWakeData = 1;  // user_data of the eventfd read (requests are aligned pointers)

class UringEngine final : public IoEngine {
 public:
  UringEngine(IoHost* host, unsigned depth, FdReserve* fds) : host_(host), depth_(depth), fds_(fds) {}

  ~UringEngine() override {
    if (abandoned_) return;
    if (started_) {
      stop_.store(true, std::memory_order_release);
      wake();
      pthread_join(reaper_, nullptr);
    }
    close_ring();
  }

  // Starts the reaper, which creates the ring; returns 0 or -errno.
  int start() {
    int rc = start_engine_thread(&reaper_, &UringEngine::reaper_main, this);
    if (rc != 0) return -rc;
    started_ = true;
    int state;
    while ((state = init_state_.load(std::memory_order_acquire)) == 0) init_state_.wait(0);
    if (state < 0) {
      pthread_join(reaper_, nullptr);
      started_ = false;
      return state;
    }
    return 0;
  }

  bool submit(IoRequest* r) override {
    if (stop_.load(std::memory_order_relaxed)) return false;
    IoRequest* head = pending_.load(std::memory_order_relaxed);
    do {
      r->next = head;
    } while (!pending_.compare_exchange_weak(head, r, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
    // Pairs with the reaper's store of sleeping_ then load of pending_.
    if (sleeping_.load(std::memory_order_seq_cst) != 0 &&
        sleeping_.exchange(0, std::memory_order_seq_cst) != 0)
      wake();
    return true;
  }

  const char* name() const override { return "uring"; }

  // The ring's descriptor is used by the reaper alone, so the reaper moves
  // it (between two of its system calls); the eventfd is also written by
  // wake() from other threads, which count themselves in wakers_. The caller
  // waits for the reaper's answer.
  int relocate_fd(int fd) override {
    if (fd < 0 || (fd != ring_fd_pub_.load(std::memory_order_acquire) &&
                   fd != efd_pub_.load(std::memory_order_acquire)))
      return -ENOENT;
    if (stop_.load(std::memory_order_acquire)) return -EBUSY;
    int expected = -1;
    if (!reloc_fd_.compare_exchange_strong(expected, fd, std::memory_order_acq_rel)) return -EBUSY;
    uint32_t seq = reloc_seq_.load(std::memory_order_acquire);
    wake();
    // The reaper answers within a millisecond or so (it polls when the
    // eventfd cannot wake it); give up after about five seconds.
    for (int i = 0; i < 5000 && reloc_seq_.load(std::memory_order_acquire) == seq; ++i)
      sys::nanosleep_ns(1000000);
    if (reloc_seq_.load(std::memory_order_acquire) == seq) {
      // No answer: withdraw the request unless the reaper took it meanwhile.
      expected = fd;
      if (reloc_fd_.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) return -EBUSY;
      while (reloc_seq_.load(std::memory_order_acquire) == seq) sys::nanosleep_ns(1000000);
    }
    return reloc_result_.load(std::memory_order_acquire);
  }

  void abandon_after_fork() override {
    // The ring's mappings and descriptors were inherited; they are the
    // parent's ring. Drop the child's references only.
    abandoned_ = true;
    close_ring();
  }

 private:
  static void* reaper_main(void* self) {
    name_engine_thread("upcache-uring");
    static_cast<UringEngine*>(self)->run();
    return nullptr;
  }

  int setup() {
    unsigned entries = 8;
    while (entries < depth_ + 2) entries <<= 1;
    io_uring_params p = {};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(entries, &ring_, &p);
    if (rc == -EINVAL) {  // before 6.1
      p = {};
      rc = io_uring_queue_init_params(entries, &ring_, &p);
    }
    if (rc < 0) return rc;
    ring_ok_ = true;
    // Out of the program's way (core/fd_reserve.h). adopt() closes the
    // original either way.
    int high = fds_->adopt(ring_.ring_fd);
    ring_.ring_fd = ring_.enter_ring_fd = high;
    if (high < 0) return high;
    ring_fd_pub_.store(high, std::memory_order_release);
    int efd = sys::eventfd(0, EFD_CLOEXEC);
    if (efd < 0) return efd;
    efd_ = fds_->adopt(efd);
    if (efd_ < 0) return efd_;
    efd_pub_.store(efd_, std::memory_order_release);
    return 0;
  }

  void close_ring() {
    if (ring_ok_) {
      if (ring_.ring_fd >= 0) fds_->forget(ring_.ring_fd);
      io_uring_queue_exit(&ring_);  // unmaps and closes ring_fd
      ring_ok_ = false;
    }
    efd_pub_.store(-1, std::memory_order_release);
    ring_fd_pub_.store(-1, std::memory_order_release);
    if (efd_ >= 0) fds_->release(efd_);
    efd_ = -1;
  }

  void wake() {
    uint64_t one = 1;
    wakers_.fetch_add(1, std::memory_order_acq_rel);
    int efd = efd_pub_.load(std::memory_order_acquire);
    if (efd >= 0) sys::write(efd, &one, sizeof one);
    wakers_.fetch_sub(1, std::memory_order_acq_rel);
  }

  // Reaper only: a relocation asked for by relocate_fd().
  void relocate_pending() {
    int fd = reloc_fd_.load(std::memory_order_acquire);
    if (fd < 0) return;
    int rc = -ENOENT;
    if (ring_ok_ && fd == ring_.ring_fd) {
      int moved = fds_->duplicate(fd);
      if (moved >= 0) {
        ring_.ring_fd = ring_.enter_ring_fd = moved;
        ring_fd_pub_.store(moved, std::memory_order_release);
        fds_->forget(fd);
        rc = 0;
      } else {
        rc = moved;
      }
    } else if (fd == efd_) {
      int moved = fds_->duplicate(fd);
      if (moved >= 0) {
        efd_ = moved;
        efd_pub_.store(moved, std::memory_order_release);
        // wake() calls that loaded the old number finish their write first.
        while (wakers_.load(std::memory_order_acquire) != 0) sys::sched_yield();
        fds_->forget(fd);
        rc = 0;
      } else {
        rc = moved;
      }
    }
    reloc_result_.store(rc, std::memory_order_release);
    reloc_fd_.store(-1, std::memory_order_release);
    reloc_seq_.fetch_add(1, std::memory_order_acq_rel);
  }

  void run() {
    int rc = setup();
    init_state_.store(rc == 0 ? 1 : (rc < 0 ? rc : -EIO), std::memory_order_release);
    init_state_.notify_all();
    if (rc != 0) return;  // start() joins and close_ring() cleans up
    bool need_arm = true;
    for (;;) {
      relocate_pending();
      host_->fds_enter();
      take_pending();
      if (need_arm && !wake_broken_) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
          io_uring_prep_read(sqe, efd_, &efd_buf_, sizeof efd_buf_, 0);
          io_uring_sqe_set_data64(sqe, kWakeData);
          need_arm = false;
        }
      }
      issue_backlog();
      submit_ready();
      host_->fds_exit();
      if (stop_.load(std::memory_order_acquire) && inflight_ == 0 && backlog_head_ == nullptr &&
          pending_.load(std::memory_order_acquire) == nullptr)
        break;

      sleeping_.store(1, std::memory_order_seq_cst);
      if (pending_.load(std::memory_order_seq_cst) != nullptr) {
        sleeping_.store(0, std::memory_order_relaxed);
        continue;
      }
      io_uring_cqe* cqe = nullptr;
      int ret;
      // Poll with a timeout when something is left to issue or the eventfd
      // cannot wake us; otherwise sleep until a completion.
      if (backlog_head_ || need_arm || wake_broken_ || io_uring_sq_ready(&ring_) > 0) {
        __kernel_timespec ts = {0, 1000000};
        ret = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
      } else {
        ret = io_uring_wait_cqe(&ring_, &cqe);
      }
      sleeping_.store(0, std::memory_order_relaxed);
      if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        sys::nanosleep_ns(1000000);
      }
      host_->fds_enter();
      while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
        uint64_t data = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
        handle(data, res, &need_arm);
      }
      host_->fds_exit();
    }
  }

  void handle(uint64_t data, int res, bool* need_arm) {
    if (data == kWakeData) {
      if (res >= 0 || res == -EINTR || res == -EAGAIN || res == -ECANCELED)
        *need_arm = true;
      else
        wake_broken_ = true;  // fall back to polling the list every millisecond
      return;
    }
    auto* r = reinterpret_cast<IoRequest*>(data);
    --inflight_;
    if (host_->step(r, res)) {
      host_->complete(r);
    } else {
      r->next = backlog_head_;  // resubmit the remainder first
      backlog_head_ = r;
      if (!backlog_tail_) backlog_tail_ = r;
    }
  }

  // Moves the producers' LIFO list to the FIFO backlog.
  void take_pending() {
    IoRequest* list = pending_.exchange(nullptr, std::memory_order_acquire);
    IoRequest* fifo = nullptr;
    IoRequest* last = list;
    while (list) {
      IoRequest* next = list->next;
      list->next = fifo;
      fifo = list;
      list = next;
    }
    if (!fifo) return;
    if (backlog_tail_)
      backlog_tail_->next = fifo;
    else
      backlog_head_ = fifo;
    backlog_tail_ = last;
  }

  void issue_backlog() {
    while (backlog_head_) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (!sqe) return;
      IoRequest* r = backlog_head_;
      backlog_head_ = r->next;
      if (!backlog_head_) backlog_tail_ = nullptr;
      r->next = nullptr;
      int fd = host_->begin(r);
      if (r->intra != 0)
        io_uring_prep_read(sqe, fd, r->head_base(), static_cast<unsigned>(r->head_len()), r->pos);
      else
        io_uring_prep_readv(sqe, fd, r->iov + r->first, static_cast<unsigned>(r->n - r->first),
                            r->pos);
      io_uring_sqe_set_data(sqe, r);
      ++inflight_;
    }
  }

  void submit_ready() {
    while (io_uring_sq_ready(&ring_) > 0) {
      int ret = io_uring_submit(&ring_);
      if (ret > 0 || ret == -EINTR) continue;
      break;  // 0, -EAGAIN, -EBUSY: retry after reaping (the wait polls)
    }
  }

  IoHost* host_;
  unsigned depth_;
  FdReserve* fds_;
  io_uring ring_ = {};
  bool ring_ok_ = false;
  int efd_ = -1;
  uint64_t efd_buf_ = 0;
  pthread_t reaper_ = {};
  bool started_ = false;
  bool abandoned_ = false;
  std::atomic<int> init_state_{0};  // 0 starting, 1 running, -errno failed
  std::atomic<bool> stop_{false};
  std::atomic<IoRequest*> pending_{nullptr};  // pushed by submit(), LIFO
  std::atomic<uint32_t> sleeping_{0};
  // Reaper-only state.
  IoRequest* backlog_head_ = nullptr;
  IoRequest* backlog_tail_ = nullptr;
  unsigned inflight_ = 0;
  bool wake_broken_ = false;
  // Relocation (relocate_fd / relocate_pending) and the numbers other
  // threads may read.
  std::atomic<int> ring_fd_pub_{-1};
  std::atomic<int> efd_pub_{-1};
  std::atomic<int> wakers_{0};
  std::atomic<int> reloc_fd_{-1};
  std::atomic<int> reloc_result_{0};
  std::atomic<uint32_t> reloc_seq_{0};
};

}  // namespace

IoEngine* make_uring_engine(IoHost* host, unsigned depth, FdReserve* fds, int* err) {
  auto* engine = backend_new<UringEngine>(host, depth, fds);
  if (!engine) {
    *err = -ENOMEM;
    return nullptr;
  }
  int rc = engine->start();
  if (rc != 0) {
    backend_delete(engine);
    *err = rc;
    return nullptr;
  }
  return engine;
}

}  // namespace upcache
