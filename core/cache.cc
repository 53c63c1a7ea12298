// The read path: filemap_read / filemap_get_pages rebuilt over the arena.
//
// A read of [pos, end) walks its pages in order. For each page:
//   - find and pin its frame (lock free; see page_index.h and frame.h);
//   - missing: ask readahead for a window (ra_on_miss), claim frames for the
//     window's missing pages, read the ones the caller needs now and queue
//     the rest, then look again;
//   - carries the READAHEAD mark: clear it and queue the next window
//     (ra_on_marked) without waiting for it;
//   - in flight: sleep on the frame's futex until the read completes;
//   - PARTIAL (frame.h) without the bytes asked for: handled as a miss, whose
//     window completes the page; a small random miss reads a PARTIAL page;
//   - copy out what the caller asked for, bounded by the page's valid bytes.
// The file size this process knows bounds every read; a read that reaches it
// asks the kernel again, so a file that grew is read past its old end.
#include "core/cache.h"

#include <linux/fs.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <time.h>

#include <algorithm>
#include <cstring>

#include "core/arena.h"
#include "core/backend.h"
#include "core/copy_guard.h"
#include "core/eviction.h"
#include "core/fault.h"
#include "core/frame.h"
#include "core/frame_hint.h"
#include "core/futex.h"
#include "core/heap.h"
#include "core/inode_table.h"
#include "core/lease_watch.h"
#include "core/iov_cursor.h"
#include "core/owner.h"
#include "core/page_index.h"
#include "core/pin_journal.h"
#include "core/stats_sink.h"
#include "core/sys.h"

namespace upcache {

using namespace frame_state;

struct FileRef {
  uint64_t file_id = 0;
  BackendFile* backend = nullptr;
  std::atomic<uint64_t> size{0};  // bytes, as this process last saw them
  std::atomic<int> refs{1};
  int stats_slot = -1;
  // The arena's count of writable shared mappings for this inode (see
  // Cache::mapped_writable): non-zero, reads go to the kernel.
  std::atomic<uint32_t>* writable_maps = nullptr;
  FileIdentity identity;
  FileRef* next = nullptr;  // per-process list, under files_lock_

  // Coherence (upcache(7)): may this process serve the file from the cache
  // now? A stats::FileCoherence. Served states: kCoherenceLease (a read
  // lease held: nobody else can have the file open for writing),
  // kCoherenceReadOnly, kCoherenceWeak. Every other state sends reads to the
  // kernel. Leaving kCoherenceLease is the lease break (CacheImpl::
  // break_lease): seq_cst, and before the file's pages are dropped, so that
  // a fill that published a page after the drop looked past it sees the
  // state changed and drops the page itself (complete_run).
  std::atomic<uint32_t> coherence{stats::kCoherencePending};
  std::atomic<uint32_t> admitting{0};     // one thread at a time tries a lease
  std::atomic<int64_t> retry_at_ns{0};    // kCoherenceWriter: next try (monotonic)
  uint64_t synced = 0;                    // the last synchronized() round that checked it (files_lock_)
  uint32_t fs_magic = 0;                  // statfs f_type at attach

  bool served() const {
    constexpr uint32_t kServed = (1u << stats::kCoherenceLease) | (1u << stats::kCoherenceReadOnly) |
                                 (1u << stats::kCoherenceWeak) | (1u << stats::kCoherenceLocks);
    return ((1u << coherence.load(std::memory_order_relaxed)) & kServed) != 0;
  }
};

RaState Cache::new_ra_state() const {
  RaState ra;
  uint64_t max = config_.ra_max_pages();
  // A window larger than a quarter of the cache would evict itself.
  uint64_t cap = config_.frame_count() / 4;
  if (max > cap) max = cap;
  ra.ra_pages = static_cast<uint32_t>(max);
  return ra;
}

namespace {

uint64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Filesystems whose "regular files" are generated on read: never cached.
bool pseudo_filesystem(int64_t magic) {
  switch (static_cast<uint32_t>(magic)) {
    case PROC_SUPER_MAGIC: case SYSFS_MAGIC: case DEBUGFS_MAGIC: case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC: case CGROUP_SUPER_MAGIC: case CGROUP2_SUPER_MAGIC:
    case BPF_FS_MAGIC: case PSTOREFS_MAGIC: case EFIVARFS_MAGIC: case DEVPTS_SUPER_MAGIC:
    case HUGETLBFS_MAGIC: case 0x62656570 /* configfs */: case 0x65735543 /* fusectl */:
    case 0x50495045 /* pipefs */: case 0x534F434B /* sockfs */: case 0x09041934 /* anon inodes */:
      return true;
    default:
      return false;
  }
}

// Does `path` start with one of the ':'-separated prefixes in `list`?
bool matches_prefix(const char* path, const std::string& list) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(':', start);
    if (end == std::string::npos) end = list.size();
    size_t n = end - start;
    if (n > 0 && strncmp(path, list.data() + start, n) == 0) return true;
    start = end + 1;
  }
  return false;
}

// ---- coherence: what filesystems promise (upcache(7), Coherence)

// Local filesystems: every change to a file goes through this kernel's VFS,
// which breaks read leases, so a lease is proof that nobody writes.
// Network and FUSE filesystems are not among them: another host, or a FUSE
// server, changes files without opening them here.
bool lease_proves_no_writer(uint32_t magic) {
  switch (magic) {
    case EXT4_SUPER_MAGIC: case XFS_SUPER_MAGIC: case BTRFS_SUPER_MAGIC: case TMPFS_MAGIC:
    case RAMFS_MAGIC: case F2FS_SUPER_MAGIC: case 0xca451a4e /* bcachefs */: case 0x3153464a /* jfs */:
    case REISERFS_SUPER_MAGIC: case NILFS_SUPER_MAGIC: case 0x482b /* hfsplus */: case MSDOS_SUPER_MAGIC:
    case EXFAT_SUPER_MAGIC: case 0x7366746e /* ntfs3 */: case 0x2fc12fc1 /* zfs */:
    case OVERLAYFS_SUPER_MAGIC:
      return true;
    default:
      return false;
  }
}

// Filesystems that cannot be written at all: served without a lease.
bool read_only_filesystem(uint32_t magic) {
  switch (magic) {
    case SQUASHFS_MAGIC: case ISOFS_SUPER_MAGIC: case EROFS_SUPER_MAGIC_V1: case CRAMFS_MAGIC:
      return true;
    default:
      return false;
  }
}

// Multigrain timestamps (Linux 6.13: ext4, XFS, btrfs, tmpfs): once a ctime
// has been read, the next change of the file gets a ctime that differs from
// it, however soon it comes. Elsewhere a change within the same coarse tick
// may leave the ctime as it was.
bool multigrain_filesystem(uint32_t magic) {
  return magic == EXT4_SUPER_MAGIC || magic == XFS_SUPER_MAGIC || magic == BTRFS_SUPER_MAGIC ||
         magic == TMPFS_MAGIC;
}

bool kernel_at_least(int major, int minor) {
  struct utsname u;
  if (uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

int64_t realtime_ns() { return sys::clock_ns(CLOCK_REALTIME); }
// Retry times: a coarse tick is precise enough, and never a system call.
int64_t coarse_now_ns() { return sys::clock_ns(CLOCK_MONOTONIC_COARSE); }

// While some process has a file open for writing, a lease is tried again
// at most this often (one fcntl on a read that goes to the kernel anyway).
constexpr int64_t kLeaseRetryNs = 20 * 1000 * 1000;

// One request queued to the backend's engine: a run of consecutive pages.
struct AsyncRequest {
  std::atomic<uint32_t> busy{0};
  uint32_t count = 0;
  uint64_t first_page = 0;
  FileRef* file = nullptr;
  uint32_t frames[Backend::kMaxIov];
};
constexpr int kAsyncRequests = 64;

class CacheImpl final : public Cache {
 public:
  explicit CacheImpl(const Config& config, StatsSink* stats)
      : Cache(config, stats) {}
  ~CacheImpl() override;

  bool init(std::string* error);

  FileRef* attach(int fd, const char* path, int open_flags) override;
  void retain(FileRef* file) override { file->refs.fetch_add(1, std::memory_order_relaxed); }
  void release(FileRef* file) override;
  int64_t read(FileRef* file, RaState& ra, uint64_t pos, const iovec* iov, int iovcnt,
               unsigned flags) override;
  int64_t read_hit(FileRef* file, RaState& ra, uint64_t pos, void* buf, uint64_t n,
                   HitCursor* cursor) override;
  const char* stream_ahead(uint64_t file_id, uint64_t page, uint64_t end, uint64_t n,
                           const char* frame_base) override;
  void invalidate(FileRef* file, uint64_t offset, uint64_t len) override;
  void invalidate_fd(int fd, uint64_t offset, uint64_t len) override;
  void prefetch(FileRef* file, uint64_t offset, uint64_t len) override;
  int advise(FileRef* file, RaState& ra, uint64_t offset, uint64_t len, int advice) override;
  bool owns_fd(int fd) const override { return backend_ && backend_->owns_fd(fd); }
  bool on_huge_pages() const override { return arena_.huge(); }
  bool on_transparent_huge_pages() const override {
    return backing_.load(std::memory_order_acquire) == kOnHugePages;
  }
  int relocate_fd(int fd) override { return backend_ ? backend_->relocate_fd(fd) : -EBADF; }
  void before_fork() override {
    settle_backing();  // the child must share the memory where it will stay
    backend_->before_fork();
  }
  void after_fork_child() override;

 private:
  // --- coherence (leases; upcache(7) Coherence) ---
  bool admit(FileRef* file);
  void set_coherence(FileRef* file, stats::FileCoherence state);
  void break_lease(FileRef* file);
  void lease_broken(int fd);
  static void on_lease_break(void* self, int fd) { static_cast<CacheImpl*>(self)->lease_broken(fd); }
  static void on_lease_signal_moved(void* self, int signal);
  // The first state of a file just attached, from its filesystem.
  stats::FileCoherence initial_coherence(const struct statfs& sfs) const;
  bool take_lease(FileRef* file);
  bool serve_under_locks(FileRef* file);
  bool multigrain(FileRef* file);
  void synchronized() override;
  uint64_t sync_round_ = 0;  // under files_lock_
  LeaseWatch* lease_watch_ = nullptr;
  // How close to its confirmation a ctime must not be (InodeTable::confirm):
  // 0 where the kernel gives multigrain timestamps, two coarse ticks else.
  int64_t racy_ns_ = 0;
  bool multigrain_kernel_ = false;

  // --- frames ---
  bool try_pin(FrameDesc& f, uint64_t file_id, uint64_t page);
  uint32_t frame_index(const FrameDesc& f) const { return static_cast<uint32_t>(&f - &arena_.frame(0)); }
  // Every pin this process keeps past the instruction that took it is noted
  // in the thread's pin journal (pin_journal.h) and forgotten before it goes.
  void noted_pin(FrameDesc& f) { journals_->note(frame_index(f)); }
  void unpin(FrameDesc& f) {
    journals_->forget(frame_index(f));
    unpin_unnoted(f);
  }
  static void unpin_unnoted(FrameDesc& f) { f.state.fetch_sub(kPinOne, std::memory_order_release); }
  int64_t find_pinned(uint64_t file_id, uint64_t page);
  bool present(uint64_t file_id, uint64_t page) const;
  // The bytes [lo, valid) a frame holds: valid - lo (lo is 0 unless PARTIAL).
  static int64_t held_bytes(const FrameDesc& f) {
    return static_cast<int64_t>(f.valid.load(std::memory_order_relaxed)) -
           static_cast<int64_t>(f.lo.load(std::memory_order_relaxed));
  }
  // Does the frame hold bytes [from, to) of its page?
  static bool holds(const FrameDesc& f, uint64_t from, uint64_t to) {
    return f.lo.load(std::memory_order_relaxed) <= from && to <= f.valid.load(std::memory_order_relaxed);
  }
  uint64_t wait_io(FrameDesc& f);
  void reap_dead(bool frames = true);
  void fail_orphaned_io(FrameDesc& f, uint32_t i, uint64_t owner);
  bool recover_locked(uint32_t frame);
  int64_t claim_frame(bool needed);
  void free_claimed(uint32_t frame);
  uint64_t note_first_hit(FrameDesc& f, uint64_t s);
  // Where descriptors, buckets and frames lie is settled before the first
  // frame is claimed or the process forks (Arena::settle_backing, whose
  // precondition this keeps: nothing was hashed and, drop_page, no bucket
  // lock is taken before), so that a process that never fills a frame does
  // not pay for moving them to 2 MiB pages.
  static constexpr uint8_t kUnsettled = 0, kOnOrdinaryPages = 1, kOnHugePages = 2;
  std::atomic<uint8_t> backing_{kUnsettled};
  // The frame whose claim moves the descriptors to 2 MiB pages: 8192 frames
  // (128 MiB of 16 KiB pages), or half of a smaller cache.
  uint64_t descriptors_promote_frame_ = 0;
  pthread_mutex_t backing_lock_ = PTHREAD_MUTEX_INITIALIZER;
  void settle_backing();
  void finish_io(uint32_t frame, int64_t bytes);
  bool drop_page(uint64_t file_id, uint64_t page);
  void drop_read_frame(uint32_t frame, uint64_t file_id, uint64_t page);
  uint64_t drop_range(uint64_t file_id, uint64_t offset, uint64_t len, uint64_t size_bound);
  void invalidate_inode(const struct stat& st, uint64_t offset, uint64_t len) override;
  void mapped_writable(uint64_t dev, uint64_t ino) override;
  void unmapped_writable(uint64_t dev, uint64_t ino) override;
  void count_writable(uint64_t dev, uint64_t ino) override;
  std::atomic<uint32_t>& writable_maps(uint64_t dev, uint64_t ino) const;
  uint64_t drop_inode(uint64_t dev, uint64_t ino);

  // --- I/O ---
  int64_t issue(FileRef* file, uint64_t start, uint64_t count, uint64_t need_end, uint64_t mark,
                uint64_t pin_page = kNoPin, int64_t* pinned = nullptr);
  static constexpr uint64_t kNoPin = ~0ull;
  // Partial pages (frame.h).
  uint64_t block_size(FileRef* file) const;
  int64_t read_partial(FileRef* file, uint64_t page, uint64_t lo, uint64_t hi, int64_t* pinned);
  int64_t publish_claimed(uint32_t frame, uint64_t file_id, uint64_t page, uint64_t lo, uint64_t flags);
  void finish_partial(uint32_t frame, uint64_t lo, uint64_t hi, int64_t bytes);
  static constexpr int64_t kAbsent = -1, kSkip = -2;
  int64_t take_completion(uint64_t file_id, uint64_t page, uint64_t flags, bool keep_pin);
  int64_t submit_run(FileRef* file, uint64_t first_page, const uint32_t* frames, uint32_t n,
                  bool sync);
  void complete_run(FileRef* file, uint64_t first_page, const uint32_t* frames, uint32_t n, int64_t result);
  static void on_async_complete(void* ctx, uint64_t cookie, int64_t result);
  AsyncRequest* take_request();

  // --- files ---
  uint64_t file_pages(uint64_t size) const { return (size + page_size() - 1) >> shift_; }
  bool refresh_size(FileRef* file);
  static bool ra_probe(const void* self, uint64_t index);

  Arena arena_;
  PageIndex* index_ = nullptr;
  InodeTable* inodes_ = nullptr;
  PinJournals* journals_ = nullptr;
  EvictionPolicy* eviction_ = nullptr;
  std::unique_ptr<Backend> backend_;
  unsigned shift_ = 0;
  int pid_ = 0;
  uint64_t self_word_ = 0;  // owner_self(): names this process in io_owner, lock_owner

  pthread_mutex_t files_lock_ = PTHREAD_MUTEX_INITIALIZER;
  FileRef* files_ = nullptr;
  AsyncRequest* requests_ = nullptr;  // kAsyncRequests, per process
};

using namespace hit_path;

// The probe readahead uses to look behind and ahead of a position.
struct ProbeContext {
  const CacheImpl* cache;
  uint64_t file_id;
};

CacheImpl::~CacheImpl() {
  heap_delete(lease_watch_);  // first: its thread calls into the rest
  if (backend_) backend_->drain();
  backend_.reset();
  heap_delete(index_);
  heap_delete(inodes_);
  heap_delete(journals_);
  heap_delete(eviction_);
  if (requests_) mi_free(requests_);
}

bool CacheImpl::init(std::string* error) {
  if (!arena_.create(config_.page_size, config_.frame_count(), error, config_.huge_pages,
                     config_.transparent_huge))
    return false;
  shift_ = arena_.page_shift();
  descriptors_promote_frame_ = std::min<uint64_t>(8192, arena_.frame_count() / 2);
  pid_ = sys::getpid();
  self_word_ = owner_self();
  index_ = heap_new<PageIndex>(arena_);
  inodes_ = heap_new<InodeTable>(arena_);
  journals_ = heap_new<PinJournals>(arena_.pin_journals());
  eviction_ = heap_new<ClockPolicy>(arena_);
  requests_ = static_cast<AsyncRequest*>(mi_zalloc(sizeof(AsyncRequest) * kAsyncRequests));
  lease_watch_ = heap_new<LeaseWatch>(config_.lease_signal,
                                      LeaseWatch::Callbacks{&CacheImpl::on_lease_break,
                                                            &CacheImpl::on_lease_signal_moved, this});
  if (!index_ || !inodes_ || !journals_ || !eviction_ || !requests_ || !lease_watch_) {
    if (error) *error = "out of memory";
    return false;
  }
  backend_ = Backend::create(config_, stats_, &CacheImpl::on_async_complete, this);
  if (!backend_) {
    if (error) *error = "cannot start the backend";
    return false;
  }
  stats_->segment()->capacity_bytes = config_.cache_bytes;
  stats_->segment()->page_size = config_.page_size;
  multigrain_kernel_ = kernel_at_least(6, 13);
  struct timespec res {};
  clock_getres(CLOCK_REALTIME_COARSE, &res);
  racy_ns_ = 2 * (res.tv_sec * 1000000000ll + res.tv_nsec);
  if (racy_ns_ < 20000000) racy_ns_ = 20000000;
  return true;
}

// ---------------------------------------------------------------- files

// ---------------------------------------------------------------- coherence
//
// The guarantee (upcache(7), Coherence; DESIGN.md): once another process's
// change to a file has returned, no read here returns the bytes it replaced.
// The mechanism: this process serves a file only while it holds a read lease
// on it (FileRef::coherence == kCoherenceLease). Every change another
// process can make needs an open for writing or a truncate, and both wait
// until every lease is given up; this process gives its lease up only after
// it has stopped serving the file and dropped its pages (break_lease). So
// when the writer's open returns, nothing stale is left, and the reads that
// follow go to the kernel until a lease can be had again (nobody has the file
// open for writing any more): then what was cached in between is checked
// against the file before it is served (take_lease, InodeTable::confirm).
//
// Transitions of FileRef::coherence (one admitting thread at a time):
//   pending --take_lease ok--> lease --break_lease--> writer
//   pending/writer --EAGAIN--> writer (retry after kLeaseRetryNs)
//   pending/writer --EPERM, EACCES, EINVAL...--> refused (for good)
//   attach: read-only filesystem --> read-only; not a local one --> refused
//   UPCACHE_COHERENCE=open: refused and writer become weak (served), and
//   a broken lease too (its pages dropped first)
//   fork (child): lease --> pending (the lease is the parent's); with
//   UPCACHE_COHERENCE=open, lease --> weak
//   UPCACHE_COHERENCE=locks: EAGAIN on a multigrain filesystem --> locks
//   (served; checked at every lock the program takes: synchronized)

FileIdentity identity_of(const struct stat& st, uint64_t generation);

stats::FileCoherence CacheImpl::initial_coherence(const struct statfs& sfs) const {
  const uint32_t magic = static_cast<uint32_t>(sfs.f_type);
  if (read_only_filesystem(magic)) return stats::kCoherenceReadOnly;
  if (lease_proves_no_writer(magic)) return stats::kCoherencePending;
  return config_.coherence == Coherence::kOpen ? stats::kCoherenceWeak : stats::kCoherenceRefused;
}

void CacheImpl::set_coherence(FileRef* file, stats::FileCoherence state) {
  file->coherence.store(state, std::memory_order_seq_cst);
  stats_->file_coherence(file->stats_slot, state);
}

// Tries to have `file` served now. False: its reads go to the kernel.
bool CacheImpl::admit(FileRef* file) {
  uint32_t state = file->coherence.load(std::memory_order_acquire);
  if (state != stats::kCoherencePending && state != stats::kCoherenceWriter) return file->served();
  if (state == stats::kCoherenceWriter && coarse_now_ns() < file->retry_at_ns.load(std::memory_order_relaxed))
    return false;
  uint32_t idle = 0;
  if (!file->admitting.compare_exchange_strong(idle, 1, std::memory_order_acquire)) {
    // Another thread is taking the lease: a few system calls, then its answer.
    while (file->admitting.load(std::memory_order_acquire) != 0) sched_yield();
    return file->served();
  }
  bool served = file->served() || take_lease(file);
  file->admitting.store(0, std::memory_order_release);
  return served;
}

bool CacheImpl::take_lease(FileRef* file) {
  const bool weak = config_.coherence == Coherence::kOpen;
  int tid = lease_watch_->tid();
  int r = tid < 0 ? tid : backend_->take_lease(file->backend, lease_watch_->signal(), tid);
  if (r == -EAGAIN && config_.coherence == Coherence::kLocks && multigrain(file))
    return serve_under_locks(file);
  if (r == -EAGAIN && !weak) {
    // Some process (this one, perhaps) has the file open for writing.
    file->retry_at_ns.store(coarse_now_ns() + kLeaseRetryNs, std::memory_order_relaxed);
    set_coherence(file, stats::kCoherenceWriter);
    return false;
  }
  if (r < 0) {
    set_coherence(file, weak ? stats::kCoherenceWeak : stats::kCoherenceRefused);
    return weak;
  }
  stats_->add(stats::kLeases);
  // Nobody writes the file now. Between two leases (ours or a relative's)
  // it may have been written: the pages cached for it are kept only if the
  // file is still as it was when they were last known to be right.
  struct stat st;
  bool trusted = false;
  FileIdentity now;
  if (backend_->stat(file->backend, &st) == 0) {
    pthread_mutex_lock(&files_lock_);
    now = identity_of(st, file->identity.generation);
    file->identity = now;
    pthread_mutex_unlock(&files_lock_);
    trusted = inodes_->confirm(file->file_id, now, realtime_ns(), multigrain(file) ? 0 : racy_ns_);
    file->size.store(now.size, std::memory_order_relaxed);
  } else {
    pthread_mutex_lock(&files_lock_);
    now = file->identity;
    pthread_mutex_unlock(&files_lock_);
  }
  if (!trusted) {
    uint64_t dropped = drop_inode(now.dev, now.ino);
    if (dropped) stats_->add(stats::kCoherenceDrops, dropped);
  }
  set_coherence(file, stats::kCoherenceLease);
  return true;
}

// Does a change of the file always change its ctime, once it was read?
bool CacheImpl::multigrain(FileRef* file) {
  return multigrain_kernel_ && multigrain_filesystem(file->fs_magic);
}

// UPCACHE_COHERENCE=locks, and some process has the file open for writing:
// served from now on, as it is now (nothing cached before is trusted).
bool CacheImpl::serve_under_locks(FileRef* file) {
  struct stat st;
  if (backend_->stat(file->backend, &st) != 0) {
    set_coherence(file, stats::kCoherenceRefused);
    return false;
  }
  pthread_mutex_lock(&files_lock_);
  file->identity = identity_of(st, file->identity.generation);
  file->size.store(file->identity.size, std::memory_order_relaxed);
  pthread_mutex_unlock(&files_lock_);
  uint64_t dropped = drop_inode(st.st_dev, st.st_ino);
  if (dropped) stats_->add(stats::kCoherenceDrops, dropped);
  set_coherence(file, stats::kCoherenceLocks);
  return true;
}

// The program holds a lock now: whatever a writer did before it released
// that lock has returned. A file it changed has a new ctime (multigrain: we
// read the old one), so its pages go, and the file is taken as it is now.
void CacheImpl::synchronized() {
  if (config_.coherence != Coherence::kLocks) return;
  constexpr int kBatch = 32;
  FileRef* batch[kBatch];
  pthread_mutex_lock(&files_lock_);
  const uint64_t round = ++sync_round_;
  pthread_mutex_unlock(&files_lock_);
  for (;;) {
    // Each file once per round, however the list changes between batches.
    int n = 0;
    pthread_mutex_lock(&files_lock_);
    for (FileRef* f = files_; f && n < kBatch; f = f->next) {
      if (f->synced >= round || f->coherence.load(std::memory_order_relaxed) != stats::kCoherenceLocks) continue;
      f->synced = round;
      f->refs.fetch_add(1, std::memory_order_relaxed);
      batch[n++] = f;
    }
    pthread_mutex_unlock(&files_lock_);
    for (int i = 0; i < n; ++i) {
      FileRef* f = batch[i];
      struct stat st;
      if (backend_->stat(f->backend, &st) == 0) {
        FileIdentity now = identity_of(st, f->identity.generation);
        pthread_mutex_lock(&files_lock_);
        const bool changed = !(now == f->identity);
        f->identity = now;
        pthread_mutex_unlock(&files_lock_);
        f->size.store(now.size, std::memory_order_relaxed);
        if (changed) {
          uint64_t dropped = drop_inode(now.dev, now.ino);
          if (dropped) stats_->add(stats::kCoherenceDrops, dropped);
        }
      }
      release(f);
    }
    if (n < kBatch) return;
  }
}

// Another process opens `file` for writing or truncates it, and waits: stop
// serving it, drop its pages, then let the writer go.
void CacheImpl::break_lease(FileRef* file) {
  // A lease being taken right now is finished first (a few system calls).
  while (file->admitting.load(std::memory_order_acquire) != 0) sched_yield();
  if (file->coherence.load(std::memory_order_acquire) != stats::kCoherenceLease) {
    backend_->release_lease(file->backend);  // nothing served under it
    return;
  }
  file->retry_at_ns.store(coarse_now_ns() + kLeaseRetryNs, std::memory_order_relaxed);
  // seq_cst, before the drop (FileRef::coherence). UPCACHE_COHERENCE=open
  // goes on serving, revalidated at open only, as for a file never leased.
  set_coherence(file, config_.coherence == Coherence::kOpen ? stats::kCoherenceWeak : stats::kCoherenceWriter);
  stats_->add(stats::kLeasesBroken);
  pthread_mutex_lock(&files_lock_);
  const uint64_t dev = file->identity.dev, ino = file->identity.ino;
  pthread_mutex_unlock(&files_lock_);
  uint64_t dropped = drop_inode(dev, ino);
  if (dropped) stats_->add(stats::kCoherenceDrops, dropped);
  backend_->release_lease(file->backend);
}

// From the lease thread: the lease on descriptor `fd` is being broken (-1:
// some lease may be). A file is handled once per break: break_lease moves it
// out of the lease state, and a lease no longer held reads F_UNLCK.
void CacheImpl::lease_broken(int fd) {
  for (bool scan = fd < 0;;) {
    FileRef* found = nullptr;
    pthread_mutex_lock(&files_lock_);
    for (FileRef* f = files_; f && !found; f = f->next) {
      const int lease = backend_->lease_fd(f->backend);
      if (lease < 0) continue;
      const bool leased = f->coherence.load(std::memory_order_acquire) == stats::kCoherenceLease ||
                          f->admitting.load(std::memory_order_acquire) != 0;
      if (!leased) continue;
      if (scan ? backend_->lease_state(f->backend) != F_RDLCK : lease == fd) found = f;
    }
    if (found) found->refs.fetch_add(1, std::memory_order_relaxed);
    pthread_mutex_unlock(&files_lock_);
    if (!found) {
      if (scan) return;
      scan = true;  // si_fd may name a number the lease has moved from (relocate_fd)
      continue;
    }
    break_lease(found);
    release(found);
    if (!scan) return;
  }
}

void CacheImpl::on_lease_signal_moved(void* ctx, int signal) {
  auto* self = static_cast<CacheImpl*>(ctx);
  pthread_mutex_lock(&self->files_lock_);
  for (FileRef* f = self->files_; f; f = f->next) self->backend_->set_lease_signal(f->backend, signal);
  pthread_mutex_unlock(&self->files_lock_);
}

FileIdentity identity_of(const struct stat& st, uint64_t generation) {
  FileIdentity id;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.generation = generation;
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
  id.ctime_ns = st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec;
  return id;
}


FileRef* CacheImpl::attach(int fd, const char* path, int open_flags) {
  int access = open_flags & O_ACCMODE;
  if (access == O_WRONLY || (open_flags & (O_DIRECT | O_PATH))) return nullptr;
  struct stat st;
  if (sys::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return nullptr;
  if (static_cast<uint64_t>(st.st_size) < config_.min_file_bytes) return nullptr;
  struct statfs sfs;
  if (sys::fstatfs(fd, &sfs) < 0 || pseudo_filesystem(sfs.f_type)) return nullptr;

  char resolved[4096];
  const char* name = path;
  if (!config_.include.empty() || !config_.exclude.empty() || path == nullptr || path[0] != '/') {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    long n = sys::raw(SYS_readlink, reinterpret_cast<long>(link), reinterpret_cast<long>(resolved),
                      sizeof resolved - 1);
    if (n > 0) {
      resolved[n] = '\0';
      name = resolved;
    }
  }
  if (name != nullptr) {
    if (!config_.include.empty() && !matches_prefix(name, config_.include)) return nullptr;
    if (!config_.exclude.empty() && matches_prefix(name, config_.exclude)) return nullptr;
  }

  int generation = 0;
  if (sys::ioctl(fd, FS_IOC_GETVERSION, &generation) != 0) generation = 0;
  FileIdentity id = identity_of(st, static_cast<uint32_t>(generation));
  uint64_t file_id = inodes_->validate(id);

  pthread_mutex_lock(&files_lock_);
  const stats::FileCoherence first_state = initial_coherence(sfs);
  for (FileRef* f = files_; f; f = f->next) {
    if (f->file_id == file_id) {
      f->refs.fetch_add(1, std::memory_order_relaxed);
      // Another description opened the file: refresh the size it left.
      f->size.store(id.size, std::memory_order_relaxed);
      // An open is a point where the writer may have gone: try a lease at
      // the next read rather than after the retry delay.
      f->retry_at_ns.store(0, std::memory_order_relaxed);
      pthread_mutex_unlock(&files_lock_);
      return f;
    }
  }
  FileRef* file = heap_new<FileRef>();
  BackendFile* bf = file ? backend_->open_file(fd, name) : nullptr;
  if (!bf) {
    pthread_mutex_unlock(&files_lock_);
    heap_delete(file);
    return nullptr;
  }
  file->file_id = file_id;
  file->backend = bf;
  file->size.store(id.size, std::memory_order_relaxed);
  file->identity = id;
  file->fs_magic = static_cast<uint32_t>(sfs.f_type);
  file->writable_maps = &writable_maps(id.dev, id.ino);
  file->stats_slot = stats_->claim_file(file_id, name ? name : "?");
  set_coherence(file, first_state);
  file->next = files_;
  files_ = file;
  pthread_mutex_unlock(&files_lock_);
  return file;
}

void CacheImpl::release(FileRef* file) {
  // Not the last reference: drop it without the lock. The count never
  // reaches 0 here, only under files_lock_ below, where attach (which takes
  // references under the same lock) cannot find a file at 0. (Dropping to 0
  // first and re-checking under the lock let attach revive the file and a
  // second releaser free it while the first still looked at it: a double
  // free, found by rel_close_race under ASan.)
  int n = file->refs.load(std::memory_order_relaxed);
  while (n > 1) {
    if (file->refs.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel, std::memory_order_relaxed))
      return;
  }
  pthread_mutex_lock(&files_lock_);
  if (file->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) {
    pthread_mutex_unlock(&files_lock_);
    return;
  }
  for (FileRef** p = &files_; *p; p = &(*p)->next) {
    if (*p == file) {
      *p = file->next;
      break;
    }
  }
  pthread_mutex_unlock(&files_lock_);
  // Queued readahead may still name this file: let it finish first.
  backend_->drain();
  backend_->close_file(file->backend);
  heap_delete(file);
}

bool CacheImpl::refresh_size(FileRef* file) {
  int64_t size = backend_->file_size(file->backend);
  if (size < 0) return false;
  uint64_t old = file->size.exchange(static_cast<uint64_t>(size), std::memory_order_relaxed);
  return static_cast<uint64_t>(size) != old;
}

bool CacheImpl::ra_probe(const void* self, uint64_t index) {
  auto* p = static_cast<const ProbeContext*>(self);
  return p->cache->present(p->file_id, index);
}

// ---------------------------------------------------------------- frames

bool CacheImpl::try_pin(FrameDesc& f, uint64_t file_id, uint64_t page) {
  uint64_t s = f.state.load(std::memory_order_relaxed);
  do {
    if ((s & kLocked) || !(s & kHashed) || pins(s) == kPinMask) return false;
  } while (!f.state.compare_exchange_weak(s, (s + kPinOne) | kReferenced, std::memory_order_acquire,
                                          std::memory_order_relaxed));
  // Pinned: the key can no longer change. Is it still our page?
  if (f.file_id.load(std::memory_order_relaxed) != file_id ||
      f.page.load(std::memory_order_relaxed) != page) {
    unpin_unnoted(f);
    return false;
  }
  noted_pin(f);
  return true;
}

int64_t CacheImpl::find_pinned(uint64_t file_id, uint64_t page) {
  int64_t i = index_->find(file_id, page);
  if (i == PageIndex::kNone) return -1;
  return try_pin(arena_.frame(i), file_id, page) ? i : -1;
}

// A PARTIAL page is present too: for readahead's probe, as the kernel counts
// the 4 KiB pages a random reader left (a dense run of them is read as a
// stream by context readahead, which then completes them: measured, not
// counting them made 65536 cold random 4 KiB reads of 1 GiB 20% slower).
bool CacheImpl::present(uint64_t file_id, uint64_t page) const {
  int64_t i = index_->find(file_id, page);
  if (i == PageIndex::kNone) return false;
  FrameDesc& f = arena_.frame(i);
  uint64_t s = f.state.load(std::memory_order_relaxed);
  return (s & kHashed) &&
         f.file_id.load(std::memory_order_relaxed) == file_id &&
         f.page.load(std::memory_order_relaxed) == page;
}

uint64_t CacheImpl::wait_io(FrameDesc& f) {
  uint64_t s = f.state.load(std::memory_order_acquire);
  unsigned sleeps = 0;
  while (s & kIo) {
    if (!(s & kWaiters)) {
      if (!f.state.compare_exchange_weak(s, s | kWaiters, std::memory_order_acquire)) continue;
      s |= kWaiters;
    }
    // Short sleeps first: a read is usually done in well under 5 ms, and an
    // issuer that was killed is noticed as soon as the first one ends.
    uint64_t timeout_ns = (5ull * 1000 * 1000) << (sleeps < 3 ? sleeps : 3);
    int rc = futex_wait(low_word(&f.state), static_cast<uint32_t>(s), timeout_ns);
    s = f.state.load(std::memory_order_acquire);
    if (rc == -ETIMEDOUT && (s & kIo)) {
      ++sleeps;
      // The issuer may have died (SIGKILL in a forked worker): nobody would
      // ever complete this read. Fail it so the caller retries.
      uint64_t owner = io_issuer(f.io_owner.load(std::memory_order_relaxed));
      if (owner != self_word_ && owner != 0 && owner_gone(owner)) {
        reap_dead();
        s = f.state.load(std::memory_order_acquire);
      }
    }
  }
  return s;
}

// Processes that died (SIGKILL in a forked worker, or exit with readahead
// queued) leave their reads in flight, their claims LOCKED and their pins
// held for good: nobody else would ever complete or drop them. Give back
// their pins (pin_journal.h), fail those reads (their waiters read the pages
// again themselves) and finish those claims, all in one scan, asking /proc
// once per owner. Rare: called by a reader that waited long on a frame and
// by a claim that finds no free frame (frames left by the dead can be all
// there is); `frames` false: the pins only, which a claim does now and then
// (leaked pins leave frames out of use without ever starving anyone).
namespace {
// owner_gone() with the answers of one scan remembered: a scan meets the same
// few owners again and again.
class GoneMemo {
 public:
  explicit GoneMemo(uint64_t self) : self_(self) {}
  bool operator()(uint64_t owner) {
    if (owner == 0 || owner == self_) return false;
    for (int k = 0; k < n_; ++k)
      if (memo_[k].owner == owner) return memo_[k].gone;
    bool verdict = owner_gone(owner);
    if (n_ < kMemo) memo_[n_++] = {owner, verdict};
    return verdict;
  }

 private:
  static constexpr int kMemo = 16;
  struct Verdict {
    uint64_t owner;
    bool gone;
  };
  uint64_t self_;
  Verdict memo_[kMemo];
  int n_ = 0;
};
}  // namespace

void CacheImpl::reap_dead(bool frames) {
  GoneMemo gone(self_word_);
  // Pins first: a frame a dead reader kept pinned can be claimed again.
  journals_->reap(self_word_, gone, [this](uint32_t frame) { unpin_unnoted(arena_.frame(frame)); });
  if (!frames) return;
  for (uint64_t i = 0; i < arena_.frame_count(); ++i) {
    FrameDesc& f = arena_.frame(i);
    uint64_t s = f.state.load(std::memory_order_acquire);
    // One load: the word the verdict is about is the word the failure
    // checks again under its pin (another load might see a live issuer's).
    uint64_t owner = f.io_owner.load(std::memory_order_relaxed);
    if ((s & kIo) && gone(io_issuer(owner))) fail_orphaned_io(f, static_cast<uint32_t>(i), owner);
    if (gone(f.lock_owner.load(std::memory_order_relaxed))) recover_locked(static_cast<uint32_t>(i));
  }
}

// Fails the read in flight on frame `i`, issued by `owner`, who is gone. The
// frame is pinned meanwhile (for a few instructions: not journaled), so that
// another reaper failing it too cannot let the clock give it to another page
// while we unlink it.
void CacheImpl::fail_orphaned_io(FrameDesc& f, uint32_t i, uint64_t owner) {
  uint64_t s = f.state.load(std::memory_order_relaxed);
  do {
    if (!(s & kIo) || pins(s) == kPinMask) return;
  } while (!f.state.compare_exchange_weak(s, s + kPinOne, std::memory_order_acquire, std::memory_order_relaxed));
  if (f.io_owner.load(std::memory_order_relaxed) != owner) {
    unpin_unnoted(f);  // failed and given to another page since the scan looked
    return;
  }
  // Unlink while IO still protects the key (see finish_io); our pin keeps
  // the frame from being reused until we are done.
  index_->remove(f.file_id.load(std::memory_order_relaxed), f.page.load(std::memory_order_relaxed), i);
  s = f.state.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    if (!(s & kIo)) break;  // another reaper was first
    next = (s & ~(kIo | kHashed | kWaiters | kReadahead | kUnread | kUptodate | kPartial)) | kError;
  } while (!f.state.compare_exchange_weak(s, next, std::memory_order_acq_rel, std::memory_order_relaxed));
  // A PARTIAL page whose completer died: its held bytes were counted.
  if ((s & kIo) && (s & kUptodate)) stats_->cached_bytes(-held_bytes(f));
  futex_wake_all(low_word(&f.state));
  unpin_unnoted(f);
}

// A frame for a new page. Readahead gives up at once when every frame is
// pinned or in flight (the window just ends early); a page the caller needs
// waits for one to come free — frames in flight free up as their reads
// complete, and those of dead processes are reaped — for up to
// kClaimPatienceNs, after which the read gives up (-ENOBUFS: the caller
// returns what it has or passes the read to the kernel).
int64_t CacheImpl::claim_frame(bool needed) {
  constexpr uint32_t kClaimsPerPinReap = 1024;
  constexpr uint64_t kClaimPatienceNs = 2ull * 1000 * 1000 * 1000;
  uint64_t deadline = 0;
  unsigned idle_sweeps = 0;
  if (__builtin_expect(backing_.load(std::memory_order_acquire) == kUnsettled, 0)) settle_backing();
  for (;;) {
    int64_t v = eviction_->take_victim(self_word_);
    if (v == EvictionPolicy::kNone) {
      if (!needed) return -1;
      uint64_t now = now_ns();
      if (deadline == 0) deadline = now + kClaimPatienceNs;
      if (now > deadline) return -1;
      // Every frame busy: maybe many are held by processes that were killed
      // (reads in flight, claims LOCKED). At once, then now and then.
      if (idle_sweeps++ % 256 == 0) reap_dead();
      struct timespec ts = {0, 50 * 1000};
      sys::raw(SYS_nanosleep, reinterpret_cast<long>(&ts), 0);
      continue;
    }
    // The hand gives frames out in order on its first turn: reaching this
    // one, the cache holds enough pages for the descriptors' page walks to
    // cost more than collapsing them into 2 MiB pages once
    // (Arena::promote_descriptors).
    if (__builtin_expect(static_cast<uint64_t>(v) == descriptors_promote_frame_, 0) &&
        backing_.load(std::memory_order_relaxed) == kOnHugePages)
      arena_.promote_descriptors();
    if (__builtin_expect(fault_kill_in_claim_armed(), 0)) sys::raw(SYS_kill, pid_, SIGKILL);
    // Now and then, pins left by dead processes (a 512-entry scan).
    static thread_local uint32_t claims __attribute__((tls_model("initial-exec"))) = 0;
    if (++claims % kClaimsPerPinReap == 0) reap_dead(false);
    FrameDesc& f = arena_.frame(v);
    uint64_t s = f.state.load(std::memory_order_relaxed);
    if (s & kHashed) {
      index_->remove(f.file_id.load(std::memory_order_relaxed), f.page.load(std::memory_order_relaxed),
                     static_cast<uint32_t>(v));
      stats_->add(stats::kEvictions);
      if (s & kUnread) stats_->add(stats::kReadaheadWasted);
      if (s & kUptodate) stats_->cached_bytes(-held_bytes(f));
    }
    // Keep only the version and LOCKED: the frame is ours and free.
    f.state.store((s & ~kFlagsMask) | kLocked, std::memory_order_relaxed);
    return v;
  }
}

void CacheImpl::settle_backing() {
  if (backing_.load(std::memory_order_acquire) != kUnsettled) return;
  pthread_mutex_lock(&backing_lock_);
  if (backing_.load(std::memory_order_relaxed) == kUnsettled) {
    // A process forked through the fork handlers inherited a settled state;
    // one forked around them settles the arena's shared word instead.
    bool moved = arena_.settle_backing(config_.transparent_huge);
    backing_.store(moved ? kOnHugePages : kOnOrdinaryPages, std::memory_order_release);
  }
  pthread_mutex_unlock(&backing_lock_);
}

// A hit on a frame of state `s` (checked by the caller's seqlock read) that
// lacks REFERENCED or still carries UNREAD: sets the one, clears the other,
// and counts the read-ahead page as used, exactly once among every reader
// (the general path clears UNREAD with one fetch_and and counts it too).
// Only while the frame holds the same version of the page and nobody has
// taken it for another page (LOCKED: claim_frame then counts an UNREAD page
// as wasted, so clearing UNREAD after that would count it twice). Returns
// the state it leaves.
uint64_t CacheImpl::note_first_hit(FrameDesc& f, uint64_t s) {
  const uint64_t v = version(s);
  while (version(s) == v && (s & (kHashed | kLocked)) == kHashed &&
         (s & (kReferenced | kUnread)) != kReferenced) {
    const uint64_t next = (s | kReferenced) & ~kUnread;
    if (f.state.compare_exchange_weak(s, next, std::memory_order_relaxed)) {
      if (s & kUnread) stats_->add(stats::kReadaheadHits);
      return next;
    }
  }
  return s;
}

void CacheImpl::free_claimed(uint32_t frame) {
  FrameDesc& f = arena_.frame(frame);
  uint64_t s = f.state.load(std::memory_order_relaxed);
  f.lock_owner.store(0, std::memory_order_relaxed);  // before LOCKED goes (frame.h)
  f.state.store(s & ~kFlagsMask, std::memory_order_release);
}

// A frame is LOCKED by a process that is gone: it was killed between taking
// the frame for a new page and publishing it (claim_frame, issue). Finish
// the claim for it: unlink whatever key the frame holds (it may be linked
// under its old page, or under the new one if the owner died inside
// insert_or_get after linking; the dead owner's bucket lock is taken over by
// the spin lock) and give the frame back as free. True if it did.
bool CacheImpl::recover_locked(uint32_t frame) {
  FrameDesc& f = arena_.frame(frame);
  uint64_t owner = f.lock_owner.load(std::memory_order_acquire);
  if (owner == 0 || owner == self_word_ || !owner_gone(owner)) return false;
  // One taker: the owner word moves from the dead process to us.
  if (!f.lock_owner.compare_exchange_strong(owner, self_word_, std::memory_order_acq_rel)) return false;
  uint64_t s = f.state.load(std::memory_order_acquire);
  if (s & kLocked) {
    index_->remove(f.file_id.load(std::memory_order_relaxed), f.page.load(std::memory_order_relaxed), frame);
    uint64_t version = (s >> kVersionShift) + 1;
    f.lock_owner.store(0, std::memory_order_relaxed);
    f.state.store(version << kVersionShift, std::memory_order_release);
  } else {
    // Killed after claiming the owner word, before taking LOCKED: the frame
    // itself is fine, only the word is left.
    f.lock_owner.store(0, std::memory_order_release);
  }
  return true;
}

// The read of a whole page into `frame` is done: a new page, or the
// completion of a PARTIAL one (frame.h), whose held bytes were counted.
void CacheImpl::finish_io(uint32_t frame, int64_t bytes) {
  FrameDesc& f = arena_.frame(frame);
  uint64_t s = f.state.load(std::memory_order_relaxed);
  const int64_t held = (s & kUptodate) ? held_bytes(f) : 0;
  if (bytes >= 0) {
    f.lo.store(0, std::memory_order_relaxed);
    f.valid.store(static_cast<uint32_t>(bytes), std::memory_order_relaxed);
    stats_->cached_bytes(bytes - held);
  }
  if (bytes < 0) {
    // The error is reported to those waiting now, not cached: the next read
    // retries. Unlink first, while IO still keeps the frame from being
    // reclaimed: a frame that is unhashed but still linked could be given to
    // another page and linked into a second chain.
    index_->remove(f.file_id.load(std::memory_order_relaxed), f.page.load(std::memory_order_relaxed), frame);
    if (held) stats_->cached_bytes(-held);
  }
  f.io_owner.store(self_word_ | kIoEnded, std::memory_order_relaxed);  // still named (frame.h)
  if (__builtin_expect(fault_kill_in_finish_armed(), 0)) sys::raw(SYS_kill, pid_, SIGKILL);  // tests
  uint64_t next;
  do {
    if (bytes >= 0) {
      next = (s & ~(kIo | kWaiters | kPartial)) | kUptodate;
    } else {
      next = (s & ~(kIo | kWaiters | kHashed | kReadahead | kUnread | kUptodate | kPartial)) | kError;
    }
  } while (!f.state.compare_exchange_weak(s, next, std::memory_order_release, std::memory_order_relaxed));
  if (s & kWaiters) futex_wake_all(low_word(&f.state));
}

// The read of blocks [lo, hi) of a new PARTIAL page is done. From the start
// of the page to its end (or to end of file) is a whole page after all.
void CacheImpl::finish_partial(uint32_t frame, uint64_t lo, uint64_t hi, int64_t bytes) {
  if (bytes < 0) return finish_io(frame, bytes);
  FrameDesc& f = arena_.frame(frame);
  const uint64_t end = lo + static_cast<uint64_t>(bytes);
  const bool whole = lo == 0 && (end == page_size() || end < hi);
  f.valid.store(static_cast<uint32_t>(end), std::memory_order_relaxed);
  stats_->cached_bytes(bytes);
  f.io_owner.store(self_word_ | kIoEnded, std::memory_order_relaxed);  // still named (frame.h)
  uint64_t s = f.state.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = (s & ~(kIo | kWaiters | (whole ? kPartial : 0))) | kUptodate;
  } while (!f.state.compare_exchange_weak(s, next, std::memory_order_release, std::memory_order_relaxed));
  if (s & kWaiters) futex_wake_all(low_word(&f.state));
}

// Reads in blocks at least this large when a page is read in part: the
// kernel's 4 KiB page, or the file's O_DIRECT alignment if larger.
uint64_t CacheImpl::block_size(FileRef* file) const {
  uint64_t align = backend_->alignment(file->backend);
  return align > 4096 ? align : 4096;
}

// A frame just claimed (LOCKED, ours) gets the key (file_id, page), holds
// nothing yet from byte `lo` on, names us as its reader, and is published in
// the index with `flags` (IO among them) under a new version. Returns the
// frame, or the one already holding the page (then ours is still ours to
// give back).
int64_t CacheImpl::publish_claimed(uint32_t frame, uint64_t file_id, uint64_t page, uint64_t lo,
                                   uint64_t flags) {
  FrameDesc& f = arena_.frame(frame);
  f.file_id.store(file_id, std::memory_order_relaxed);
  f.page.store(page, std::memory_order_relaxed);
  f.lo.store(static_cast<uint32_t>(lo), std::memory_order_relaxed);
  f.valid.store(static_cast<uint32_t>(lo), std::memory_order_relaxed);
  f.io_owner.store(self_word_, std::memory_order_relaxed);
  return index_->insert_or_get(file_id, page, frame, [&] {
    uint64_t s = f.state.load(std::memory_order_relaxed);
    uint64_t version = (s >> kVersionShift) + 1;
    f.lock_owner.store(0, std::memory_order_relaxed);  // before LOCKED goes (frame.h)
    f.state.store((version << kVersionShift) | flags, std::memory_order_release);
  });
}

// A small random miss: reads only bytes [lo, hi) of `page` (block aligned)
// into a new frame published PARTIAL, pinned for the caller in *pinned.
// Returns 1 (one page read), 0 when the page appeared meanwhile (nothing
// pinned), -ENOBUFS when no frame could be had, or -errno of the read.
int64_t CacheImpl::read_partial(FileRef* file, uint64_t page, uint64_t lo, uint64_t hi, int64_t* pinned) {
  const bool starve = __builtin_expect(fault_starve_claims_armed(), 0);  // tests
  int64_t v = starve ? -1 : claim_frame(false);
  if (v < 0 && !starve) v = claim_frame(true);
  if (v < 0) return -ENOBUFS;
  FrameDesc& f = arena_.frame(v);
  const uint64_t flags = kHashed | kIo | kPartial | kPinOne | kReferenced;
  int64_t got = publish_claimed(static_cast<uint32_t>(v), file->file_id, page, lo, flags);
  if (got != v) {
    free_claimed(static_cast<uint32_t>(v));
    return 0;
  }
  noted_pin(f);
  *pinned = v;
  iovec iov{arena_.frame_data(v) + lo, hi - lo};
  int64_t r = backend_->read_sync(file->backend, (page << shift_) + lo, &iov, 1);
  finish_partial(static_cast<uint32_t>(v), lo, hi, r);
  if (__builtin_expect(!file->served(), 0))  // as complete_run
    drop_read_frame(static_cast<uint32_t>(v), file->file_id, page);
  return r < 0 ? r : 1;
}

// Takes IO on the PARTIAL frame of `page`, to read the whole page into it
// (frame.h: completion), adding `flags` (READAHEAD, UNREAD) to its state.
// Returns the frame, still pinned if `keep_pin` (the pin noted); kAbsent
// when the page is not in the index; kSkip when it is there and needs no
// completion from us (a whole page, being read, or being completed).
int64_t CacheImpl::take_completion(uint64_t file_id, uint64_t page, uint64_t flags, bool keep_pin) {
  int64_t i = index_->find(file_id, page);
  if (i == PageIndex::kNone) return kAbsent;
  FrameDesc& f = arena_.frame(i);
  uint64_t s = f.state.load(std::memory_order_relaxed);
  bool ours = (s & kHashed) && f.file_id.load(std::memory_order_relaxed) == file_id &&
              f.page.load(std::memory_order_relaxed) == page;
  if (!ours) return kAbsent;
  if (!(s & kPartial)) return kSkip;  // the common case: no pin taken
  // Pinned, the key cannot change and the clock cannot take the frame.
  if (!try_pin(f, file_id, page)) return present(file_id, page) ? kSkip : kAbsent;
  // Being read or completed: wait for it as for any read in flight (the
  // reaper covers a dead issuer). While we hold a pin and see no IO, IO can
  // be taken only through the claim below.
  s = f.state.load(std::memory_order_acquire);
  if (s & kIo) {
    unpin(f);
    return kSkip;
  }
  // The completion is claimed in io_owner before IO is taken, so that IO is
  // never set with nobody named. The word is free when the last read named
  // there has ended, or its claimant died before taking IO (then we take the
  // claim over); a live claimant is a few instructions from taking IO.
  uint64_t prev = f.io_owner.load(std::memory_order_acquire);
  bool free = prev == 0 || (prev & kIoEnded) || (prev != self_word_ && owner_gone(prev));
  if (!free || !f.io_owner.compare_exchange_strong(prev, self_word_, std::memory_order_acquire,
                                                   std::memory_order_relaxed)) {
    unpin(f);
    return kSkip;
  }
  if (__builtin_expect(fault_kill_in_completion_armed(), 0)) sys::raw(SYS_kill, pid_, SIGKILL);  // tests
  s = f.state.load(std::memory_order_relaxed);
  do {
    if ((s & (kHashed | kUptodate | kPartial | kIo)) != (kHashed | kUptodate | kPartial)) {
      // Completed, dropped or failed meanwhile. Give the claim back.
      uint64_t mine = self_word_;
      f.io_owner.compare_exchange_strong(mine, 0, std::memory_order_release, std::memory_order_relaxed);
      unpin(f);
      return kSkip;
    }
  } while (!f.state.compare_exchange_weak(s, s | kIo | flags, std::memory_order_acquire,
                                          std::memory_order_relaxed));
  if (!keep_pin) unpin(f);
  return i;
}

// Coherence depends on this finding the page if it is there, so it looks
// under the bucket lock (a lock-free walk may miss an entry while the chain
// changes), and a frame it cannot pin (being evicted this very moment, hence
// about to leave the index) is looked up again until it is gone.
bool CacheImpl::drop_page(uint64_t file_id, uint64_t page) {
  // Before any process settled the arena nothing was ever hashed, and the
  // bucket lock must not be taken while the buckets may move (settle_backing).
  uint32_t backing = arena_.header().frame_backing.load(std::memory_order_acquire);
  if (backing == kBackingUnsettled || backing == kBackingMoving) return false;
  bool dropped = false;
  for (unsigned attempt = 0;; ++attempt) {
    int64_t i = index_->find_exact(file_id, page);
    if (i == PageIndex::kNone) return dropped;
    FrameDesc& f = arena_.frame(i);
    if (!try_pin(f, file_id, page)) {
      if (attempt > 16) sched_yield();
      // LOCKED for long: its owner may have been killed mid-claim.
      if (attempt % 4096 == 4095) recover_locked(static_cast<uint32_t>(i));
      continue;
    }
    uint64_t s = wait_io(f);
    // Unhash it while pinned (our pin keeps it from being reused); later
    // lookups miss and read the page again.
    uint64_t next;
    do {
      if (!(s & kHashed)) break;
      next = s & ~(kHashed | kReadahead | kUnread);
    } while (!f.state.compare_exchange_weak(s, next, std::memory_order_acq_rel));
    if (s & kHashed) {
      index_->remove(file_id, page, static_cast<uint32_t>(i));
      if (s & kUptodate) stats_->cached_bytes(-held_bytes(f));
      dropped = true;
    }
    unpin(f);
  }
}

// A frame whose read this thread has just ended, for a file whose lease
// broke meanwhile: unhashed if it still holds `page` of `file_id`. Unlike
// drop_page it never waits for a read in flight: it runs on an engine's
// completion thread, and the page may by now be in another frame whose read
// that same thread has still to complete (a deadlock, found by
// coherence_stress).
void CacheImpl::drop_read_frame(uint32_t frame, uint64_t file_id, uint64_t page) {
  FrameDesc& f = arena_.frame(frame);
  if (!try_pin(f, file_id, page)) return;  // evicted or reused: not the page any more
  uint64_t s = f.state.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    // In flight again (a PARTIAL page being completed by someone else): its
    // completion checks the lease itself.
    if (!(s & kHashed) || (s & kIo)) break;
    next = s & ~(kHashed | kReadahead | kUnread);
  } while (!f.state.compare_exchange_weak(s, next, std::memory_order_acq_rel));
  if ((s & kHashed) && !(s & kIo)) {
    index_->remove(file_id, page, frame);
    if (s & kUptodate) stats_->cached_bytes(-held_bytes(f));
  }
  unpin(f);
}

// ---------------------------------------------------------------- I/O

AsyncRequest* CacheImpl::take_request() {
  for (int i = 0; i < kAsyncRequests; ++i) {
    uint32_t expected = 0;
    if (requests_[i].busy.load(std::memory_order_relaxed) == 0 &&
        requests_[i].busy.compare_exchange_strong(expected, 1, std::memory_order_acquire))
      return &requests_[i];
  }
  return nullptr;
}

void CacheImpl::complete_run(FileRef* file, uint64_t first_page, const uint32_t* frames, uint32_t n,
                             int64_t result) {
  const int64_t ps = static_cast<int64_t>(page_size());
  for (uint32_t i = 0; i < n; ++i) {
    int64_t bytes = result;
    if (result >= 0) {
      bytes = result - static_cast<int64_t>(i) * ps;
      if (bytes < 0) bytes = 0;
      if (bytes > ps) bytes = ps;
    }
    finish_io(frames[i], bytes);
  }
  // The lease broke while these pages were read (FileRef::coherence): the
  // drop may have passed them before they were published, so they go now.
  // Whoever waited for them still copies what was read: their read began
  // before the writer's open returned.
  if (__builtin_expect(!file->served(), 0))
    for (uint32_t i = 0; i < n; ++i) drop_read_frame(frames[i], file->file_id, first_page + i);
}

void CacheImpl::on_async_complete(void* ctx, uint64_t cookie, int64_t result) {
  auto* self = static_cast<CacheImpl*>(ctx);
  AsyncRequest& r = self->requests_[cookie];
  self->complete_run(r.file, r.first_page, r.frames, r.count, result);
  r.busy.store(0, std::memory_order_release);
}

// Reads a run of claimed frames. Returns the synchronous result (bytes or
// -errno), or 0 when the run was queued.
int64_t CacheImpl::submit_run(FileRef* file, uint64_t first_page, const uint32_t* frames, uint32_t n,
                              bool sync) {
  if (n == 0) return 0;
  iovec iov[Backend::kMaxIov];
  for (uint32_t i = 0; i < n; ++i) {
    iov[i].iov_base = arena_.frame_data(frames[i]);
    iov[i].iov_len = page_size();
  }
  uint64_t offset = first_page << shift_;
  if (!sync) {
    if (__builtin_expect(fault_lose_async_armed(), 0)) return 0;  // frames stay in flight (tests)
    AsyncRequest* r = take_request();
    if (r != nullptr) {
      r->count = n;
      r->first_page = first_page;
      r->file = file;
      memcpy(r->frames, frames, n * sizeof(uint32_t));
      uint64_t cookie = static_cast<uint64_t>(r - requests_);
      if (backend_->read_async(file->backend, offset, iov, static_cast<int>(n), cookie)) return 0;
      r->busy.store(0, std::memory_order_release);
    }
    // The queue is full: read ahead synchronously rather than drop the window.
  }
  int64_t result = backend_->read_sync(file->backend, offset, iov, static_cast<int>(n));
  complete_run(file, first_page, frames, n, result);
  return result;
}

// Claims frames for the missing pages of [start, start + count) and reads
// them: pages before `need_end` synchronously (the caller waits for them),
// the rest through the asynchronous queue. `mark` gets the READAHEAD mark.
// Returns how many pages before `need_end` it read (the caller's misses), or
// -errno when reading one of them failed.
//
// If it claims page `pin_page`, the frame is handed back in *pinned with a
// pin held for the caller: the page cannot be evicted between its read and
// the caller's copy, however hard other readers press on the cache, so every
// miss makes progress.
int64_t CacheImpl::issue(FileRef* file, uint64_t start, uint64_t count, uint64_t need_end,
                          uint64_t mark, uint64_t pin_page, int64_t* pinned) {
  uint64_t end = start + count;
  uint64_t limit = file_pages(file->size.load(std::memory_order_relaxed));
  if (end > limit) end = limit;
  if (start >= end) return 0;
  uint64_t needed_read = 0;
  int64_t sync_error = 0;

  uint32_t sync_frames[Backend::kMaxIov], async_frames[Backend::kMaxIov];
  uint32_t nsync = 0, nasync = 0;
  uint64_t sync_first = 0, async_first = 0;
  uint64_t readahead = 0;
  // Sync runs are read after the whole window is claimed and the async part
  // queued, so the device sees the whole window at once. They are kept in a
  // small list of runs.
  struct Run { uint64_t first; uint32_t n; uint32_t frames[Backend::kMaxIov]; };
  static_assert(sizeof(Run) < 2048, "runs live on the stack");
  Run pending[4];
  int npending = 0;

  auto flush_sync = [&] {
    if (nsync == 0) return;
    if (npending == 4) {
      int64_t r = submit_run(file, pending[0].first, pending[0].frames, pending[0].n, true);
      if (r < 0) sync_error = r;
      memmove(&pending[0], &pending[1], sizeof(Run) * 3);
      --npending;
    }
    pending[npending].first = sync_first;
    pending[npending].n = nsync;
    memcpy(pending[npending].frames, sync_frames, nsync * sizeof(uint32_t));
    ++npending;
    nsync = 0;
  };
  auto submit_pending = [&] {
    for (int i = 0; i < npending; ++i) {
      int64_t r = submit_run(file, pending[i].first, pending[i].frames, pending[i].n, true);
      if (r < 0) sync_error = r;
    }
    npending = 0;
  };
  auto flush_async = [&] {
    submit_run(file, async_first, async_frames, nasync, false);
    nasync = 0;
  };
  // Frame `frame`, ready to be read for page p, joins the synchronous run
  // (a page the caller needs) or the asynchronous one.
  auto queue = [&](uint64_t p, uint32_t frame, bool needed) {
    if (needed) {
      ++needed_read;
      if (nsync == Backend::kMaxIov) flush_sync();
      if (nsync == 0) sync_first = p;
      sync_frames[nsync++] = frame;
    } else {
      flush_sync();
      if (nasync == Backend::kMaxIov) flush_async();
      if (nasync == 0) async_first = p;
      async_frames[nasync++] = frame;
      ++readahead;
    }
  };

  for (uint64_t p = start; p < end; ++p) {
    bool needed = p < need_end;
    // A PARTIAL page in the window is completed, not skipped: its frame
    // joins the run like a new one. It never gets the READAHEAD mark: like
    // a page the kernel finds cached, it was there already (in part), and a
    // random reader's pages must not relay async readahead through a file
    // it read densely (each window completing pages and marking one more).
    uint64_t extra = needed ? 0 : kUnread;
    bool pin_it = p == pin_page && pinned != nullptr;
    int64_t held = take_completion(file->file_id, p, extra, pin_it);
    if (held == kSkip) {
      flush_sync();
      flush_async();
      continue;
    }
    if (held >= 0) {
      if (pin_it) *pinned = held;
      queue(p, static_cast<uint32_t>(held), needed);
      continue;
    }
    const bool starve = needed && __builtin_expect(fault_starve_claims_armed(), 0);  // tests
    int64_t v = starve ? -1 : claim_frame(false);
    if (v < 0 && needed) {
      // Every frame is pinned or in flight, some of them by this very
      // window: start our reads first so that our own frames can free up,
      // then wait for a frame.
      flush_sync();
      flush_async();
      submit_pending();
      v = starve ? -1 : claim_frame(true);
    }
    if (v < 0) {
      // No frame to be had: the window ends early; a page the caller needs
      // waited its patience out, and the caller must not wait again.
      if (needed) sync_error = -ENOBUFS;
      break;
    }
    FrameDesc& f = arena_.frame(v);
    uint64_t flags = kHashed | kIo;
    if (p == mark) flags |= kReadahead;
    // A page read ahead starts REFERENCED, as if just read: its reader has
    // not come yet. Without it the hand, having cleared the bits of the
    // pages read since its last turn, would take the newest pages first
    // and, in a small cache, evict a window before its reader reaches it.
    if (!needed) flags |= kUnread | kReferenced;
    bool pin = p == pin_page && pinned != nullptr;
    if (pin) flags |= kPinOne | kReferenced;
    int64_t got = publish_claimed(static_cast<uint32_t>(v), file->file_id, p, 0, flags);
    if (got != v) {
      // Someone else inserted the page meanwhile.
      free_claimed(static_cast<uint32_t>(v));
      flush_sync();
      flush_async();
      continue;
    }
    if (pin) {
      noted_pin(f);
      *pinned = v;
    }
    queue(p, static_cast<uint32_t>(v), needed);
  }
  flush_sync();
  flush_async();
  submit_pending();
  if (readahead) {
    stats_->add(stats::kReadaheadPages, readahead);
    stats_->file_add(file->stats_slot, stats::kFileReadahead, readahead);
  }
  return sync_error < 0 ? sync_error : static_cast<int64_t>(needed_read);
}

void CacheImpl::prefetch(FileRef* file, uint64_t offset, uint64_t len) {
  if (file->writable_maps->load(std::memory_order_relaxed) != 0) return;
  if (!file->served() && !admit(file)) return;
  uint64_t size = file->size.load(std::memory_order_relaxed);
  if (offset >= size || len == 0) return;
  if (len > size - offset) len = size - offset;
  uint64_t first = offset >> shift_;
  uint64_t last = (offset + len - 1) >> shift_;
  // Bounded like a readahead window so a huge WILLNEED cannot flush the cache.
  uint64_t cap = config_.frame_count() / 2;
  if (last - first + 1 > cap) last = first + cap - 1;
  issue(file, first, last - first + 1, first, RaWindow::kNoMark);
}

// ---------------------------------------------------------------- read

// Waiting for another thread to finish with a frame: spin briefly, then
// yield, then sleep; false after about two seconds (the caller gives up and
// the read goes to the kernel).
bool backoff(unsigned& attempt) {
  ++attempt;
  if (attempt < 16) return true;
  if (attempt < 64) {
    sched_yield();
    return true;
  }
  if (attempt > 64 + 20000) return false;
  struct timespec ts = {0, 100 * 1000};
  sys::raw(SYS_nanosleep, reinterpret_cast<long>(&ts), 0);
  return true;
}

int64_t CacheImpl::read(FileRef* file, RaState& ra, uint64_t pos, const iovec* iov, int iovcnt,
                        unsigned flags) {
  uint64_t want = IovCursor::total(iov, iovcnt);
  if (want == 0) return 0;
  // Mapped shared and writable by the program: the kernel's page cache holds
  // the truth (mapped_writable).
  if (__builtin_expect(file->writable_maps->load(std::memory_order_relaxed) != 0, 0)) return -ENOBUFS;
  // Not under a lease: the kernel answers (counted), unless a lease can be had now.
  if (__builtin_expect(!file->served(), 0) && !admit(file)) {
    stats_->add(stats::kCoherencePassthrough);
    stats_->file_add(file->stats_slot, stats::kFilePassthrough, 1);
    return -ENOBUFS;
  }
  // Latency: every read that misses is timed; of the hits, one in
  // kHitSample per thread (two clock reads would cost as much as the hit).
  uint64_t t0 = hit_sampled() ? now_ns() : 0;
  uint64_t size = file->size.load(std::memory_order_relaxed);
  // A read that reaches what we believe is the end asks the kernel: the file
  // may have grown (or shrunk) since.
  if (pos + want > size) {
    refresh_size(file);
    size = file->size.load(std::memory_order_relaxed);
  }
  if (pos >= size) return 0;
  uint64_t end = pos + want < size ? pos + want : size;

  const uint64_t ps = page_size();
  const uint64_t first = pos >> shift_;
  uint64_t last = (end - 1) >> shift_;  // inclusive
  // Readahead sizes the request from the read as asked, not as clipped to
  // end of file (as filemap_get_pages does).
  const uint64_t ra_last = (pos + want - 1) >> shift_;
  ProbeContext probe{this, file->file_id};
  RaContext ctx;
  ctx.cached = &CacheImpl::ra_probe;
  ctx.self = &probe;
  ctx.file_pages = file_pages(size);
  ctx.page_shift = shift_;

  IovCursor out(iov, iovcnt);
  uint64_t done = 0;  // bytes copied
  uint64_t misses = 0;  // pages this read had to read itself
  int64_t error = 0;
  // Times the current page was found failed elsewhere or stale and read
  // again. Per page: a read crossing a killed worker's readahead meets
  // every one of those pages failed once (rel_fork_kill: a 2.5 MiB pread
  // met 65 and returned a short count when this counted the whole read).
  unsigned page_retries = 0;
  constexpr unsigned kMaxPageRetries = 64;
  unsigned waits = 0;    // waits for a frame someone else holds
  bool alone = false;  // read the pages still missing one at a time
  uint64_t incomplete = kNoPin;  // a PARTIAL page lacking bytes we need: read it as a miss
  const uint64_t block = block_size(file);

  for (uint64_t p = first; p <= last;) {
    if (p < last) index_->prefetch(file->file_id, p + 1);
    const uint64_t page_start = p << shift_;
    int64_t i = p == incomplete ? -1 : find_pinned(file->file_id, p);
    if (i < 0) {
      if (flags & kReadNoWait) {
        error = -EAGAIN;
        break;
      }
      // After a failed run, pages are read one at a time and without
      // readahead (as filemap_read retries the first page of a failed batch
      // alone): the bytes before a bad page are returned, only the failure
      // of the page at the read position is reported.
      if (t0 == 0) t0 = now_ns();  // every miss is timed (from here)
      RaWindow w = alone ? RaWindow{} : ra_on_miss(ra, ctx, p, ra_last + 1 - p);
      // The caller needs [p, last]; whatever the window says, those pages are read now.
      uint64_t need_end = alone ? p + 1 : last + 1;
      int64_t got = 0, more = 0, pinned = -1;
      // A random reader of part of one page: read only the blocks it needs
      // (a PARTIAL page, frame.h), as the kernel reads only its 4 KiB pages.
      // A PARTIAL page that lacks bytes is completed by issue() instead.
      uint64_t lo = 0, hi = ps;
      if (!w.stream && need_end == p + 1 && (w.size == 0 || (w.start == p && w.size == 1)) &&
          p != incomplete && block < ps) {
        lo = (pos > page_start ? pos - page_start : 0) & ~(block - 1);
        uint64_t to = end - page_start < ps ? end - page_start : ps;
        hi = (to + block - 1) & ~(block - 1);
        // Reaching the end of file anyway: read on to it (a tail page whole
        // in one read when it starts at the page).
        uint64_t in_file = size - page_start < ps ? size - page_start : ps;
        if (hi >= ((in_file + block - 1) & ~(block - 1))) hi = ps;
      }
      incomplete = kNoPin;
      if (lo > 0 || hi < ps) {
        got = read_partial(file, p, lo, hi, &pinned);
      } else {
        if (w.size == 0 || w.start > p || w.start + w.size < need_end)
          got = issue(file, p, need_end - p, need_end, RaWindow::kNoMark, p, &pinned);
        if (w.size > 0 && got >= 0) more = issue(file, w.start, w.size, need_end, w.mark, p, &pinned);
      }
      if (got < 0 || more < 0) {
        if (pinned >= 0) unpin(arena_.frame(pinned));
        if (got == -ENOBUFS || more == -ENOBUFS) {
          error = -ENOBUFS;  // no frame for a page we need, after waiting (claim_frame)
          break;
        }
        if (!alone) {
          alone = true;
          continue;
        }
        // The device failed on a page we need: report it (the error is not
        // cached; a later read tries again).
        error = got < 0 ? got : more;
        break;
      }
      misses += static_cast<uint64_t>(got + more);
      if (pinned < 0) {
        // Page p is there but could not be pinned: another thread is
        // between taking it for eviction and unhashing it (it may have been
        // preempted right there), or no frame could be had. Let it finish;
        // if it takes long, its owner may have been killed mid-claim.
        if (waits % 256 == 255) {
          int64_t held = index_->find(file->file_id, p);
          if (held != PageIndex::kNone) recover_locked(static_cast<uint32_t>(held));
        }
        if (!backoff(waits)) {
          error = -ENOBUFS;
          break;
        }
        continue;
      }
      i = pinned;  // our own read, pinned for us
    }
    if (__builtin_expect(fault_kill_after_pin_armed(), 0)) sys::raw(SYS_kill, pid_, SIGKILL);  // tests
    FrameDesc& f = arena_.frame(i);
    uint64_t s = f.state.load(std::memory_order_acquire);
    if (s & kReadahead) {
      uint64_t old = f.state.fetch_and(~kReadahead, std::memory_order_relaxed);
      if ((old & kReadahead) && !(flags & kReadNoWait)) {
        RaWindow w = ra_on_marked(ra, ctx, p, first, ra_last + 1 - first);
        if (w.size > 0) issue(file, w.start, w.size, 0, w.mark);
      }
    }
    if (s & kIo) {
      if (flags & kReadNoWait) {
        unpin(f);
        error = -EAGAIN;
        break;
      }
      s = wait_io(f);
    }
    uint64_t from = pos > page_start ? pos - page_start : 0;
    uint64_t to = end - page_start < ps ? end - page_start : ps;
    if ((s & (kPartial | kError)) == kPartial && !holds(f, from, to)) {
      // A PARTIAL page without all the bytes we need: read it as a miss
      // would be (readahead decides the window), which completes it.
      unpin(f);
      if (flags & kReadNoWait) {
        error = -EAGAIN;
        break;
      }
      incomplete = p;
      continue;
    }
    if (s & kError) {
      // Someone else's read of this page failed (readahead, or a process
      // that died with it in flight). Like filemap_read, read it again
      // ourselves: only a failure of our own synchronous read is reported.
      unpin(f);
      if (++page_retries > kMaxPageRetries) {
        error = -EIO;
        break;
      }
      continue;
    }
    if (s & kUnread) {
      uint64_t old = f.state.fetch_and(~kUnread, std::memory_order_relaxed);
      if (old & kUnread) stats_->add(stats::kReadaheadHits);
    }
    uint64_t valid = f.valid.load(std::memory_order_relaxed);
    if (to > valid) {
      // The frame holds less than our idea of the file: it was read when the
      // file was shorter (or the file shrank). Ask the kernel for the size,
      // drop the stale frame and read it again.
      unpin(f);
      refresh_size(file);
      uint64_t now_size = file->size.load(std::memory_order_relaxed);
      if (now_size < end) {
        end = now_size > pos ? now_size : pos;
        if (end <= pos + done) break;
        last = (end - 1) >> shift_;
        ctx.file_pages = file_pages(now_size);
        if (page_start + valid >= end) continue;  // the frame suffices now
      }
      drop_page(file->file_id, p);
      if (++page_retries > kMaxPageRetries) {
        error = -EIO;
        break;
      }
      continue;
    }
    if (!guarded_copy_out(out, arena_.frame_data(i) + from, to - from)) {
      // The program's buffer is bad: like the kernel, report what was
      // copied before this page, or EFAULT.
      unpin(f);
      error = -EFAULT;
      break;
    }
    unpin(f);
    done += to - from;
    ++p;
    page_retries = 0;
  }

  // Starved of frames (claim_frame gave up): the caller has the kernel serve
  // the whole read from `pos` (copying again the bytes copied so far, the
  // same ones), so a program never gets a short count from a file that has
  // more.
  if (error == -ENOBUFS) done = 0;
  if (done > 0 || error == 0) {
    ra.prev_pos = static_cast<int64_t>(pos + done);
  }
  // Pages touched that this read did not have to read itself were hits
  // (up to date, or already in flight thanks to readahead).
  uint64_t touched = done ? ((pos + done - 1) >> shift_) - first + 1 : 0;
  uint64_t hits = touched > misses ? touched - misses : 0;
  stats_->add(stats::kReads);
  if (done) {
    stats_->add(stats::kBytesRead, done);
    stats_->file_add(file->stats_slot, stats::kFileBytes, done);
  }
  if (hits) {
    stats_->add(stats::kHits, hits);
    stats_->file_add(file->stats_slot, stats::kFileHits, hits);
  }
  if (misses) {
    stats_->add(stats::kMisses, misses);
    stats_->file_add(file->stats_slot, stats::kFileMisses, misses);
  }
  if (t0) stats_->latency(misses ? stats::kMissLatency : stats::kHitLatency, now_ns() - t0);
  StatsSink::last_read_misses() = misses;
  if (done > 0) return static_cast<int64_t>(done);
  return error;
}

int64_t CacheImpl::read_hit(FileRef* file, RaState& ra, uint64_t pos, void* buf, uint64_t n,
                            HitCursor* cursor) {
  // The arena's geometry in locals: the atomic loads below would otherwise
  // make the compiler load each member again after them.
  const unsigned shift = shift_;
  const uint64_t ps = uint64_t{1} << shift;
  const uint64_t frames = arena_.frame_count();
  const uint64_t page = pos >> shift;
  const uint64_t from = pos & (ps - 1);
  // One page, and short of the end of file as we know it (read() asks the
  // kernel there: the file may have grown).
  if (n == 0 || n > ps - from || pos + n > file->size.load(std::memory_order_relaxed)) return 0;
  // Not under a lease (or pending): read() decides.
  if (__builtin_expect(!file->served(), 0)) return 0;
  const uint64_t file_id = file->file_id;
  FrameHint& hint = frame_hint(file_id, page);
  constexpr uint64_t kWant = kHashed | kUptodate;
  constexpr uint64_t kDecline = kLocked | kIo | kError | kReadahead;
  // The hinted frame first; if it no longer holds the page, the index.
  bool hinted = hint.file_id == file_id && hint.page == page && hint.frame < frames;
  uint64_t i = hinted ? hint.frame : 0;
  uint64_t s1 = 0;
  for (;;) {
    if (!hinted) {
      int64_t found = index_->find_prefetching(file_id, page, from);
      if (found == PageIndex::kNone) return 0;
      i = static_cast<uint64_t>(found);
    }
    FrameDesc& f = arena_.frame(i);
    // Acquire: the key, `valid` and the bytes of the page as published with
    // this state (insert_or_get, finish_io) are visible.
    s1 = f.state.load(std::memory_order_acquire);
    if ((s1 & kHashed) && f.file_id.load(std::memory_order_relaxed) == file_id &&
        f.page.load(std::memory_order_relaxed) == page)
      break;
    if (!hinted) return 0;
    hinted = false;
  }
  FrameDesc& f = arena_.frame(i);
  // `valid` and `lo` of this version: the re-check below vouches for them,
  // and the cursor is filled with them.
  const uint64_t valid = f.valid.load(std::memory_order_relaxed);
  const uint64_t lo = (s1 & kPartial) ? f.lo.load(std::memory_order_relaxed) : 0;
  if ((s1 & (kWant | kDecline)) != kWant || valid < from + n) return 0;
  // A PARTIAL page serves only the bytes it holds (frame.h).
  if (__builtin_expect(lo > from, 0)) return 0;
  const bool timed = hit_sampled();
  const uint64_t t0 = timed ? now_ns() : 0;
  // The frame may be evicted and refilled with another page while we copy:
  // the copy may then hold torn bytes, and is thrown away below. The arena
  // stays mapped, so the copy itself is always safe; a bad user buffer is
  // caught by the guard and left to read(), which reports it exactly.
  const char* const frame_base = arena_.frame_data(i);
  if (!guarded_copy(buf, frame_base + from, n)) return 0;
  if (n <= kSmallRead) {
    if (ps - (from + n) > kStreamFar) {
      __builtin_prefetch(frame_base + from + n + kStreamAhead);
    } else {
      stream_ahead(file_id, page, from + n, n, frame_base);
    }
  }
  // Seqlock reader: the copy's loads happen before the re-check. The frame
  // held the page the whole time iff it is still hashed, not locked, and of
  // the same version: giving it to another page takes LOCKED and clears
  // HASHED (claim_frame), dropping it clears HASHED (drop_page), and only a
  // publication under a new version sets HASHED again (insert_or_get); the
  // bytes of a frame change only after such a publication, or while a
  // PARTIAL page is completed: IO set, then PARTIAL cleared or (failure)
  // HASHED cleared, all within the version. A copy that overlapped a
  // completion, or read `lo` and `valid` of another moment, sees one of them
  // changed. (IO and PARTIAL never change within a version otherwise: no
  // false rejections on whole pages.)
  std::atomic_thread_fence(std::memory_order_acquire);
  uint64_t s2 = f.state.load(std::memory_order_relaxed);
  if (version(s2) != version(s1) || (s2 & (kHashed | kLocked | kIo | kPartial)) != (kHashed | (s1 & kPartial)))
    return 0;
  // The first hit since the clock hand passed, or the first read of a page
  // read ahead: one CAS says so (later hits leave the line clean). Until
  // then such hits took the general path, which made the first pass over
  // pages read ahead about 10% slower than the next.
  if (__builtin_expect((s2 & (kReferenced | kUnread)) != kReferenced, 0)) s2 = note_first_hit(f, s2);

  if (!hinted) hint = FrameHint{file_id, page, i};
  if (cursor && file->served()) {
    const uint64_t page_start = page << shift;
    const uint64_t size = file->size.load(std::memory_order_relaxed);
    const uint64_t valid_end = page_start + valid;
    *cursor = HitCursor{&f.state, s2, frame_base, page_start, page_start + lo,
                        valid_end < size ? valid_end : size, file_id, page, nullptr, file->stats_slot,
                        &file->coherence, file->coherence.load(std::memory_order_relaxed)};
  }
  ra.prev_pos = static_cast<int64_t>(pos + n);
  stats_->hit(file->stats_slot, n);
  if (timed) stats_->latency(stats::kHitLatency, now_ns() - t0);
  StatsSink::last_read_misses() = 0;
  return static_cast<int64_t>(n);
}

// Keeps a small sequential reader's next bytes coming (hit_path in cache.h).
// `end`: this read's end within `page`, whose frame's data is `frame_base`.
// With `left` the bytes of the page after this read, each step runs on the
// one read that crosses its mark:
//   left < kStreamAhead + 2 steps: prefetch the bucket of page + 1;
//   left < kStreamAhead + 1 step:  prefetch the descriptor and data of the
//                                  frame that bucket names first;
//   left <= kStreamAhead:          find page + 1 (in cache by now), record it
//                                  in the frame hints and return its data;
// then the line ahead is fetched from that frame, and the reader's first hit
// there needs no index. Only prefetches and a hint: a page evicted or never
// read in costs a wasted fetch, never a wrong byte (read_hit checks).
const char* CacheImpl::stream_ahead(uint64_t file_id, uint64_t page, uint64_t end, uint64_t n,
                                    const char* frame_base) {
  const uint64_t left = page_size() - end;
  auto crossed = [left, n](uint64_t mark) { return left < mark && left + n >= mark; };
  if (left > kStreamAhead) {
    __builtin_prefetch(frame_base + end + kStreamAhead);
    if (crossed(kStreamAhead + 2 * kStepApart)) {
      index_->prefetch(file_id, page + 1);
    } else if (crossed(kStreamAhead + kStepApart)) {
      index_->prefetch_first(file_id, page + 1, 0);
    }
    return nullptr;
  }
  FrameHint& next = frame_hint(file_id, page + 1);
  const char* found_data = nullptr;
  if (crossed(kStreamAhead + 1)) {
    int64_t found = index_->find(file_id, page + 1);
    if (found == PageIndex::kNone) return nullptr;
    next = FrameHint{file_id, page + 1, static_cast<uint64_t>(found)};
    found_data = arena_.frame_data(next.frame);
  }
  if (next.file_id == file_id && next.page == page + 1 && next.frame < arena_.frame_count())
    __builtin_prefetch(arena_.frame_data(next.frame) + (kStreamAhead - left));
  return found_data;
}

// Drops the pages holding bytes [offset, offset + len) (len == 0: up to
// size_bound, the largest size the file is known to have had).
uint64_t CacheImpl::drop_range(uint64_t file_id, uint64_t offset, uint64_t len, uint64_t size_bound) {
  uint64_t first = offset >> shift_;
  uint64_t last_excl;
  if (len == 0) {
    last_excl = file_pages(size_bound > offset ? size_bound : offset) + 1;
  } else {
    last_excl = ((offset + len - 1) >> shift_) + 1;
  }
  uint64_t dropped = 0;
  for (uint64_t p = first; p < last_excl; ++p) dropped += drop_page(file_id, p);
  return dropped;
}

// The program changed bytes of an inode (`st` is its state after the
// change). Every FileRef of this process for that inode — there may be
// several file ids if the file changed between opens — drops the pages
// touched and takes the new size; the page that held an old end of file is
// dropped too, since it may now be short of valid bytes. The inode table
// records the new attributes, so the next open keeps the file id (and the
// pages the change left valid) instead of treating the file as replaced.
void CacheImpl::invalidate_inode(const struct stat& st, uint64_t offset, uint64_t len) {
  uint64_t new_size = static_cast<uint64_t>(st.st_size);
  // The id the inode table holds is the one every process sharing the arena
  // attaches with; a forked relative may hold it while this process has no
  // FileRef for the inode at all (a write through a write-only descriptor).
  uint64_t shared_id = 0, recorded_size = 0;
  bool shared = inodes_->lookup(st.st_dev, st.st_ino, &shared_id, &recorded_size);
  bool shared_done = false;
  pthread_mutex_lock(&files_lock_);
  for (FileRef* f = files_; f; f = f->next) {
    if (f->identity.dev != st.st_dev || f->identity.ino != st.st_ino) continue;
    uint64_t old_size = f->size.exchange(new_size, std::memory_order_relaxed);
    if (shared && f->file_id == shared_id) {
      if (recorded_size > old_size) old_size = recorded_size;
      shared_done = true;
    }
    drop_range(f->file_id, offset, len, old_size > new_size ? old_size : new_size);
    if (old_size != new_size && old_size > 0) drop_page(f->file_id, (old_size - 1) >> shift_);
    f->identity = identity_of(st, f->identity.generation);
    inodes_->update(f->file_id, f->identity);
  }
  pthread_mutex_unlock(&files_lock_);
  if (shared && !shared_done) {
    drop_range(shared_id, offset, len, recorded_size > new_size ? recorded_size : new_size);
    if (recorded_size != new_size && recorded_size > 0) drop_page(shared_id, (recorded_size - 1) >> shift_);
    inodes_->update_attributes(shared_id, identity_of(st, 0));
  }
}

std::atomic<uint32_t>& CacheImpl::writable_maps(uint64_t dev, uint64_t ino) const {
  uint64_t h = (dev * 0x9E3779B97F4A7C15ull) ^ (ino * 0xC2B2AE3D27D4EB4Full);
  h ^= h >> 29;
  return arena_.header().writable_maps[h & (ArenaHeader::kMapSlots - 1)];
}

// Drops every cached page of inode (dev, ino): under every file id this
// process holds for it and the one the shared inode table holds.
uint64_t CacheImpl::drop_inode(uint64_t dev, uint64_t ino) {
  uint64_t shared_id = 0, recorded_size = 0;
  bool shared = inodes_->lookup(dev, ino, &shared_id, &recorded_size);
  bool shared_done = false;
  uint64_t dropped = 0;
  pthread_mutex_lock(&files_lock_);
  for (FileRef* f = files_; f; f = f->next) {
    if (f->identity.dev != dev || f->identity.ino != ino) continue;
    uint64_t bound = f->size.load(std::memory_order_relaxed);
    if (shared && f->file_id == shared_id) {
      if (recorded_size > bound) bound = recorded_size;
      shared_done = true;
    }
    dropped += drop_range(f->file_id, 0, 0, bound);
  }
  pthread_mutex_unlock(&files_lock_);
  if (shared && !shared_done) dropped += drop_range(shared_id, 0, 0, recorded_size);
  return dropped;
}

void CacheImpl::mapped_writable(uint64_t dev, uint64_t ino) {
  // Count first: from here on no read caches a page of the inode, so the
  // drop leaves nothing behind.
  writable_maps(dev, ino).fetch_add(1, std::memory_order_acq_rel);
  drop_inode(dev, ino);
}

void CacheImpl::unmapped_writable(uint64_t dev, uint64_t ino) {
  // Drop while still counted (nothing is cached meanwhile), then uncount.
  drop_inode(dev, ino);
  std::atomic<uint32_t>& n = writable_maps(dev, ino);
  uint32_t v = n.load(std::memory_order_relaxed);
  while (v != 0 && !n.compare_exchange_weak(v, v - 1, std::memory_order_acq_rel)) {
  }
}

void CacheImpl::count_writable(uint64_t dev, uint64_t ino) {
  writable_maps(dev, ino).fetch_add(1, std::memory_order_acq_rel);
}

void CacheImpl::invalidate(FileRef* file, uint64_t offset, uint64_t len) {
  struct stat st;
  if (backend_->stat(file->backend, &st) < 0) {
    // Cannot tell the new size: forget everything cached for this file id.
    drop_range(file->file_id, 0, 0, file->size.load(std::memory_order_relaxed));
    return;
  }
  invalidate_inode(st, offset, len);
}

void CacheImpl::invalidate_fd(int fd, uint64_t offset, uint64_t len) {
  struct stat st;
  if (sys::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return;
  invalidate_inode(st, offset, len);
}

int CacheImpl::advise(FileRef* file, RaState& ra, uint64_t offset, uint64_t len, int advice) {
  RaState fresh = new_ra_state();
  switch (advice) {
    case POSIX_FADV_NORMAL:
      ra.ra_pages = fresh.ra_pages;
      ra.random = false;
      return 0;
    case POSIX_FADV_SEQUENTIAL: {
      uint64_t doubled = 2ull * fresh.ra_pages;
      uint64_t cap = config_.frame_count() / 2;
      ra.ra_pages = static_cast<uint32_t>(doubled < cap ? doubled : cap);
      ra.random = false;
      return 0;
    }
    case POSIX_FADV_RANDOM:
      ra.random = true;
      return 0;
    case POSIX_FADV_WILLNEED:
      prefetch(file, offset, len == 0 ? file->size.load(std::memory_order_relaxed) : len);
      return 0;
    case POSIX_FADV_DONTNEED:
      drop_range(file->file_id, offset, len, file->size.load(std::memory_order_relaxed));
      return 0;
    case POSIX_FADV_NOREUSE:
      return 0;
    default:
      return -EINVAL;
  }
}

void CacheImpl::after_fork_child() {
  owner_fork_generation().fetch_add(1, std::memory_order_release);
  pid_ = sys::getpid();
  self_word_ = owner_self();
  // The parent's engine threads do not exist here; its queued requests finish
  // in the parent (the frames are shared, and their IO flag is cleared there).
  for (int i = 0; i < kAsyncRequests; ++i) requests_[i].busy.store(0, std::memory_order_relaxed);
  pthread_mutex_init(&files_lock_, nullptr);
  pthread_mutex_init(&backing_lock_, nullptr);  // settled before fork: nobody takes it again
  backend_->after_fork_child();  // closes the child's copies of the parent's leases
  lease_watch_->after_fork_child();
  // The parent's leases are its own: the child takes its own at its next
  // read of each file (the pages stay: the parent's lease still covers them).
  for (FileRef* f = files_; f; f = f->next) {
    f->admitting.store(0, std::memory_order_relaxed);
    f->retry_at_ns.store(0, std::memory_order_relaxed);
    uint32_t st = f->coherence.load(std::memory_order_relaxed);
    // UPCACHE_COHERENCE=open: the child serves it as a file never leased
    // (revalidated at open), and needs no lease thread of its own.
    if (st == stats::kCoherenceLease)
      set_coherence(f, config_.coherence == Coherence::kOpen ? stats::kCoherenceWeak : stats::kCoherencePending);
  }
}

}  // namespace

std::unique_ptr<Cache> Cache::create(const Config& config, StatsSink* stats, std::string* error) {
  std::unique_ptr<CacheImpl> cache(new CacheImpl(config, stats));
  if (!cache->init(error)) return nullptr;
  return cache;
}

}  // namespace upcache
