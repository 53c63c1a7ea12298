// The backend (core/backend.h): per-file descriptors, O_DIRECT with a
// buffered fallback, the read loop shared by read_sync and both engines,
// fault injection, accounting, and the pool of asynchronous requests.
//
// One descriptor per file. It is opened O_RDONLY through /proc/self/fd/<fd>
// (else the path), then switched to O_DIRECT with fcntl(F_SETFL) when direct
// I/O is wanted and possible: the kernel makes the same check there as at
// open (FMODE_CAN_ODIRECT), refusing with EINVAL. The same call clears
// O_DIRECT when a file must fall back to buffered reads mid-way (EINVAL from a
// direct read), so a file never needs a second descriptor.
//
// Buffered descriptors get POSIX_FADV_RANDOM (no kernel readahead beyond what
// we ask: the cache does its own) and every buffered read is followed by
// POSIX_FADV_DONTNEED on its range, so the kernel does not keep a second copy.
//
// The read loop (step): a short read not at end of file is continued; a short
// direct read ending at an unaligned offset is at end of file (checked with
// fstat; if it is not, the file goes buffered); EINVAL from a direct read
// switches the file to buffered and retries; any other error fails the whole
// request (a partial count would read as end of file to the caller).
#include <linux/fs.h>
#include <linux/magic.h>
#include <mimalloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "core/backend.h"
#include "core/fault.h"
#include "core/fd_reserve.h"
#include "core/io_engine.h"
#include "core/stats_sink.h"
#include "core/sys.h"

namespace upcache {

// ---------------------------------------------------------------- helpers

void* backend_alloc(size_t size, size_t align) { return mi_malloc_aligned(size, align); }
void backend_free(void* p) { mi_free(p); }

uint64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

// What a starting engine thread needs, on its creator's stack until the
// thread has said it is running.
struct EngineThreadStart {
  void* (*fn)(void*);
  void* arg;
  std::atomic<uint32_t> running{0};
};

void* engine_thread_entry(void* p) {
  auto* start = static_cast<EngineThreadStart*>(p);
  void* (*fn)(void*) = start->fn;
  void* arg = start->arg;
  start->running.store(1, std::memory_order_release);
  start->running.notify_one();  // `start` is gone from here on
  return fn(arg);
}

}  // namespace

int start_engine_thread(pthread_t* thread, void* (*fn)(void*), void* arg) {
  // Block everything before creating: the new thread inherits the mask, so
  // no signal can reach it even before its first instruction.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  EngineThreadStart start{fn, arg};
  int rc = pthread_create(thread, nullptr, &engine_thread_entry, &start);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  // Wait until the thread runs our code: before that it is inside the
  // runtime's thread start-up (a sanitizer's allocator, glibc's stack
  // set-up), holding locks that a fork() by the program right after this
  // read would copy locked into the child, where they stay locked for ever
  // (seen as a hung child under ASan). Once the thread is here, it parks
  // in the engine's own wait, which fork handles.
  if (rc == 0)
    while (start.running.load(std::memory_order_acquire) == 0) start.running.wait(0, std::memory_order_acquire);
  return rc;
}

void name_engine_thread(const char* name) {
  sys::prctl(PR_SET_NAME, reinterpret_cast<long>(name));
}

namespace {

// Writes "<prefix><a>:<b><suffix>" into buf.
void format_dev_path(char* buf, size_t size, const char* prefix, unsigned a, unsigned b,
                     const char* suffix) {
  snprintf(buf, size, "%s%u:%u%s", prefix, a, b, suffix);
}

uint32_t read_sysfs_u32(const char* path) {
  int fd = sys::openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32];
  int64_t n = sys::read(fd, buf, sizeof buf - 1);
  sys::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  uint32_t v = 0;
  for (char* p = buf; *p >= '0' && *p <= '9'; ++p) v = v * 10 + static_cast<uint32_t>(*p - '0');
  return v;
}

bool power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

uint32_t device_logical_block_size(uint64_t dev) {
  unsigned maj = major(dev), min = minor(dev);
  if (maj == 0) return 0;  // anonymous device: no block device behind it
  char path[96];
  format_dev_path(path, sizeof path, "/dev/block/", maj, min, "");
  int fd = sys::openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) {
    int size = 0;
    int rc = sys::ioctl(fd, BLKSSZGET, &size);
    sys::close(fd);
    if (rc == 0 && size > 0) return static_cast<uint32_t>(size);
  }
  // A whole disk has queue/ itself; a partition finds it in its parent.
  format_dev_path(path, sizeof path, "/sys/dev/block/", maj, min, "/queue/logical_block_size");
  if (uint32_t v = read_sysfs_u32(path)) return v;
  format_dev_path(path, sizeof path, "/sys/dev/block/", maj, min, "/../queue/logical_block_size");
  return read_sysfs_u32(path);
}

namespace {

// kAuto tries io_uring first. Measured on ext4/virtio, 1 GiB read cold with
// 256 KiB..4 MiB requests, 1..16 in flight: the same throughput as the thread
// pool within noise (the device is the limit), with equal or less CPU, and
// its queue depth is not capped by the number of threads.
constexpr bool kAutoPrefersUring = true;

class BackendImpl final : public Backend, private IoHost {
 public:
  static constexpr int kSlots = 64;  // asynchronous requests queued at most
  static constexpr uint32_t kMaxRetries = 16;

  BackendImpl(const Config& config, StatsSink* stats, CompletionFn fn, void* ctx)
      : page_size_(config.page_size),
        direct_mode_(config.direct),
        engine_choice_(config.async_engine),
        io_threads_(config.io_threads),
        stats_(stats),
        on_complete_(fn),
        ctx_(ctx) {
    faults_.parse(config.fault.c_str(), page_size_);
    long ps = sysconf(_SC_PAGESIZE);
    sys_page_ = ps > 0 ? static_cast<uint64_t>(ps) : 4096;
    pthread_mutex_init(&files_mu_, nullptr);
    init_fd_lock();
  }

  ~BackendImpl() override {
    drain();
    backend_delete(engine_.exchange(nullptr));
    while (files_) close_file(files_);
    pthread_mutex_destroy(&files_mu_);
  }

  static void* operator new(size_t size) {
    void* p = backend_alloc(size, 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void operator delete(void* p) { backend_free(p); }

  // The engine (threads, ring) starts with the first asynchronous read, so a
  // process that never reads ahead pays nothing for it, and no thread is ever
  // started from inside open(): other libraries open files while they hold
  // their own locks (ASan opens /proc/self/exe during its initialisation, with
  // its thread registry locked), and a pthread_create there deadlocks.
  // Under files_mu_.
  void ensure_engine_locked() {
    if (engine_started_.load(std::memory_order_relaxed)) return;
    engine_.store(start_engine(), std::memory_order_release);
    engine_started_.store(true, std::memory_order_release);
  }
  void ensure_engine() {
    pthread_mutex_lock(&files_mu_);
    ensure_engine_locked();
    pthread_mutex_unlock(&files_mu_);
  }

  IoEngine* start_engine() {
    IoEngine* engine = nullptr;
    int err = 0;
    // A forked family never uses io_uring (before_fork).
    const AsyncEngine choice = shared_arena_.load(std::memory_order_acquire) ? AsyncEngine::kThreads
                                                                              : engine_choice_;
    bool uring_first = choice == AsyncEngine::kUring ||
                       (choice == AsyncEngine::kAuto && kAutoPrefersUring);
    if (choice != AsyncEngine::kThreads && uring_first)
      engine = make_uring_engine(this, kSlots, &fds_, &err);
    // Explicit kUring also falls back: io_uring may be forbidden (seccomp,
    // io_uring_disabled) and threads still serve.
    if (!engine) engine = make_thread_engine(this, kSlots, io_threads_, &err);
    if (!engine && choice == AsyncEngine::kAuto && !uring_first)
      engine = make_uring_engine(this, kSlots, &fds_, &err);
    // No engine at all (no threads to be had): read_async refuses, the
    // caller reads synchronously.
    return engine;
  }

  // ------------------------------------------------------------ files

  BackendFile* open_file(int program_fd, const char* path) override {
    // O_NONBLOCK only guards the open itself (a path raced into a FIFO);
    // F_SETFL below sets the final flags.
    const int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    int fd = -ENOENT;
    bool via_proc = false;
    if (program_fd >= 0) {
      char proc[40];
      snprintf(proc, sizeof proc, "/proc/self/fd/%d", program_fd);
      fd = sys::openat(AT_FDCWD, proc, flags);
      via_proc = fd >= 0;
    }
    if (fd < 0 && path) fd = sys::openat(AT_FDCWD, path, flags);
    if (fd < 0) return nullptr;

    struct stat st;
    if (sys::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      sys::close(fd);
      return nullptr;
    }
    if (!via_proc && program_fd >= 0) {
      // Opened by name: make sure it is still the program's file.
      struct stat pst;
      if (sys::fstat(program_fd, &pst) == 0 && (pst.st_dev != st.st_dev || pst.st_ino != st.st_ino)) {
        sys::close(fd);
        return nullptr;
      }
    }
    struct statfs sfs;
    bool tmpfs = sys::fstatfs(fd, &sfs) == 0 &&
                 (sfs.f_type == TMPFS_MAGIC || sfs.f_type == static_cast<decltype(sfs.f_type)>(RAMFS_MAGIC));

    uint32_t align = 0;
    bool direct = direct_mode_ != DirectMode::kOff && !faults_.nodirect() && !tmpfs;
    if (direct) {
      struct statx sx;
      memset(&sx, 0, sizeof sx);
      if (sys::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
          (sx.stx_mask & STATX_DIOALIGN)) {
        if (sx.stx_dio_offset_align == 0) direct = false;  // this file cannot do direct I/O
        align = sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align
                                                              : sx.stx_dio_mem_align;
      } else {
        align = device_logical_block_size(st.st_dev);
        // No device to ask: a page is aligned enough for any filesystem.
        if (align == 0) align = static_cast<uint32_t>(sys_page_);
      }
      if (!power_of_two(align) || align > page_size_) direct = false;
    }
    // Final flags: O_DIRECT or nothing (this also clears O_NONBLOCK). EINVAL,
    // EOPNOTSUPP, EPERM or anything else: buffered.
    if (direct && sys::fcntl(fd, F_SETFL, O_DIRECT) != 0) direct = false;
    if (!direct) {
      if (sys::fcntl(fd, F_SETFL, 0) != 0) {
        sys::close(fd);
        return nullptr;
      }
      if (!tmpfs) sys::fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    }

    fd = fds_.adopt(fd);
    if (fd < 0) return nullptr;
    auto* f = backend_new<BackendFile>();
    if (!f) {
      fds_.release(fd);
      return nullptr;
    }
    f->fd = fd;
    f->align = direct ? align : 1;
    f->tmpfs = tmpfs;
    f->mode.store(direct ? BackendFile::kDirect : BackendFile::kBuffered, std::memory_order_release);
    pthread_mutex_lock(&files_mu_);
    f->next = files_;
    if (files_) files_->prev = f;
    files_ = f;
    pthread_mutex_unlock(&files_mu_);
    return f;
  }

  void close_file(BackendFile* f) override {
    if (!f) return;
    // Requests still queued for this file must finish before its descriptor
    // goes (the cache drains first; this is the backstop).
    for (int spins = 0; f->inflight.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins < 64) {
        sys::sched_yield();
      } else {
        sys::nanosleep_ns(100000);
      }
    }
    pthread_mutex_lock(&files_mu_);
    if (f->prev) f->prev->next = f->next;
    else files_ = f->next;
    if (f->next) f->next->prev = f->prev;
    int fd = f->fd;  // relocate_fd changes it under files_mu_
    pthread_mutex_unlock(&files_mu_);
    fds_.release(fd);  // closing it ends the lease
    backend_delete(f);
  }

  // ------------------------------------------------------------ leases

  int take_lease(BackendFile* f, int signal, int tid) override {
    if (!f) return -EBADF;
    if (!f->own_description) return -ENOLCK;  // a child that could not reopen it
    // Every time: giving a lease up (F_UNLCK) also forgets the owner and
    // the signal, and a lease taken with no owner would signal the whole
    // process with SIGIO, whose default action kills it.
    f_owner_ex owner{F_OWNER_TID, tid};
    fds_enter();
    long r = -EINVAL;
    if (sys::fcntl(f->fd, F_SETSIG, signal) == 0 &&
        sys::raw(SYS_fcntl, f->fd, F_SETOWN_EX, reinterpret_cast<long>(&owner)) == 0)
      r = sys::raw(SYS_fcntl, f->fd, F_SETLEASE, F_RDLCK);
    fds_exit();
    return r < 0 ? static_cast<int>(r) : 0;
  }

  void release_lease(BackendFile* f) override { lease_call(f, F_SETLEASE, F_UNLCK); }

  int lease_state(BackendFile* f) override {
    if (!f || !f->own_description) return F_UNLCK;
    return static_cast<int>(lease_call(f, F_GETLEASE, 0));
  }

  int lease_fd(const BackendFile* f) const override { return f && f->own_description ? f->fd : -1; }

  void set_lease_signal(BackendFile* f, int signal) override { lease_call(f, F_SETSIG, signal); }

  // fcntl(cmd, arg) on the file's descriptor, its number held still.
  long lease_call(BackendFile* f, int cmd, long arg) {
    if (!f || !f->own_description) return -EBADF;
    fds_enter();
    long r = sys::raw(SYS_fcntl, f->fd, cmd, arg);
    fds_exit();
    return r;
  }

  int stat(BackendFile* f, struct stat* st) override {
    if (!f) return -EBADF;
    fds_enter();
    int rc = sys::fstat(f->fd, st);
    fds_exit();
    return rc;
  }

  int64_t file_size(BackendFile* f) override {
    if (!f) return -EBADF;
    struct stat st;
    fds_enter();
    int rc = sys::fstat(f->fd, &st);
    fds_exit();
    return rc < 0 ? rc : static_cast<int64_t>(st.st_size);
  }

  int relocate_fd(int fd) override {
    if (!fds_.owns(fd)) return -EBADF;
    // Every use of a file's descriptor number holds fd_lock_ for reading:
    // with it held for writing, nobody is between loading the number and
    // the system call that resolves it.
    pthread_rwlock_wrlock(&fd_lock_);
    pthread_mutex_lock(&files_mu_);
    int rc = -EBUSY;  // one of the engine's (ring, eventfd), or a file being closed
    for (BackendFile* f = files_; f; f = f->next) {
      // A lease stays with the description; its breaks still name the old
      // number (si_fd), which the cache takes as "look at every lease".
      if (f->fd != fd) continue;
      int moved = fds_.duplicate(fd);
      if (moved >= 0) {
        f->fd = moved;
        fds_.forget(fd);  // still open: the program's dup2 replaces it
        rc = 0;
      } else {
        rc = moved;
      }
      break;
    }
    pthread_mutex_unlock(&files_mu_);
    pthread_rwlock_unlock(&fd_lock_);
    if (rc == -EBUSY) {
      // Not a file's: the engine's own (ring, eventfd)?
      IoEngine* e = engine_.load(std::memory_order_acquire);
      int er = e != nullptr ? e->relocate_fd(fd) : -ENOENT;
      if (er != -ENOENT) rc = er;
    }
    return rc;
  }

  bool is_direct(const BackendFile* f) const override { return f && f->direct(); }
  uint32_t alignment(const BackendFile* f) const override { return f ? f->align : 1; }
  bool owns_fd(int fd) const override { return fds_.owns(fd); }
  // Starts the engine if no file did yet, so the answer is the real one.
  const char* engine_name() const override {
    const_cast<BackendImpl*>(this)->ensure_engine();
    IoEngine* e = engine_.load(std::memory_order_acquire);
    return e ? e->name() : "none";
  }

  // ------------------------------------------------------------ reads

  int64_t read_sync(BackendFile* f, uint64_t offset, const iovec* iov, int n) override {
    IoRequest r;
    int64_t rc = prepare(&r, f, offset, iov, n);
    if (rc < 0) return rc;
    execute(&r);
    return r.result;
  }

  bool read_async(BackendFile* f, uint64_t offset, const iovec* iov, int n,
                  uint64_t cookie) override {
    IoEngine* engine = engine_.load(std::memory_order_acquire);
    if (!engine && !engine_started_.load(std::memory_order_acquire)) {
      ensure_engine();
      engine = engine_.load(std::memory_order_acquire);
    }
    if (!engine || !iov || n <= 0 || n > kMaxIov) return false;
    int slot = claim_slot();
    if (slot < 0) return false;
    Slot& s = slots_[slot];
    memcpy(s.iov, iov, sizeof(iovec) * static_cast<size_t>(n));
    s.req = IoRequest();
    if (prepare(&s.req, f, offset, s.iov, n) < 0) {
      release_slot(slot);
      return false;  // the caller's read_sync will report the error
    }
    s.req.slot = slot;
    s.req.cookie = cookie;
    f->inflight.fetch_add(1, std::memory_order_relaxed);
    outstanding_.fetch_add(1, std::memory_order_seq_cst);
    // If before_fork() dropped io_uring meanwhile, use the engine that
    // replaced it when there is one already (the ring stays up otherwise).
    if (IoEngine* now = engine_.load(std::memory_order_seq_cst); now != nullptr) engine = now;
    if (!engine->submit(&s.req)) {
      f->inflight.fetch_sub(1, std::memory_order_relaxed);
      outstanding_.fetch_sub(1, std::memory_order_relaxed);
      release_slot(slot);
      return false;
    }
    return true;
  }

  // Not from a completion callback: it would wait for itself.
  void drain() override {
    uint32_t v;
    while ((v = outstanding_.load(std::memory_order_acquire)) != 0)
      outstanding_.wait(v, std::memory_order_acquire);
  }

  // Runs in the pthread_atfork prepare handler, where a sanitizer's fork
  // interceptor already holds its allocator and thread-registry locks: no
  // thread may be started and nothing waited for here (both hung the ASan
  // build). So only flags: the next queued read starts the thread engine;
  // the ring stays up, leaked as after fork (io_engine.h), for the reads it
  // has already, which still finish in this process.
  void before_fork() override {
    if (shared_arena_.exchange(true, std::memory_order_seq_cst)) return;
    IoEngine* e = engine_.load(std::memory_order_acquire);
    if (e != nullptr && strcmp(e->name(), "uring") == 0 &&
        engine_.compare_exchange_strong(e, nullptr, std::memory_order_seq_cst))
      engine_started_.store(false, std::memory_order_release);
  }

  void after_fork_child() override {
    shared_arena_.store(true, std::memory_order_relaxed);  // see before_fork
    // The parent's engine threads are gone, its requests complete in the
    // parent. The files' descriptors were inherited (they share the open file
    // descriptions with the parent, O_DIRECT flag included).
    if (IoEngine* e = engine_.exchange(nullptr)) e->abandon_after_fork();  // leaked, see io_engine.h
    engine_started_.store(false, std::memory_order_relaxed);
    free_mask_.store(~0ull, std::memory_order_relaxed);
    outstanding_.store(0, std::memory_order_relaxed);
    pthread_mutex_init(&files_mu_, nullptr);
    init_fd_lock();
    for (BackendFile* f = files_; f; f = f->next) {
      f->inflight.store(0, std::memory_order_relaxed);
      if (f->mode.load(std::memory_order_relaxed) == BackendFile::kSwitching) {
        int fl = sys::fcntl(f->fd, F_GETFL);
        f->mode.store(fl >= 0 && (fl & O_DIRECT) ? BackendFile::kDirect : BackendFile::kBuffered,
                      std::memory_order_relaxed);
      }
      take_own_description(f);
    }
  }

 private:
  struct Slot {
    IoRequest req;
    iovec iov[kMaxIov];
  };

  // Validates and fills a request; returns 0 or -errno.
  int64_t prepare(IoRequest* r, BackendFile* f, uint64_t offset, const iovec* iov, int n) {
    if (!f || !iov || n <= 0 || n > kMaxIov || offset > static_cast<uint64_t>(INT64_MAX))
      return -EINVAL;
    uint64_t total = 0;
    bool aligned = (offset & (f->align - 1)) == 0;
    for (int i = 0; i < n; ++i) {
      total += iov[i].iov_len;
      aligned &= ((reinterpret_cast<uintptr_t>(iov[i].iov_base) | iov[i].iov_len) &
                  (f->align - 1)) == 0;
    }
    // A misaligned request on a direct file is a caller's bug (frames are
    // page aligned, and the alignment never exceeds a page): refuse it
    // rather than let the kernel's EINVAL turn the file buffered.
    if (!aligned && f->direct()) return -EINVAL;
    r->file = f;
    r->iov = iov;
    r->n = n;
    r->pos = offset;
    r->remaining = total;
    r->start_ns = stats_ ? monotonic_ns() : 0;
    skip_empty(r);
    return 0;
  }

  static void skip_empty(IoRequest* r) {
    while (r->first < r->n && r->iov[r->first].iov_len == r->intra) {
      ++r->first;
      r->intra = 0;
    }
  }

  int claim_slot() {
    uint64_t m = free_mask_.load(std::memory_order_acquire);
    while (m != 0) {
      int i = __builtin_ctzll(m);
      if (free_mask_.compare_exchange_weak(m, m & ~(1ull << i), std::memory_order_acq_rel,
                                           std::memory_order_acquire))
        return i;
    }
    return -1;
  }
  void release_slot(int i) { free_mask_.fetch_or(1ull << i, std::memory_order_release); }

  void switch_to_buffered(BackendFile* f) {
    uint8_t expected = BackendFile::kDirect;
    if (f->mode.compare_exchange_strong(expected, BackendFile::kSwitching,
                                        std::memory_order_acq_rel)) {
      int fl = sys::fcntl(f->fd, F_GETFL);
      if (fl >= 0) sys::fcntl(f->fd, F_SETFL, fl & ~O_DIRECT);
      if (!f->tmpfs) sys::fadvise(f->fd, 0, 0, POSIX_FADV_RANDOM);
      f->mode.store(BackendFile::kBuffered, std::memory_order_release);
      return;
    }
    while (f->mode.load(std::memory_order_acquire) == BackendFile::kSwitching) sys::sched_yield();
  }

  // ------------------------------------------------------------ IoHost

  int begin(IoRequest* r) override {
    uint8_t m;
    while ((m = r->file->mode.load(std::memory_order_acquire)) == BackendFile::kSwitching)
      sys::sched_yield();
    r->direct = m == BackendFile::kDirect;
    return r->file->fd;
  }

  void execute(IoRequest* r) override {
    fds_enter();
    for (;;) {
      int fd = begin(r);
      int64_t res;
      if (r->first >= r->n)
        res = 0;
      else if (r->intra != 0)
        res = sys::pread(fd, r->head_base(), r->head_len(), static_cast<int64_t>(r->pos));
      else
        res = sys::preadv(fd, r->iov + r->first, r->n - r->first, static_cast<int64_t>(r->pos));
      if (step(r, res)) break;
    }
    fds_exit();
  }

  // In a child after fork: the description is shared with the parent, whose
  // lease it may carry (breaks go to the parent's thread, and the parent's
  // exit would not end it while the child holds it). The child moves its
  // number to a description of its own, with the same flags.
  void take_own_description(BackendFile* f) {
    char proc[40];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    int fl = sys::fcntl(f->fd, F_GETFL);
    int fd = sys::openat(AT_FDCWD, proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    bool ok = fl >= 0 && fd >= 0 && sys::fcntl(fd, F_SETFL, fl & O_DIRECT) == 0 &&
              sys::raw(SYS_dup3, fd, f->fd, O_CLOEXEC) == f->fd;
    if (fd >= 0) sys::close(fd);
    f->own_description = ok;
  }

  void fds_enter() override { pthread_rwlock_rdlock(&fd_lock_); }
  void fds_exit() override { pthread_rwlock_unlock(&fd_lock_); }

  void init_fd_lock() {
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    // A relocation must not wait behind an endless stream of readers.
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&fd_lock_, &a);
    pthread_rwlockattr_destroy(&a);
  }

  bool step(IoRequest* r, int64_t res) override {
    BackendFile* f = r->file;
    uint64_t asked = r->first >= r->n ? 0 : (r->intra != 0 ? r->head_len() : r->remaining);
    if (faults_.active()) res = faults_.filter(r->pos, asked, r->direct, f->align, res);
    if (res < 0) {
      if ((res == -EINTR || res == -EAGAIN) && ++r->retries < kMaxRetries) return false;
      if (res == -EINVAL && r->direct) {
        // O_DIRECT refused mid-file: buffered from now on, for this file.
        switch_to_buffered(f);
        return false;
      }
      return finish(r, res);
    }
    if (res == 0 || asked == 0) return finish(r, static_cast<int64_t>(r->done));
    uint64_t got = static_cast<uint64_t>(res) < asked ? static_cast<uint64_t>(res) : asked;
    if (r->direct) {
      if (stats_) stats_->add(stats::kDirectBytes, got);
    } else {
      if (stats_) stats_->add(stats::kBufferedBytes, got);
      if (r->buffered_hi == r->buffered_lo) r->buffered_lo = r->buffered_hi = r->pos;
      if (r->pos < r->buffered_lo) r->buffered_lo = r->pos;
      if (r->pos + got > r->buffered_hi) r->buffered_hi = r->pos + got;
    }
    advance(r, got);
    if (r->remaining == 0) return finish(r, static_cast<int64_t>(r->done));
    // Short. A direct read only stops at an unaligned offset at end of file;
    // if fstat says otherwise this filesystem's direct I/O is odd: go
    // buffered. Any other short read is simply continued (the next read
    // returns 0 at end of file).
    if (r->direct && (r->pos & (f->align - 1)) != 0) {
      struct stat st;
      if (sys::fstat(f->fd, &st) == 0 && r->pos >= static_cast<uint64_t>(st.st_size))
        return finish(r, static_cast<int64_t>(r->done));
      switch_to_buffered(f);
    }
    return false;
  }

  static void advance(IoRequest* r, uint64_t got) {
    r->pos += got;
    r->done += got;
    r->remaining -= got;
    while (got > 0 && r->first < r->n) {
      uint64_t room = r->iov[r->first].iov_len - r->intra;
      if (got >= room) {
        got -= room;
        ++r->first;
        r->intra = 0;
      } else {
        r->intra += got;
        got = 0;
      }
    }
    skip_empty(r);
  }

  bool finish(IoRequest* r, int64_t result) {
    r->result = result;
    BackendFile* f = r->file;
    if (r->buffered_hi > r->buffered_lo && !f->tmpfs) {
      uint64_t lo = r->buffered_lo & ~(sys_page_ - 1);
      uint64_t hi = (r->buffered_hi + sys_page_ - 1) & ~(sys_page_ - 1);
      sys::fadvise(f->fd, static_cast<int64_t>(lo), static_cast<int64_t>(hi - lo),
                   POSIX_FADV_DONTNEED);
    }
    if (stats_) {
      if (result < 0) stats_->add(stats::kIoErrors);
      if (r->start_ns) stats_->latency(stats::kIoLatency, monotonic_ns() - r->start_ns);
    }
    return true;
  }

  void complete(IoRequest* r) override {
    BackendFile* f = r->file;
    uint64_t cookie = r->cookie;
    int64_t result = r->result;
    // Free the slot first: the callback may queue the next request.
    release_slot(r->slot);
    on_complete_(ctx_, cookie, result);
    f->inflight.fetch_sub(1, std::memory_order_release);
    if (outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1) outstanding_.notify_all();
  }

  const uint64_t page_size_;
  const DirectMode direct_mode_;
  const AsyncEngine engine_choice_;
  const unsigned io_threads_;
  StatsSink* const stats_;
  const CompletionFn on_complete_;
  void* const ctx_;
  uint64_t sys_page_ = 4096;
  FaultSpec faults_;
  FdReserve fds_;
  std::atomic<IoEngine*> engine_{nullptr};
  std::atomic<bool> engine_started_{false};  // set under files_mu_
  pthread_mutex_t files_mu_;
  pthread_rwlock_t fd_lock_;  // readers: uses of files' descriptor numbers; writer: relocate_fd
  BackendFile* files_ = nullptr;
  alignas(64) std::atomic<uint64_t> free_mask_{~0ull};
  alignas(64) std::atomic<uint32_t> outstanding_{0};
  std::atomic<bool> shared_arena_{false};  // before_fork: no io_uring from then on
  Slot slots_[kSlots];
};

static_assert(BackendImpl::kSlots == 64, "the slot mask is one 64-bit word");

}  // namespace

std::unique_ptr<Backend> Backend::create(const Config& config, StatsSink* stats,
                                         CompletionFn on_complete, void* ctx) {
  if (config.page_size == 0 || !power_of_two(config.page_size) || !on_complete) return nullptr;
  std::unique_ptr<BackendImpl> backend;
  try {
    backend.reset(new BackendImpl(config, stats, on_complete, ctx));
  } catch (...) {
    return nullptr;
  }
  return backend;
}

}  // namespace upcache
