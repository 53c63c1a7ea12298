#include "core/stats_segment.h"

#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "core/decimal.h"
#include "core/sys.h"

namespace upcache::stats {

static_assert(sizeof(Segment) % 64 == 0, "Segment must be a whole number of cache lines");

namespace {

// ---------------------------------------------------------------------------
// Small async-signal-safe helpers: fixed buffers, no allocation, no libc I/O.

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);  // vDSO; async-signal-safe
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Appends to a NUL-terminated buffer of `cap` bytes; false when it does not fit.
struct Builder {
  char* buf;
  size_t cap;
  size_t len = 0;
  bool ok = true;

  Builder(char* b, size_t c) : buf(b), cap(c) { buf[0] = '\0'; }
  void str(const char* s) {
    size_t n = strlen(s);
    if (len + n + 1 > cap) {
      ok = false;
      return;
    }
    memcpy(buf + len, s, n + 1);
    len += n;
  }
  void dec(uint64_t v) {
    char out[24];
    format_decimal(out, v);
    str(out);
  }
  void hex16(uint64_t v) {
    char out[17];
    for (int i = 15; i >= 0; --i) {
      out[i] = "0123456789abcdef"[v & 15];
      v >>= 4;
    }
    out[16] = '\0';
    str(out);
  }
};

// Reads up to n-1 bytes of a small file (procfs) into buf, NUL-terminates.
// Returns bytes read or -errno.
int64_t read_small(const char* path, char* buf, uint64_t n) {
  int fd = sys::openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fd;
  uint64_t got = 0;
  while (got + 1 < n) {
    int64_t r = sys::read(fd, buf + got, n - 1 - got);
    if (r == -EINTR) continue;
    if (r <= 0) {
      if (r < 0 && got == 0) {
        sys::close(fd);
        return r;
      }
      break;
    }
    got += static_cast<uint64_t>(r);
  }
  sys::close(fd);
  buf[got] = '\0';
  return static_cast<int64_t>(got);
}

// Field 22 (starttime) of a /proc/<pid>/stat line. The comm field (2) may
// contain spaces and parentheses: count from the last ')'.
bool parse_start_ticks(const char* line, uint64_t* ticks) {
  const char* close = strrchr(line, ')');
  if (close == nullptr) return false;
  const char* p = close + 1;
  // Fields after comm start at 3; starttime is the 20th of them.
  for (int field = 3; field < 22; ++field) {
    while (*p == ' ') ++p;
    while (*p != ' ' && *p != '\0') ++p;
    if (*p == '\0') return false;
  }
  while (*p == ' ') ++p;
  if (*p < '0' || *p > '9') return false;
  uint64_t v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + static_cast<uint64_t>(*p++ - '0');
  *ticks = v;
  return true;
}

uint64_t self_start_ticks() {
  char line[1024];
  uint64_t ticks = 0;
  if (read_small("/proc/self/stat", line, sizeof line) > 0) parse_start_ticks(line, &ticks);
  return ticks;
}

uint64_t mix64(uint64_t x) {  // splitmix64 finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t random_nonce() {
  uint64_t v = 0;
  if (sys::getrandom(&v, sizeof v, 0x1 /* GRND_NONBLOCK */) != static_cast<int64_t>(sizeof v)) {
    static std::atomic<uint64_t> counter{0};
    int local = 0;
    v = mix64(now_ns() ^ (static_cast<uint64_t>(sys::getpid()) << 32) ^
              reinterpret_cast<uintptr_t>(&local) ^ counter.fetch_add(1, std::memory_order_relaxed));
  }
  return v != 0 ? v : 1;
}

// argv joined by spaces, truncated to fit.
void read_command(char* out, size_t cap) {
  out[0] = '\0';
  char buf[sizeof(Segment::command)];
  int64_t n = read_small("/proc/self/cmdline", buf, sizeof buf);
  if (n <= 0) {
    n = read_small("/proc/self/comm", buf, sizeof buf);
    if (n <= 0) return;
  }
  while (n > 0 && (buf[n - 1] == '\0' || buf[n - 1] == '\n')) --n;
  for (int64_t i = 0; i < n; ++i)
    if (buf[i] == '\0' || buf[i] == '\n') buf[i] = ' ';
  size_t len = std::min(static_cast<size_t>(n), cap - 1);
  memcpy(out, buf, len);
  out[len] = '\0';
}

void copy_cstr(char* out, size_t cap, const char* in) {
  size_t n = in ? strnlen(in, cap - 1) : 0;
  if (n) memcpy(out, in, n);
  out[n] = '\0';
}

void publish_magic(Segment* s) { __atomic_store_n(&s->magic, kMagic, __ATOMIC_RELEASE); }
uint32_t load_magic(const Segment* s) { return __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE); }

// Fills the header of a zeroed segment (everything but magic).
void fill_header(Segment* s, const CreateOptions& o, uint64_t nonce) {
  s->version = kVersion;
  s->segment_bytes = sizeof(Segment);
  s->pid = sys::getpid();
  s->ppid = sys::getppid();
  s->start_time_ns = now_ns();
  s->proc_start_ticks = self_start_ticks();
  s->nonce = nonce;
  s->page_size = o.page_size;
  s->capacity_bytes = o.capacity_bytes;
  s->callers_every = o.callers_every;
  read_command(s->command, sizeof s->command);
  const char* run_id = o.run_id != nullptr ? o.run_id : getenv("UPCACHE_RUN_ID");
  copy_cstr(s->run_id, sizeof s->run_id, run_id);
  s->keep.store(o.keep ? 1 : 0, std::memory_order_relaxed);
  s->end_time_ns.store(0, std::memory_order_relaxed);
  s->alive.store(1, std::memory_order_relaxed);
}

// The directory part of a segment path ("" if none).
void dir_of(const char* path, char* out, size_t cap) {
  const char* slash = strrchr(path, '/');
  size_t n = slash ? static_cast<size_t>(slash - path) : 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(out, path, n);
  out[n] = '\0';
  if (slash == path) copy_cstr(out, cap, "/");
}

const char* base_of(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

}  // namespace

// ---------------------------------------------------------------------------
// Writer side.

const char* segment_dir() {
  const char* d = getauxval(AT_SECURE) ? nullptr : getenv("UPCACHE_STATS_DIR");
  return d != nullptr && *d != '\0' ? d : "/dev/shm";
}

uint64_t segment_map_bytes() { return (sizeof(Segment) + 4095) & ~4095ull; }

int OwnedSegment::map_new(const CreateOptions& o, const Segment* copy_from, void* fixed_at) {
  const char* dir = o.dir != nullptr ? o.dir : segment_dir();
  const uint64_t size = segment_map_bytes();
  const int pid = sys::getpid();
  char path[kSegmentPathMax];
  uint64_t nonce = 0;
  int fd = -EEXIST;
  for (int attempt = 0; attempt < 64 && fd == -EEXIST; ++attempt) {
    nonce = attempt == 0 && o.nonce != 0 ? o.nonce : random_nonce();
    Builder b(path, sizeof path);
    b.str(dir);
    b.str("/upcache.");
    b.dec(static_cast<uint64_t>(pid));
    b.str(".");
    b.hex16(nonce);
    if (!b.ok) return -ENAMETOOLONG;
    fd = sys::openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  }
  if (fd < 0) return fd;
  auto fail = [&](int err) {
    sys::unlinkat(AT_FDCWD, path, 0);
    sys::close(fd);
    return err;
  };
  sys::fchmod(fd, 0600);  // the umask may only have removed bits; make it exact
  // Reserve the pages now: a full /dev/shm must fail here, not SIGBUS later.
  int r = sys::fallocate(fd, 0, 0, static_cast<int64_t>(size));
  if (r == -EOPNOTSUPP || r == -ENOSYS) r = sys::ftruncate(fd, static_cast<int64_t>(size));
  if (r < 0) return fail(r);
  void* tmp = sys::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (sys::mmap_failed(tmp)) return fail(-sys::mmap_errno(tmp));
  auto* s = static_cast<Segment*>(tmp);
  if (copy_from != nullptr) {
    memcpy(static_cast<void*>(s), static_cast<const void*>(copy_from), sizeof(Segment));
    s->nonce = nonce;
    s->end_time_ns.store(0, std::memory_order_relaxed);
    s->alive.store(1, std::memory_order_relaxed);
  } else {
    fill_header(s, o, nonce);
  }
  publish_magic(s);
  if (fixed_at != nullptr) {
    void* p = sys::mmap(fixed_at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    sys::munmap(tmp, size);
    if (sys::mmap_failed(p)) return fail(-sys::mmap_errno(p));
    s = static_cast<Segment*>(p);
  }
  sys::close(fd);
  seg_ = s;
  exec_unlinked_ = false;
  copy_cstr(path_, sizeof path_, path);
  return 0;
}

int OwnedSegment::create(const CreateOptions& options) {
  if (seg_ != nullptr) return -EBUSY;
  return map_new(options, nullptr, nullptr);
}

int OwnedSegment::create_private(const CreateOptions& options) {
  if (seg_ != nullptr) return -EBUSY;
  void* p = sys::mmap(nullptr, segment_map_bytes(), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (sys::mmap_failed(p)) return -sys::mmap_errno(p);
  auto* s = static_cast<Segment*>(p);
  fill_header(s, options, 0);
  publish_magic(s);
  seg_ = s;
  path_[0] = '\0';
  return 0;
}

// Is this process the segment's owner? Not in a vfork() child (it shares the
// parent's memory, segment included) nor in a fork child that did not call
// after_fork_child(): such a process must not mark or remove the parent's.
bool OwnedSegment::owner() const { return seg_ != nullptr && seg_->pid == sys::getpid(); }

void OwnedSegment::finish() {
  if (!owner()) return;
  uint64_t zero = 0;
  seg_->end_time_ns.compare_exchange_strong(zero, now_ns(), std::memory_order_relaxed);
  seg_->alive.store(0, std::memory_order_release);
  if (named() && !exec_unlinked_ && seg_->keep.load(std::memory_order_acquire) == 0) {
    sys::unlinkat(AT_FDCWD, path_, 0);
    exec_unlinked_ = true;  // the name is gone; do not unlink it again
  }
}

int OwnedSegment::after_fork_child() {
  if (seg_ == nullptr) return 0;
  if (!named()) return 0;  // private anonymous memory is already copy-on-write
  Segment* parent = seg_;
  // The header fields we keep, read before the mapping is replaced.
  CreateOptions o;
  o.page_size = parent->page_size;
  o.capacity_bytes = parent->capacity_bytes;
  o.callers_every = parent->callers_every;
  o.keep = parent->keep.load(std::memory_order_relaxed) != 0;
  char run_id[sizeof(Segment::run_id)];
  copy_cstr(run_id, sizeof run_id, parent->run_id);
  o.run_id = run_id;
  char dir[kSegmentPathMax];
  dir_of(path_, dir, sizeof dir);
  o.dir = dir;
  uint64_t cached = parent->cached_bytes.load(std::memory_order_relaxed);

  int r = map_new(o, nullptr, parent);
  if (r < 0) {
    // Detach from the parent at any cost: private zeroed memory at the same address.
    void* p = sys::mmap(parent, segment_map_bytes(), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (sys::mmap_failed(p)) return r;  // cannot happen with a valid address; keep the error
    auto* s = static_cast<Segment*>(p);
    fill_header(s, o, 0);
    publish_magic(s);
    seg_ = s;
    path_[0] = '\0';
    exec_unlinked_ = false;
  }
  seg_->cached_bytes.store(cached, std::memory_order_relaxed);
  return r;
}

void OwnedSegment::before_exec() {
  if (!owner()) return;
  seg_->end_time_ns.store(now_ns(), std::memory_order_relaxed);
  seg_->alive.store(0, std::memory_order_release);
  if (named() && !exec_unlinked_ && seg_->keep.load(std::memory_order_acquire) == 0) {
    sys::unlinkat(AT_FDCWD, path_, 0);
    exec_unlinked_ = true;
  }
}

int OwnedSegment::exec_failed() {
  if (!owner()) return 0;
  int r = 0;
  if (named() && exec_unlinked_) {
    char dir[kSegmentPathMax];
    dir_of(path_, dir, sizeof dir);
    CreateOptions o;
    o.dir = dir;
    r = map_new(o, seg_, seg_);  // copies the counters so far, remaps in place
  }
  seg_->end_time_ns.store(0, std::memory_order_relaxed);
  seg_->alive.store(1, std::memory_order_release);
  return r;
}

void OwnedSegment::destroy() {
  if (seg_ == nullptr) return;
  finish();
  if (owner() && named() && !exec_unlinked_) sys::unlinkat(AT_FDCWD, path_, 0);
  sys::munmap(seg_, segment_map_bytes());
  seg_ = nullptr;
  exec_unlinked_ = false;
  path_[0] = '\0';
}

// ---------------------------------------------------------------------------
// Reader side.

const char* writer_state_name(WriterState state) {
  switch (state) {
    case WriterState::kRunning: return "alive";
    case WriterState::kExited: return "kept";
    case WriterState::kDead: return "dead";
  }
  return "?";
}

bool process_start_ticks(int pid, uint64_t* ticks) {
  if (pid <= 0) return false;
  char path[64];
  Builder b(path, sizeof path);
  b.str("/proc/");
  b.dec(static_cast<uint64_t>(pid));
  b.str("/stat");
  char line[1024];
  if (read_small(path, line, sizeof line) <= 0) return false;
  return parse_start_ticks(line, ticks);
}

bool parse_segment_name(const char* name, int* pid, uint64_t* nonce) {
  static const char kPrefix[] = "upcache.";
  if (strncmp(name, kPrefix, sizeof kPrefix - 1) != 0) return false;
  const char* p = name + sizeof kPrefix - 1;
  uint64_t v = 0;
  int digits = 0;
  while (*p >= '0' && *p <= '9' && digits < 10) {
    v = v * 10 + static_cast<uint64_t>(*p++ - '0');
    ++digits;
  }
  if (digits == 0 || *p != '.' || v == 0 || v > 0x7fffffff) return false;
  ++p;
  uint64_t n = 0;
  int hex = 0;
  for (; *p != '\0'; ++p, ++hex) {
    int d;
    if (*p >= '0' && *p <= '9') d = *p - '0';
    else if (*p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
    else return false;
    n = n << 4 | static_cast<uint64_t>(d);
  }
  if (hex != 16) return false;
  *pid = static_cast<int>(v);
  *nonce = n;
  return true;
}

namespace {

// Does /proc/<pid>/maps mention `needle`? 1 yes, 0 no, -1 unreadable.
int maps_mention(int pid, const char* needle) {
  char path[64];
  Builder b(path, sizeof path);
  b.str("/proc/");
  b.dec(static_cast<uint64_t>(pid));
  b.str("/maps");
  int fd = sys::openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const size_t nlen = strlen(needle);
  std::vector<char> buf(65536 + nlen + 1);
  size_t carry = 0;
  int found = 0;
  bool any = false;
  for (;;) {
    int64_t r = sys::read(fd, buf.data() + carry, 65536);
    if (r == -EINTR) continue;
    if (r < 0) {
      found = any ? found : -1;
      break;
    }
    if (r == 0) break;
    any = true;
    size_t len = carry + static_cast<size_t>(r);
    if (std::search(buf.begin(), buf.begin() + static_cast<long>(len), needle, needle + nlen) !=
        buf.begin() + static_cast<long>(len)) {
      found = 1;
      break;
    }
    carry = std::min(len, nlen - 1);
    memmove(buf.data(), buf.data() + len - carry, carry);
  }
  sys::close(fd);
  return found;
}

}  // namespace

WriterState writer_state(const Segment& seg, const char* path) {
  if (seg.alive.load(std::memory_order_acquire) == 0) return WriterState::kExited;
  if (seg.pid <= 0 || !sys::pid_alive(seg.pid)) return WriterState::kDead;
  uint64_t ticks = 0;
  if (!process_start_ticks(seg.pid, &ticks)) return WriterState::kDead;
  if (seg.proc_start_ticks != 0 && ticks != seg.proc_start_ticks) return WriterState::kDead;
  if (path != nullptr && *path != '\0') {
    std::string needle = "/";
    needle += base_of(path);
    if (maps_mention(seg.pid, needle.c_str()) == 0) return WriterState::kDead;
  }
  return WriterState::kRunning;
}

SegmentView::~SegmentView() {
  if (seg_ != nullptr) sys::munmap(const_cast<Segment*>(seg_), map_bytes_);
}

WriterState SegmentView::state() const { return writer_state(*seg_, path_.c_str()); }

std::unique_ptr<SegmentView> open_segment(const std::string& path, std::string* error, int* err) {
  auto failed = [&](int e, const std::string& why) -> std::unique_ptr<SegmentView> {
    if (error) *error = path + ": " + why;
    if (err) *err = -e;
    return nullptr;
  };
  int fd = sys::openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return failed(-fd, strerror(-fd));
  struct stat st{};
  int r = sys::fstat(fd, &st);
  if (r < 0) {
    sys::close(fd);
    return failed(-r, strerror(-r));
  }
  if (!S_ISREG(st.st_mode)) {
    sys::close(fd);
    return failed(EPROTO, "not a regular file");
  }
  if (st.st_uid != sys::geteuid()) {
    sys::close(fd);
    return failed(EPERM, "owned by uid " + std::to_string(st.st_uid) + ", not by you (uid " +
                             std::to_string(sys::geteuid()) + ")");
  }
  if (static_cast<uint64_t>(st.st_size) < sizeof(Segment)) {
    sys::close(fd);
    if (st.st_size >= static_cast<off_t>(2 * sizeof(uint32_t))) {
      // Maybe another layout version: say which.
      uint32_t head[2] = {0, 0};
      int fd2 = sys::openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd2 >= 0) {
        sys::pread(fd2, head, sizeof head, 0);
        sys::close(fd2);
      }
      if (head[0] == kMagic && head[1] != kVersion)
        return failed(EPROTO, "statistics layout version " + std::to_string(head[1]) +
                                  ", this upcache reads version " + std::to_string(kVersion));
    }
    return failed(EPROTO, st.st_size == 0 ? "empty (being created, or its creator died)"
                                          : "too small to be an upcache statistics segment");
  }
  const uint64_t bytes = segment_map_bytes();
  uint64_t map = std::min<uint64_t>(bytes, static_cast<uint64_t>(st.st_size));
  void* p = sys::mmap(nullptr, map, PROT_READ, MAP_SHARED, fd, 0);
  sys::close(fd);
  if (sys::mmap_failed(p)) return failed(sys::mmap_errno(p), strerror(sys::mmap_errno(p)));
  const auto* s = static_cast<const Segment*>(p);
  std::string why;
  if (load_magic(s) != kMagic) {
    why = s->magic == 0 ? "not initialized yet" : "not an upcache statistics segment (bad magic)";
  } else if (s->version != kVersion) {
    why = "statistics layout version " + std::to_string(s->version) +
          ", this upcache reads version " + std::to_string(kVersion);
  } else if (s->segment_bytes != sizeof(Segment)) {
    why = "segment size " + std::to_string(s->segment_bytes) + " does not match layout size " +
          std::to_string(sizeof(Segment));
  }
  if (!why.empty()) {
    sys::munmap(p, map);
    return failed(EPROTO, why);
  }
  std::unique_ptr<SegmentView> v(new SegmentView());
  v->seg_ = s;
  v->map_bytes_ = map;
  v->uid_ = st.st_uid;
  v->path_ = path;
  return v;
}

int list_segments(const char* dir, std::vector<SegmentEntry>* out, std::string* error) {
  if (dir == nullptr) dir = segment_dir();
  out->clear();
  int dfd = sys::openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    if (error) *error = std::string(dir) + ": " + strerror(-dfd);
    return dfd;
  }
  const unsigned uid = sys::geteuid();
  alignas(8) char buf[32768];
  for (;;) {
    int64_t n = sys::getdents64(dfd, buf, sizeof buf);
    if (n == -EINTR) continue;
    if (n < 0) {
      if (error) *error = std::string(dir) + ": " + strerror(static_cast<int>(-n));
      sys::close(dfd);
      return static_cast<int>(n);
    }
    if (n == 0) break;
    for (int64_t off = 0; off < n;) {
      // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
      const char* rec = buf + off;
      uint16_t reclen;
      memcpy(&reclen, rec + 16, sizeof reclen);
      const char* name = rec + 19;
      off += reclen;
      SegmentEntry e;
      if (!parse_segment_name(name, &e.pid, &e.nonce)) continue;
      struct statx sx{};
      if (sys::statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_UID | STATX_SIZE | STATX_MTIME,
                     &sx) < 0)
        continue;  // removed meanwhile
      if (!S_ISREG(sx.stx_mode) || sx.stx_uid != uid) continue;
      e.name = name;
      e.path = std::string(dir) + (dir[0] != '\0' && dir[strlen(dir) - 1] == '/' ? "" : "/") + name;
      e.uid = sx.stx_uid;
      e.file_bytes = sx.stx_size;
      e.mtime_sec = sx.stx_mtime.tv_sec;
      out->push_back(std::move(e));
    }
  }
  sys::close(dfd);
  std::sort(out->begin(), out->end(), [](const SegmentEntry& a, const SegmentEntry& b) {
    return a.pid != b.pid ? a.pid < b.pid : a.name < b.name;
  });
  return 0;
}

int clean_segments(const char* dir, CleanResult* result) {
  std::vector<SegmentEntry> entries;
  std::string error;
  int r = list_segments(dir, &entries, &error);
  if (r < 0) {
    result->messages.push_back(error);
    return r;
  }
  for (const SegmentEntry& e : entries) {
    bool remove = false;
    int err = 0;
    std::unique_ptr<SegmentView> v = open_segment(e.path, &error, &err);
    if (v) {
      remove = v->state() != WriterState::kRunning;
    } else if (err == -ENOENT) {
      continue;  // removed meanwhile
    } else {
      // Unreadable (half created, other layout): only if its pid is gone.
      remove = !sys::pid_alive(e.pid);
      if (!remove) result->messages.push_back("left alone: " + error);
    }
    v.reset();
    if (!remove) {
      ++result->running;
      continue;
    }
    int u = sys::unlinkat(AT_FDCWD, e.path.c_str(), 0);
    if (u == 0) {
      ++result->removed;
    } else if (u != -ENOENT) {
      ++result->failed;
      result->messages.push_back(e.path + ": cannot remove: " + strerror(-u));
    }
  }
  return 0;
}

int set_segment_keep(const std::string& path, bool keep, std::string* error) {
  int fd = sys::openat(AT_FDCWD, path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (error) *error = path + ": " + strerror(-fd);
    return fd;
  }
  struct stat st{};
  int r = sys::fstat(fd, &st);
  if (r == 0 && (st.st_uid != sys::geteuid() || static_cast<uint64_t>(st.st_size) < sizeof(Segment)))
    r = -EPERM;
  void* p = r == 0 ? sys::mmap(nullptr, segment_map_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                   : nullptr;
  sys::close(fd);
  if (r == 0 && sys::mmap_failed(p)) r = -sys::mmap_errno(p);
  if (r < 0) {
    if (error) *error = path + ": " + strerror(-r);
    return r;
  }
  auto* s = static_cast<Segment*>(p);
  if (load_magic(s) == kMagic && s->version == kVersion) {
    s->keep.store(keep ? 1 : 0, std::memory_order_release);
  } else {
    r = -EPROTO;
    if (error) *error = path + ": not an upcache statistics segment of this version";
  }
  sys::munmap(p, segment_map_bytes());
  return r;
}

void Totals::add(const Totals& o) {
  for (unsigned c = 0; c < kCounterCount; ++c) counters[c] += o.counters[c];
  for (unsigned h = 0; h < kHistogramCount; ++h)
    for (int b = 0; b < kBuckets; ++b) latency[h][b] += o.latency[h][b];
  cached_bytes += o.cached_bytes;
  capacity_bytes += o.capacity_bytes;
}

Totals Totals::minus(const Totals& e) const {
  Totals d = *this;
  for (unsigned c = 0; c < kCounterCount; ++c) d.counters[c] -= std::min(e.counters[c], d.counters[c]);
  for (unsigned h = 0; h < kHistogramCount; ++h)
    for (int b = 0; b < kBuckets; ++b) d.latency[h][b] -= std::min(e.latency[h][b], d.latency[h][b]);
  return d;
}

Totals totals(const Segment& seg) {
  Totals t;
  for (const Stripe& s : seg.stripes) {
    for (unsigned c = 0; c < kCounterCount; ++c) t.counters[c] += s.counters[c].load(std::memory_order_relaxed);
    for (unsigned h = 0; h < kHistogramCount; ++h)
      for (int b = 0; b < kBuckets; ++b) t.latency[h][b] += s.latency[h][b].load(std::memory_order_relaxed);
  }
  t.cached_bytes = seg.cached_bytes.load(std::memory_order_relaxed);
  // A negative gauge (a forked child evicting its parent's pages) reads as 0.
  if (static_cast<int64_t>(t.cached_bytes) < 0) t.cached_bytes = 0;
  t.capacity_bytes = seg.capacity_bytes;
  return t;
}

std::vector<FileTotals> file_totals(const Segment& seg) {
  std::vector<FileTotals> out;
  for (const FileSlot& f : seg.files) {
    uint64_t id = f.file_id.load(std::memory_order_acquire);
    if (id == 0 || id == ~0ull) continue;  // free, or being claimed
    FileTotals t;
    t.file_id = id;
    t.path.assign(f.path, strnlen(f.path, kPathMax));
    for (const FileStripe& s : f.stripes)
      for (unsigned c = 0; c < kFileCounterCount; ++c) t.counters[c] += s.counters[c].load(std::memory_order_relaxed);
    t.coherence = f.coherence.load(std::memory_order_relaxed);
    if (t.coherence >= kCoherenceStates) t.coherence = kCoherencePending;
    out.push_back(std::move(t));
  }
  std::stable_sort(out.begin(), out.end(), [](const FileTotals& a, const FileTotals& b) {
    if (a.counters[kFileBytes] != b.counters[kFileBytes]) return a.counters[kFileBytes] > b.counters[kFileBytes];
    return a.counters[kFilePassthrough] > b.counters[kFilePassthrough];
  });
  return out;
}

std::vector<CallerTotals> caller_totals(const Segment& seg) {
  std::vector<CallerTotals> out;
  for (const CallerSlot& c : seg.callers) {
    uint64_t hash = c.hash.load(std::memory_order_acquire);
    if (hash <= 1) continue;  // free, or being claimed by a writer
    CallerTotals t;
    t.hash = hash;
    for (int i = 0; i < kCallerDepth; ++i) {
      t.pcs[i] = __atomic_load_n(&c.pcs[i], __ATOMIC_RELAXED);
      if (t.pcs[i] != 0 && t.depth == i) t.depth = i + 1;
    }
    t.samples = c.samples.load(std::memory_order_relaxed);
    t.bytes = c.bytes.load(std::memory_order_relaxed);
    t.misses = c.misses.load(std::memory_order_relaxed);
    out.push_back(t);
  }
  return out;
}

}  // namespace upcache::stats
