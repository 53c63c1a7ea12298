// The statistics segment as a file: creating, publishing, finding, reading and
// removing the per-process segments whose layout core/stats.h declares.
//
// Naming: <dir>/upcache.<pid>.<nonce>, nonce = 16 random hex digits, created
// with O_CREAT|O_EXCL, mode 0600, owned by the process's user. <dir> is
// /dev/shm, or $UPCACHE_STATS_DIR when set (tests; ignored in set-uid
// programs). A stale segment left by a dead process whose pid was reused never
// collides: the nonce differs, and an EEXIST simply draws another nonce.
//
// Two halves:
//  - the writer side (OwnedSegment), called by the shim inside the host
//    process: raw system calls only (core/sys.h), no allocation, no
//    exceptions, no locks; fork-child and exec helpers keep the pointer that
//    StatsSink holds valid for the life of the process;
//  - the reader side (open_segment, list_segments, writer_state, clean,
//    totals), called by the `upcache` tool and by tests. It allocates
//    (std::string, std::vector) but still never throws on I/O errors: it
//    returns -errno and a message.
//
// Liveness. A segment's writer is:
//  - running: header.alive == 1, the pid exists, its start time (field 22 of
//    /proc/<pid>/stat) equals the one recorded at creation (so a reused pid
//    does not count), and, when /proc/<pid>/maps is readable, the process still
//    maps the segment (a process that exec'd without the shim's help does not);
//  - exited: header.alive == 0 (a clean exit or an exec; the segment is there
//    because it was kept, or because it is being removed right now);
//  - dead: header.alive == 1 but the writer is not running (killed, crashed,
//    _exit without the shim's exit hook, or exec'd).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/stats.h"

namespace upcache::stats {

constexpr int kSegmentPathMax = 256;

// The directory that holds the segments: $UPCACHE_STATS_DIR (unless AT_SECURE)
// or /dev/shm. Never null.
const char* segment_dir();

// Bytes mapped for one segment: sizeof(Segment) rounded up to 4 KiB.
uint64_t segment_map_bytes();

struct CreateOptions {
  uint64_t page_size = 0;       // the cache's page size (units of page counters)
  uint64_t capacity_bytes = 0;  // UPCACHE_SIZE after rounding
  uint32_t callers_every = 0;   // UPCACHE_CALLERS
  bool keep = false;            // UPCACHE_STATS_KEEP: leave the name at exit
  const char* dir = nullptr;    // null: segment_dir()
  const char* run_id = nullptr; // null: $UPCACHE_RUN_ID (may be absent)
  uint64_t nonce = 0;           // tests: the first nonce tried; 0: random
};

// The segment this process writes. Trivially destructible and constant-
// initializable, so the shim can keep one as a plain global. Every method is
// async-signal-safe except where noted, allocates nothing and never throws.
// Errors are returned as -errno.
class OwnedSegment {
 public:
  constexpr OwnedSegment() = default;

  // At start-up: creates and maps a named segment, fills the header (magic,
  // version, sizes, pid, ppid, start time, start ticks, page size, capacity,
  // command line from /proc/self/cmdline, run id, callers_every, keep) and
  // marks it alive. On failure nothing is left behind and seg() stays null.
  int create(const CreateOptions& options);
  // Same header in anonymous private memory (statistics off, or create()
  // failed): gives StatsSink something to write to. Never in the directory.
  int create_private(const CreateOptions& options);

  Segment* seg() const { return seg_; }
  const char* path() const { return path_; }  // "" when private or unlinked
  bool named() const { return path_[0] != '\0'; }

  // At exit (destructor, atexit, or the shim's _exit hook): records the end
  // time, marks the segment not alive and, unless header.keep is set, removes
  // the name. The mapping stays, so late counter updates from other threads
  // land harmlessly. Idempotent.
  //
  // finish(), before_exec() and exec_failed() do nothing unless the calling
  // process is the segment's owner (header.pid == getpid()): a vfork() or
  // posix_spawn() child shares its parent's memory and must not mark or remove
  // the parent's segment, whatever it calls before exec or exit.
  void finish();

  // In the child right after fork() (a pthread_atfork child handler, or the
  // shim's fork wrapper), before anything else writes counters. NEVER in a
  // vfork()/CLONE_VM child: it would replace the parent's mapping, which that
  // child shares. The inherited mapping still shows the parent's segment:
  // this creates the child's own (its pid, ppid = parent, fresh counters, the
  // parent's page size, capacity, command, run id, keep, and cached_bytes
  // because the cache arena stays shared) and maps it AT THE SAME ADDRESS, so
  // every Segment* (StatsSink) stays valid. If that fails, the same address
  // gets a private zeroed copy instead (returns the error): the parent's
  // numbers are never touched by the child.
  int after_fork_child();

  // Around execve() (and the other exec-family calls): before_exec() marks the
  // segment exited and removes its name unless kept (the new image, if it
  // loads the shim, makes its own segment); if exec fails, exec_failed()
  // brings it back: alive again and, if the name was removed, a new named
  // segment with the counters so far, mapped at the same address.
  void before_exec();
  int exec_failed();

  // Tests and tear-down: finish(), remove the name even if kept, unmap.
  // Not async-signal-safe with respect to concurrent writers (they would fault).
  void destroy();

 private:
  int map_new(const CreateOptions& o, const Segment* copy_from, void* fixed_at);
  bool owner() const;

  Segment* seg_ = nullptr;
  bool exec_unlinked_ = false;
  char path_[kSegmentPathMax] = {};
};

// ---------------------------------------------------------------------------
// Reader side (tools, tests).

enum class WriterState { kRunning, kExited, kDead };
// "alive", "kept" (exited, segment kept) or "dead".
const char* writer_state_name(WriterState state);

// Start time of process `pid` in clock ticks since boot (field 22 of
// /proc/<pid>/stat); false if the process does not exist.
bool process_start_ticks(int pid, uint64_t* ticks);

// Parses "upcache.<pid>.<16 hex>" (a bare name, no directory).
bool parse_segment_name(const char* name, int* pid, uint64_t* nonce);

// A read-only mapping of someone's segment.
class SegmentView {
 public:
  ~SegmentView();
  SegmentView(const SegmentView&) = delete;
  SegmentView& operator=(const SegmentView&) = delete;

  const Segment& seg() const { return *seg_; }
  const std::string& path() const { return path_; }
  uint32_t owner_uid() const { return uid_; }
  WriterState state() const;

 private:
  friend std::unique_ptr<SegmentView> open_segment(const std::string&, std::string*, int*);
  SegmentView() = default;
  const Segment* seg_ = nullptr;
  uint64_t map_bytes_ = 0;
  uint32_t uid_ = 0;
  std::string path_;
};

// Opens `path` read-only and validates it: a regular file owned by the
// caller's effective uid (any owner for root), large enough, magic, version
// and segment_bytes matching this build. Null on failure, with a message in
// *error and -errno (EPROTO for a bad header) in *err when not null.
std::unique_ptr<SegmentView> open_segment(const std::string& path, std::string* error,
                                          int* err = nullptr);

struct SegmentEntry {
  std::string name;  // upcache.<pid>.<nonce>
  std::string path;  // dir/name
  int pid = 0;       // from the name
  uint64_t nonce = 0;
  uint32_t uid = 0;
  uint64_t file_bytes = 0;
  int64_t mtime_sec = 0;
};

// The segments in `dir` (null: segment_dir()) owned by the caller's effective
// uid, sorted by pid then name. Returns 0 or -errno with a message.
int list_segments(const char* dir, std::vector<SegmentEntry>* out, std::string* error);

// Is the writer of `seg`, mapped from `path`, running, exited or dead?
WriterState writer_state(const Segment& seg, const char* path);

struct CleanResult {
  int removed = 0;  // segments of exited or dead writers, removed
  int running = 0;  // left alone: their writer runs
  int failed = 0;   // could not be removed (see messages)
  std::vector<std::string> messages;
};
// Removes the caller's segments in `dir` whose writer is not running (exited
// and kept, or dead), and unreadable ones whose pid no longer exists.
int clean_segments(const char* dir, CleanResult* result);

// Sets or clears header.keep of a segment owned by the caller (used by
// `upcache run` so that processes of its tree still running when it finishes
// remove their own segment at exit). Returns 0 or -errno with a message.
int set_segment_keep(const std::string& path, bool keep, std::string* error);

// Sums of the striped counters of one segment, read with relaxed loads.
struct Totals {
  uint64_t counters[kCounterCount] = {};
  uint64_t latency[kHistogramCount][kBuckets] = {};
  uint64_t cached_bytes = 0;
  uint64_t capacity_bytes = 0;

  void add(const Totals& other);
  // this - earlier, counter by counter (gauges are copied from this).
  Totals minus(const Totals& earlier) const;
};
Totals totals(const Segment& seg);

struct FileTotals {
  uint64_t file_id = 0;
  std::string path;
  uint64_t counters[kFileCounterCount] = {};
  uint32_t coherence = kCoherencePending;  // FileCoherence
};
// Claimed file slots with their summed counters, by bytes read, largest first.
std::vector<FileTotals> file_totals(const Segment& seg);

struct CallerTotals {
  uint64_t hash = 0;
  uint64_t pcs[kCallerDepth] = {};
  int depth = 0;  // leading non-zero pcs
  uint64_t samples = 0, bytes = 0, misses = 0;
};
std::vector<CallerTotals> caller_totals(const Segment& seg);

}  // namespace upcache::stats
