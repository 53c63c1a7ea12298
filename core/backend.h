// The backend: reads file data from disk straight into cache frames.
//
// Per cached file the backend holds its own descriptors: an O_DIRECT one when
// the filesystem allows it (alignment from statx STATX_DIOALIGN, else the
// device's logical block size), and a buffered one as fallback (tmpfs, FUSE,
// network filesystems, O_DIRECT refused or failing with EINVAL mid-file). The
// buffered fallback drops what it pulled into the kernel's page cache
// (POSIX_FADV_DONTNEED) so the data is not cached twice.
//
// Reads are of whole pages into page-aligned frame buffers, or of aligned
// blocks of one page (a partial page, core/frame.h); a short read at
// end of file is normal (the caller records the valid length of the tail).
//
// Asynchronous reads (readahead) go to an engine: io_uring where the kernel
// allows it, else a small thread pool (Config::async_engine). Completions are
// delivered by calling the CompletionFn on an engine thread.
//
// Ownership and threads: a Backend belongs to one process (after fork the
// child builds a new one: engine threads and rings do not survive fork). All methods are thread-safe.
// read_sync and read_async never allocate after open_file.
// The backend's descriptors are moved to high numbers and are close-on-exec;
// owns_fd() tells the shim which they are.
//
// Fault injection for tests (UPCACHE_FAULT, comma-separated):
//   eio=N[-M]      reads touching file page(s) N..M (in cache pages) fail with EIO
//   eio_once=N     the first read touching page N fails with EIO, later ones succeed
//   short=N        every read returns at most N bytes (the backend must loop)
//   einval_at=OFF  O_DIRECT reads at or past byte OFF fail with EINVAL (tests fallback)
//   eio_at=OFF     reads whose byte range contains byte OFF fail with EIO (tests the
//                  completion of partial pages: the blocks held read fine, the rest fail)
//   nodirect       open_file refuses O_DIRECT as a filesystem would (EINVAL)
#pragma once

#include <sys/stat.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>

#include "core/config.h"

namespace upcache {

class StatsSink;

// Called once per read_async request, from an engine thread, with the bytes
// read (possibly short at end of file) or -errno.
using CompletionFn = void (*)(void* ctx, uint64_t cookie, int64_t result);

struct BackendFile;  // opaque, per process and per inode

class Backend {
 public:
  // Largest number of iovecs in one request.
  static constexpr int kMaxIov = 256;

  static std::unique_ptr<Backend> create(const Config& config, StatsSink* stats,
                                         CompletionFn on_complete, void* ctx);
  virtual ~Backend() = default;

  // Opens the backend's own descriptors for the file the program has open as
  // `program_fd` (through /proc/self/fd, so renames do not matter; `path` is
  // used if that fails). Returns null if the file cannot be read at all.
  virtual BackendFile* open_file(int program_fd, const char* path) = 0;
  virtual void close_file(BackendFile* file) = 0;

  // Reads pages into iov[0..n) starting at byte `offset` (a multiple of the
  // page size); every iov_base is page aligned and every iov_len is the page
  // size. Blocks. Returns bytes read (short only at end of file) or -errno.
  virtual int64_t read_sync(BackendFile* file, uint64_t offset, const iovec* iov, int n) = 0;

  // The same, queued: returns false if the queue is full (nothing issued),
  // else the CompletionFn will be called exactly once with `cookie`.
  virtual bool read_async(BackendFile* file, uint64_t offset, const iovec* iov, int n,
                          uint64_t cookie) = 0;

  // The file's current size in bytes (fstat on the backend's descriptor), or
  // -errno. The cache asks when a read reaches its idea of end of file.
  virtual int64_t file_size(BackendFile* file) = 0;
  // fstat on the backend's descriptor: 0 or -errno.
  virtual int stat(BackendFile* file, struct stat* st) = 0;

  // The alignment a read of `file` must respect (offset, length, buffer):
  // the O_DIRECT alignment, 1 when the file reads buffered. Never more than
  // the page size. The cache reads parts of a page in blocks of at least this.
  virtual uint32_t alignment(const BackendFile* file) const = 0;
  // True when `file` reads with O_DIRECT (false: buffered fallback).
  virtual bool is_direct(const BackendFile* file) const = 0;
  // Read leases (core/lease_watch.h, upcache(7) Coherence). take_lease puts
  // a read lease on the file's read descriptor, whose description belongs
  // to this process alone (after fork the child reopens its own), with
  // `signal` sent to thread `tid` when another process breaks it; closing
  // the file ends it. Returns 0, or -errno:
  // -EAGAIN while some process has the file open for writing (this one
  // included), -EACCES/-EPERM when neither the file's owner nor CAP_LEASE,
  // -EINVAL when leases are disabled or the filesystem refuses them.
  virtual int take_lease(BackendFile* file, int signal, int tid) = 0;
  // Gives the lease up (F_UNLCK): a writer waiting for it goes on.
  virtual void release_lease(BackendFile* file) = 0;
  // F_GETLEASE: F_RDLCK while the lease holds, F_UNLCK once broken (or
  // never taken), or -errno.
  virtual int lease_state(BackendFile* file) = 0;
  // The descriptor that carries the lease (the si_fd of its break), or -1.
  virtual int lease_fd(const BackendFile* file) const = 0;
  // Breaks are signalled with `signal` from now on (F_SETSIG).
  virtual void set_lease_signal(BackendFile* file, int signal) = 0;

  // Is `fd` one of the backend's own descriptors?
  virtual bool owns_fd(int fd) const = 0;
  // The program wants the number `fd` (dup2 onto it): the file using it
  // gets a duplicate at another high number, after every read in flight on
  // it has finished; `fd` stays open but is no longer the backend's (the
  // caller's dup2 replaces it). 0, -EBUSY for the engine's own descriptors
  // (io_uring ring, eventfd) and a file being closed, or -errno.
  virtual int relocate_fd(int fd) = 0;
  // Name of the engine in use: "uring" or "threads".
  virtual const char* engine_name() const = 0;
  // Waits until every queued request has completed.
  virtual void drain() = 0;

  // The process is about to fork, after which the arena is shared: from now
  // on (in this process and in the child) asynchronous reads go through
  // threads, never io_uring (reads already on the ring finish there). Why:
  // a process killed with io_uring reads in flight is gone (a zombie, then
  // reaped) before they land; the kernel finishes them afterwards in a
  // worker of its own, into frames that another process, having failed the
  // dead one's reads, may have given to other pages meanwhile. A thread
  // blocked in a direct read cannot finish exiting before the read lands.
  // Flags only (safe in a pthread_atfork handler): starts nothing, waits for
  // nothing.
  virtual void before_fork() = 0;

  // In a child after fork: the engine's threads and ring belong to the parent.
  // Forget the parent's queue (its requests complete in the parent) and start
  // a new engine. The files' descriptors keep their numbers but are moved to
  // descriptions of the child's own (the parent's may carry its leases); a
  // file for which that fails can no longer be leased here.
  virtual void after_fork_child() = 0;
};

}  // namespace upcache
