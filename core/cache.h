// The cache: the user-space page cache that core/ offers to the shim.
//
// Cache::read is filemap_read: batch lookup of the pages a read covers,
// synchronous readahead on a miss, asynchronous readahead on a page carrying
// the READAHEAD mark, waiting for pages in flight, copying out honouring end
// of file and the valid length of the tail page.
//
// Sharing: the arena (frames, index, inode table) is mapped MAP_SHARED, so a
// forked child and its parent serve each other's pages. Everything else here
// (the backend, FileRefs) belongs to one process; after fork the child calls
// after_fork_child() before anything else.
//
// Threads: every method is thread-safe. read() takes no global lock and does
// not allocate; a hit makes no system call. RaState is the caller's (one per
// open file description) and must be serialized by the caller.
// Errors: methods never throw; they return -errno.
#pragma once

#include <sys/stat.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/copy_guard.h"
#include "core/hit_cursor.h"
#include "core/readahead.h"
#include "core/stats_sink.h"

namespace upcache {

struct FileRef;  // a cached file as seen by this process; reference counted

enum ReadFlags : unsigned {
  kReadNoWait = 1u << 0,  // RWF_NOWAIT: -EAGAIN unless every page is up to date
};

class Cache {
 public:
  // Builds the arena and the backend. On failure returns null and says why.
  static std::unique_ptr<Cache> create(const Config& config, StatsSink* stats, std::string* error);
  virtual ~Cache() = default;

  const Config& config() const { return config_; }

  // The program has `fd` open (opened from `path`, which may be null) with
  // `open_flags`. Decides whether its reads are served from the cache: a
  // regular file on a real filesystem, at least UPCACHE_MIN_FILE bytes long,
  // allowed by UPCACHE_INCLUDE/EXCLUDE, readable. Validates the inode (dev, ino, generation, size, mtime, ctime):
  // a changed or recycled inode gets a new file id, so old pages are never
  // served. Returns a FileRef with one reference, or null (pass through).
  virtual FileRef* attach(int fd, const char* path, int open_flags) = 0;
  virtual void retain(FileRef* file) = 0;
  virtual void release(FileRef* file) = 0;

  // A fresh readahead state for a new open file description.
  RaState new_ra_state() const;

  // Partial pages (core/frame.h): a miss that readahead does not extend (a
  // random read, RaWindow::stream false) of part of one page reads only the
  // 4 KiB blocks (or O_DIRECT alignment) it needs; the page then holds just
  // those bytes. read() and read_hit() serve bytes inside them as hits and
  // never serve a byte outside; a read needing other bytes, a readahead
  // window or prefetch() covering the page reads the whole page into the
  // same frame (exactly once, whoever races for it). Such a completion
  // rewrites the bytes held with the values they had: correct as long as the
  // file did not change behind the cache's back, which coherence (below)
  // and revalidation at open already require. A completion that fails
  // drops the page; a later read reads it again.
  //
  // Reads into iov[0..iovcnt) from byte `pos` of `file`. Returns the bytes
  // read (0 at end of file, short only at end of file) or -errno: -EIO when
  // the device failed, -EAGAIN with kReadNoWait when a page is not up to
  // date or lacks bytes asked for (a partial page), -ENOBUFS when the cache does not serve this read (no frame could
  // be had: every frame pinned or in flight; or the file is mapped shared
  // and writable, see mapped_writable): the caller should then pass the whole
  // read to the kernel (bytes already copied into iov are copied again, the
  // same). Costs one relaxed load for the mapping check.
  virtual int64_t read(FileRef* file, RaState& ra, uint64_t pos, const iovec* iov, int iovcnt,
                       unsigned flags = 0) = 0;

  // The hit fast path. Serves [pos, pos + n) into `buf` when the range lies
  // in one page that is cached and up to date and the read has nothing else
  // to do: not at or past the known end of file, no READAHEAD mark to act on,
  // no read-ahead page read for the first time, the REFERENCED bit already
  // set. Takes no lock and no pin and does no atomic read-modify-write (but
  // the counters of a thread that owns no stripe, stats_sink.h): it
  // finds the frame through the thread's frame hints (frame_hint.h) or the
  // lock-free index, copies, then checks that the frame still held the page
  // the whole time (a validated copy, like a seqlock reader; see frame.h).
  // Returns n when it served the read, counted exactly as read() counts a
  // one-page hit and with ra.prev_pos updated; 0 when it did not (nothing
  // counted, `buf` possibly written): the caller then calls read(), which does
  // the rest (misses, marks, end of file, EFAULT, bytes a partial page does
  // not hold).
  // Thread safety: may run concurrently with anything, including a read()
  // of another thread on the same RaState: of `ra` it only stores prev_pos
  // (RelaxedPos). Allocates nothing, makes no system call (but one clock read
  // in kHitSample hits, for the latency histogram).
  // With `cursor` (whose user the caller serializes, hit_cursor.h): a read
  // served also fills the cursor with its frame.
  virtual int64_t read_hit(FileRef* file, RaState& ra, uint64_t pos, void* buf, uint64_t n,
                           HitCursor* cursor = nullptr) = 0;

  // The fastest hit (hit_cursor.h): [pos, pos + n) inside the bytes `cursor`
  // serves, its frame's state word unchanged. Returns n, counted as
  // read_hit counts it and with ra.prev_pos updated, or 0: the caller then
  // calls read_hit (with the cursor, to refill it). Inline: two loads of the
  // state word, the copy, the counters. Caller serializes `cursor` and `ra`.
  // Allocates nothing, makes no system call; the reads whose latency is
  // sampled go to read_hit.
  __attribute__((always_inline)) int64_t read_cursor(HitCursor& cursor, RaState& ra, uint64_t pos,
                                                     void* buf, uint64_t n);

  // Coherence: the program changed bytes [offset, offset + len) of the file
  // (len == 0: everything from offset on, e.g. truncate). Drops the pages
  // touched and re-reads the file size before returning.
  virtual void invalidate(FileRef* file, uint64_t offset, uint64_t len) = 0;

  // The program wrote through a descriptor the cache does not serve (write-
  // only, O_DIRECT, or a file it refused): drops the pages of that inode's
  // bytes [offset, offset + len) (len == 0: to the end) if any are cached,
  // and refreshes the size this process knows. Costs one fstat.
  virtual void invalidate_fd(int fd, uint64_t offset, uint64_t len) = 0;

  // The same for an inode the caller has already stat'ed (truncate(path),
  // open with O_TRUNC): every file id of it this process holds, and the one
  // the shared inode table holds for forked relatives.
  virtual void invalidate_inode(const struct stat& st, uint64_t offset, uint64_t len) = 0;

  // The program took a lock (fcntl F_SETLK*, F_OFD_SETLK*, flock) and got
  // it. With UPCACHE_COHERENCE=locks, every file served on the strength of
  // locks is checked against the kernel now (one fstat each) and its pages
  // dropped if it changed; otherwise does nothing. Not on the read path.
  virtual void synchronized() = 0;

  // Shared writable mappings (contract point 3): the program mapped (part
  // of) inode (dev, ino) MAP_SHARED with write access, so stores through the
  // mapping change the file behind the cache's back. mapped_writable counts
  // the mapping in the arena (forked relatives see the count too) and drops
  // the inode's cached pages; while the count is not zero, read() of the
  // inode answers -ENOBUFS and prefetch() does nothing, in every process
  // sharing the arena. unmapped_writable drops the pages again (the stores
  // made through the mapping) and uncounts one mapping. count_writable
  // counts one more without dropping (a mapping a forked child inherited, or
  // one that a partial munmap split in two). Counts are by a hash of (dev,
  // ino): a collision only sends another inode to the kernel too. A process
  // killed with mappings counted leaves them counted (its inodes pass
  // through until the arena goes): never stale, only slower.
  virtual void mapped_writable(uint64_t dev, uint64_t ino) = 0;
  virtual void unmapped_writable(uint64_t dev, uint64_t ino) = 0;
  virtual void count_writable(uint64_t dev, uint64_t ino) = 0;

  // Starts reading [offset, offset + len) without waiting (readahead(2),
  // POSIX_FADV_WILLNEED).
  virtual void prefetch(FileRef* file, uint64_t offset, uint64_t len) = 0;

  // posix_fadvise on a cached description, acting on upcache's own state as
  // the kernel's acts on its own: NORMAL restores the default window,
  // SEQUENTIAL doubles it, RANDOM stops readahead, WILLNEED prefetches,
  // DONTNEED drops the range's cached pages, NOREUSE does nothing.
  // Returns 0 or -EINVAL for an unknown advice.
  virtual int advise(FileRef* file, RaState& ra, uint64_t offset, uint64_t len, int advice) = 0;

  // Is `fd` one of the cache's own descriptors (backend)?
  virtual bool owns_fd(int fd) const = 0;
  // The program names `fd` in dup2/dup3: see Backend::relocate_fd.
  virtual int relocate_fd(int fd) = 0;

  // The process is about to fork (the arena is then shared): see
  // Backend::before_fork. Called from the pthread_atfork prepare handler.
  virtual void before_fork() = 0;

  // In a child after fork: rebuild the per-process parts (backend, its
  // descriptors and threads). The arena stays shared with the parent.
  virtual void after_fork_child() = 0;

  // Bytes of one cache page.
  uint64_t page_size() const { return config_.page_size; }
  // The cache lies on hugetlb pages (Config::huge_pages, granted).
  virtual bool on_huge_pages() const = 0;
  // The cache's frames lie on a huge=always tmpfs (Config::transparent_huge,
  // granted; decided when the first frame is claimed or the process forks).
  virtual bool on_transparent_huge_pages() const = 0;

 protected:
  Cache(const Config& config, StatsSink* stats) : config_(config), stats_(stats) {}

  // The hit paths keep a small sequential reader's next bytes coming: after
  // a read that ended at `end` of `page` (n bytes, n <= kSmallRead), whose
  // frame's data is `frame_base`, near the page's end (hit_path below).
  // Returns the data of page + 1's frame when this read looked it up (a
  // guess: for prefetches only), else null.
  virtual const char* stream_ahead(uint64_t file_id, uint64_t page, uint64_t end, uint64_t n,
                                   const char* frame_base) = 0;

  Config config_;
  StatsSink* stats_;
};

namespace hit_path {
// Hits whose latency is measured: one in kHitSample (per thread). Two clock
// reads cost about 45 ns in a KVM guest; at one in 64 they were 2.4% of a
// 64-byte read() hit, at one in 256 a quarter of that.
constexpr unsigned kHitSample = 256;

// The thread's count of hits, for the sample.
inline unsigned& hit_clock() {
  static thread_local unsigned clock __attribute__((tls_model("initial-exec"))) = 0;
  return clock;
}

// Is this read one of the sampled ones? A read the fast path declines is
// counted twice (read_hit, then read); the sample stays about one in 256.
inline bool hit_sampled() { return (++hit_clock() % kHitSample) == 0; }

// A small sequential reader comes back for the next bytes, and between its
// calls the hardware prefetcher loses the stream: the hit paths fetch the
// line kStreamAhead bytes past each read of at most kSmallRead bytes (a stall
// on every line was a quarter of a 64-byte hit). kStreamAhead is a few
// memory latencies of such reads.
constexpr uint64_t kStreamAhead = 2048;
constexpr uint64_t kSmallRead = 512;
// Near a page's end that line lies in the frame of the next page, which may
// be anywhere in the arena. The next page is looked up ahead of the reader in
// steps kStepApart bytes apart (each more than one memory latency of reads),
// so that none waits for memory (CacheImpl::stream_ahead). kStepApart >
// kSmallRead: a read crosses at most one step's mark. Far from the page's
// end, the line ahead is all there is to do, inline.
constexpr uint64_t kStepApart = 1024;
constexpr uint64_t kStreamFar = kStreamAhead + 2 * kStepApart;
}  // namespace hit_path

inline int64_t Cache::read_cursor(HitCursor& c, RaState& ra, uint64_t pos, void* buf, uint64_t n) {
  using namespace hit_path;
  // Inside [lo, hi), with unsigned arithmetic: pos >= lo and pos + n <= hi.
  if (pos - c.lo >= c.hi - c.lo || n > c.hi - pos || n == 0) return 0;
  // A sampled hit is timed by read_hit (which counts it in the clock).
  unsigned& clock = hit_clock();
  if ((clock + 1) % kHitSample == 0) return 0;
  // Acquire, then the copy, then the fence and the second load: as read_hit.
  // An empty cursor has lo == hi and never gets here.
  if (c.state->load(std::memory_order_acquire) != c.seen) return 0;
  if (c.coherence->load(std::memory_order_relaxed) != c.coherence_seen) return 0;
  const uint64_t from = pos - c.page_start;
  if (!guarded_copy(buf, c.data + from, n)) return 0;
  if (n <= kSmallRead) {
    const uint64_t left = config_.page_size - (from + n);
    if (left > kStreamFar) {
      __builtin_prefetch(c.data + from + n + kStreamAhead);
    } else if (left + n <= kStreamAhead) {
      // Past the step that looked up the next page: its line ahead.
      if (c.next) __builtin_prefetch(c.next + (kStreamAhead - left));
    } else {
      c.next = stream_ahead(c.file_id, c.page, from + n, n, c.data);
    }
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (c.state->load(std::memory_order_relaxed) != c.seen) return 0;
  ++clock;
  ra.prev_pos = static_cast<int64_t>(pos + n);
  stats_->hit(c.stats_slot, n);
  StatsSink::last_read_misses() = 0;
  return static_cast<int64_t>(n);
}

}  // namespace upcache
