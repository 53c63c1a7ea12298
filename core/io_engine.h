// The backend's insides shared by its parts: the per-file state, one read
// request, and the asynchronous engines (io_uring in uring_engine.cc, a thread
// pool in thread_engine.cc) that run requests for core/backend.cc.
//
// An engine only moves requests: it issues one system call (or one io_uring
// read) for the part of a request still to do, hands the raw result to
// IoHost::step() (which applies fault injection, accounting, short-read and
// EINVAL handling, and says whether the request is finished), and once it is,
// calls IoHost::complete() on an engine thread. Engine threads block every
// signal, so the program's signal handlers never run on them.
#pragma once

#include <pthread.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "core/backend.h"

namespace upcache {

class FdReserve;

struct BackendFile {
  enum Mode : uint8_t { kDirect, kSwitching, kBuffered };

  int fd = -1;              // ours, high-numbered, close-on-exec
  // `fd`'s open file description is this process's alone, so it can carry
  // the process's read lease (Backend::take_lease): a forked child gets a
  // description of its own in after_fork_child, and false if it could not.
  bool own_description = true;
  uint32_t align = 1;       // direct I/O alignment: offset, length and memory
  bool tmpfs = false;       // tmpfs/ramfs: no page cache to drop
  std::atomic<uint8_t> mode{kBuffered};
  std::atomic<uint32_t> inflight{0};  // queued async requests naming this file
  BackendFile* next = nullptr;        // the backend's list of open files
  BackendFile* prev = nullptr;

  bool direct() const { return mode.load(std::memory_order_acquire) != kBuffered; }
};

// One read in progress. The iovecs are the caller's (read_sync) or the
// request slot's own copy (read_async); `first` and `intra` say where the
// part still to read starts.
struct IoRequest {
  BackendFile* file = nullptr;
  const iovec* iov = nullptr;
  int n = 0;
  int first = 0;           // first iovec not completely filled
  uint64_t intra = 0;      // bytes of iov[first] already filled
  uint64_t pos = 0;        // file offset of the next byte to read
  uint64_t remaining = 0;  // bytes still to read
  uint64_t done = 0;       // bytes read so far
  uint64_t buffered_lo = 0, buffered_hi = 0;  // range read through the page cache
  uint64_t start_ns = 0;   // for the io latency histogram (0: stats off)
  uint64_t cookie = 0;
  int64_t result = 0;      // set when finished: bytes or -errno
  uint32_t retries = 0;
  bool direct = false;     // mode of the attempt in flight
  int slot = -1;           // async slot index, -1 for read_sync
  IoRequest* next = nullptr;  // engine queues (intrusive)

  // Buffer and length of the next single-buffer read (intra != 0).
  void* head_base() const { return static_cast<char*>(iov[first].iov_base) + intra; }
  uint64_t head_len() const { return iov[first].iov_len - intra; }
};

// What engines need from the backend.
class IoHost {
 public:
  // Snapshots the file's mode into r->direct before an attempt; returns the fd.
  virtual int begin(IoRequest* r) = 0;
  // Feeds the raw result of one attempt; true when the request is finished
  // (r->result set), false when another attempt must be issued.
  virtual bool step(IoRequest* r, int64_t res) = 0;
  // Runs the rest of the request with blocking system calls.
  virtual void execute(IoRequest* r) = 0;
  // Delivers the completion and frees the request. Engine threads only.
  virtual void complete(IoRequest* r) = 0;
  // Around a stretch that uses files' descriptor numbers (from begin() to
  // the submission that resolves them, and step()): a descriptor is not
  // moved meanwhile (Backend::relocate_fd). execute() does it itself.
  virtual void fds_enter() = 0;
  virtual void fds_exit() = 0;

 protected:
  ~IoHost() = default;
};

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  // Queues a request; false if it cannot (nothing issued).
  virtual bool submit(IoRequest* r) = 0;
  virtual const char* name() const = 0;
  // Moves the engine's own descriptor `fd` to another number of the
  // reserve (see Backend::relocate_fd). 0, -ENOENT if not the engine's, or
  // -errno.
  virtual int relocate_fd(int fd) {
    (void)fd;
    return -ENOENT;
  }
  // In a child after fork: the threads are gone. Release what the child
  // holds (descriptors, mappings) without touching the parent's state;
  // the object is then leaked, never destroyed (its mutexes and condition
  // variables may be in a state only the parent's threads could resolve).
  virtual void abandon_after_fork() = 0;
};

// Both return null on failure (*err = -errno). `depth` is the most requests
// that can be queued at once.
IoEngine* make_uring_engine(IoHost* host, unsigned depth, FdReserve* fds, int* err);
IoEngine* make_thread_engine(IoHost* host, unsigned depth, unsigned threads, int* err);

// Starts a thread with every signal blocked from its first instruction, and
// returns once the thread runs `fn` (past the runtime's start-up, so that a
// fork() right after finds no half-started thread). Returns 0 or a positive
// errno (pthread style).
int start_engine_thread(pthread_t* thread, void* (*fn)(void*), void* arg);
// Names the calling thread (PR_SET_NAME; shown by ps/top).
void name_engine_thread(const char* name);

// The logical block size of block device `dev` (BLKSSZGET on /dev/block/M:m,
// else sysfs), or 0 when it has none (NFS, FUSE, btrfs, overlay...).
uint32_t device_logical_block_size(uint64_t dev);

// Objects of the backend live in mimalloc, not in the program's heap.
void* backend_alloc(size_t size, size_t align);
void backend_free(void* p);

template <typename T, typename... Args>
T* backend_new(Args&&... args) {
  void* p = backend_alloc(sizeof(T), alignof(T));
  return p ? new (p) T(static_cast<Args&&>(args)...) : nullptr;
}
template <typename T>
void backend_delete(T* p) {
  if (!p) return;
  p->~T();
  backend_free(p);
}

uint64_t monotonic_ns();

}  // namespace upcache
